package prune

import (
	"context"

	"github.com/cosa-build/cosa/pkg/build"
)

// Run is the whole `cosa prune`: under the builds/ lock (d.LockTimeout,
// d.LockWait) it reads builds.json, plans, and unless opts.DryRun executes
// the plan. It returns the plan either way so the caller can report it.
func Run(ctx context.Context, d *build.Dir, opts Options, removeRefs func(id string) error) (remove, keep []string, err error) {
	err = d.WithLock(ctx, "cosa prune", func() error {
		idx, err := d.ReadIndex()
		if err != nil {
			return err
		}
		remove, keep, err = Plan(idx, d.HasBuild, opts)
		if err != nil || opts.DryRun {
			return err
		}
		var gone map[string]bool
		if opts.Cache != nil {
			// Read while the pruned builds' manifests are still there.
			gone = ObjectsOf(d, remove)
		}
		if err := Execute(ctx, d, remove, removeRefs); err != nil {
			return err
		}
		if opts.Cache != nil {
			if _, _, err := EvictCache(d, opts.Cache, gone); err != nil {
				return err
			}
		}
		return nil
	})
	return remove, keep, err
}
