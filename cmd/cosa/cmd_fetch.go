package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/workdir"
)

type fetchOptions struct {
	UpdateLockfile bool
}

func newFetchCmd(g *globals) *cobra.Command {
	o := &fetchOptions{}
	c := &cobra.Command{
		Use:   "fetch",
		Short: "Resolve and download the package set into cache/ and write the lock file",
		Example: `  cosa fetch
  cosa fetch --update-lockfile   # newer packages, recorded in src/config`,
		Args: maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			w, cfg, err := g.openConfig()
			if err != nil {
				return err
			}
			if err := needTools("apt-get"); err != nil {
				return err
			}
			r, err := runFetch(c.Context(), g, w, cfg, o)
			if err != nil {
				return err
			}
			g.result("fetch", r, r.text())
			return nil
		},
	}
	c.Flags().BoolVar(&o.UpdateLockfile, "update-lockfile", false, "resolve afresh and write the lock file into src/config too")
	return c
}

// fetchResult is what `cosa fetch` reports.
type fetchResult struct {
	Packages int    `json:"packages"`
	Bytes    int64  `json:"bytes"`
	Lockfile string `json:"lockfile"`
}

func (r *fetchResult) text() string {
	return fmt.Sprintf("Fetched %d packages (%.1f MiB); lock file %s", r.Packages, float64(r.Bytes)/(1<<20), r.Lockfile)
}

func runFetch(ctx context.Context, g *globals, w *workdir.Workdir, cfg *config.Config, o *fetchOptions) (*fetchResult, error) {
	arch := compose.BaseArch()
	d, err := g.buildsDir(w)
	if err != nil {
		return nil, err
	}
	var res *fetchResult
	// fetch rewrites the package cache a running build reads.
	err = d.WithLock(ctx, "cosa fetch", func() error {
		var pin *compose.Lockfile
		configLock := filepath.Join(w.ConfigDir(), compose.LockName(arch))
		if !o.UpdateLockfile {
			l, err := compose.ReadLock(configLock)
			switch {
			case err == nil:
				pin = l
				g.progress().Infof("Pinning packages to %s", configLock)
			case !errors.Is(err, os.ErrNotExist):
				return err
			}
		}
		lock, err := compose.Fetch(ctx, compose.FetchOptions{
			Config: cfg, CacheDir: w.CacheDir(), Arch: arch, Pin: pin, Progress: g.progress(),
		})
		if err != nil {
			return err
		}
		if o.UpdateLockfile {
			data, err := lock.Marshal()
			if err != nil {
				return err
			}
			if err := fileutil.WriteFileAtomic(configLock, data, 0o644); err != nil {
				return err
			}
		}
		var total int64
		for _, p := range lock.Packages {
			total += p.Size
		}
		res = &fetchResult{Packages: len(lock.Packages), Bytes: total, Lockfile: compose.LockPath(w.CacheDir(), arch)}
		return nil
	})
	return res, err
}
