package prune

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/images"
)

// Options says what to prune.
type Options struct {
	// KeepLastN keeps the N newest builds that exist on disk. Ignored
	// when Builds is set; otherwise it must be at least 1, because the
	// newest build is what "latest" points at.
	KeepLastN int
	// Builds names exactly the builds to remove.
	Builds []string
	// DryRun makes Run report the plan without changing anything.
	DryRun bool
	// Cache, if set, is the pipeline engine's store: Run evicts the
	// objects of the pruned and other superseded builds (see EvictCache).
	Cache *images.Store
}

// Plan splits the builds in idx into those to remove and those to keep,
// both newest first. onDisk says whether builds/<id> exists.
//
// With KeepLastN, the newest KeepLastN on-disk builds are kept, and so is
// every tagged build. A tagged build among the newest N takes one of the N
// places (tags protect a build; they do not enlarge the window), so
// "keep 3" never keeps more than 3 untagged builds.
//
// Builds that builds.json lists but that are not on disk are left alone:
// they are neither removed nor counted, and they appear in keep because
// they stay in builds.json.
//
// With explicit Builds, exactly those are removed; it is an error if any is
// unknown, not on disk, tagged, or the newest on-disk build (the one
// "latest" points at).
func Plan(idx *build.BuildsIndex, onDisk func(id string) bool, opts Options) (remove, keep []string, err error) {
	if len(opts.Builds) > 0 {
		return planExplicit(idx, onDisk, opts.Builds)
	}
	if opts.KeepLastN < 1 {
		return nil, nil, fmt.Errorf("keep count must be at least 1, got %d", opts.KeepLastN)
	}
	tagged := idx.TaggedIDs()
	kept := 0
	for _, id := range idx.IDs() {
		switch {
		case !onDisk(id):
			keep = append(keep, id)
		case kept < opts.KeepLastN:
			keep = append(keep, id)
			kept++
		case slices.Contains(tagged, id):
			keep = append(keep, id)
		default:
			remove = append(remove, id)
		}
	}
	return remove, keep, nil
}

func planExplicit(idx *build.BuildsIndex, onDisk func(string) bool, ids []string) (remove, keep []string, err error) {
	newest := ""
	for _, id := range idx.IDs() {
		if onDisk(id) {
			newest = id
			break
		}
	}
	want := map[string]bool{}
	var errs []error
	for _, id := range ids {
		switch {
		case idx.Find(id) == nil:
			errs = append(errs, fmt.Errorf("build %q is not in builds.json", id))
		case !onDisk(id):
			errs = append(errs, fmt.Errorf("build %q is not on disk", id))
		case len(idx.TagsOf(id)) > 0:
			errs = append(errs, fmt.Errorf("build %q is tagged %s; delete the tag first", id, strings.Join(idx.TagsOf(id), ", ")))
		case id == newest:
			errs = append(errs, fmt.Errorf("build %q is the latest build", id))
		default:
			want[id] = true
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	for _, id := range idx.IDs() {
		if want[id] {
			remove = append(remove, id)
		} else {
			keep = append(keep, id)
		}
	}
	return remove, keep, nil
}
