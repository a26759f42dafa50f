package prune

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/images"
)

// The pipeline engine's store (cache/objects) keeps the trees and disk
// images a build's images were made from. They are worth keeping only
// while something can reuse them: a new build has a new commit, so none
// of its stage ids match an older build's; what stays useful is what a
// buildextend-* of a build people still work on starts from (its tree
// and raw disk). Without eviction every build left about three root-sized
// objects behind, capped only by the store's size limit.
//
// So after a build is published, and when builds are pruned, the objects
// of superseded builds go: those named by the saved manifest of a build
// that is neither the newest on disk nor tagged, and not named by one
// that is. An object no build's manifest names (a `cosa pipeline run`, a
// build in progress or one that died before publishing) is left to the
// store's LRU cap: nothing says it is unused.

// CachePlan returns the object ids the engine's store can drop: those
// named by superseded builds (on disk, not the newest on disk, not
// tagged) or in gone (the objects of builds being pruned, read before
// they went), less those named by the protected builds (the newest build
// on disk and every tagged one). objectsOf lists a build's objects. A
// protected build whose objects cannot be read makes the plan fail, since
// what it needs is unknown; a superseded one is skipped (its objects stay).
func CachePlan(idx *build.BuildsIndex, onDisk func(id string) bool, objectsOf func(id string) (map[string]bool, error), gone map[string]bool) (map[string]bool, error) {
	protected := map[string]bool{}
	for _, id := range idx.TaggedIDs() {
		protected[id] = true
	}
	newest := true
	drop := map[string]bool{}
	keep := map[string]bool{}
	for id := range gone {
		drop[id] = true
	}
	for _, id := range idx.IDs() {
		if !onDisk(id) {
			continue
		}
		isProtected := newest || protected[id]
		newest = false
		objs, err := objectsOf(id)
		if err != nil {
			if isProtected {
				return nil, fmt.Errorf("build %s: %w", id, err)
			}
			continue
		}
		for o := range objs {
			if isProtected {
				keep[o] = true
			} else {
				drop[o] = true
			}
		}
	}
	for o := range keep {
		delete(drop, o)
	}
	return drop, nil
}

// BuildObjects lists the store objects build id's images were made from:
// every stage id of the manifests saved next to its images, all arches.
// A build with no images names none.
func BuildObjects(d *build.Dir, id string) (map[string]bool, error) {
	if err := build.ValidBuildID(id); err != nil {
		return nil, err
	}
	paths, err := filepath.Glob(filepath.Join(d.Root, id, "*", "*.manifest.json"))
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, p := range paths {
		m, err := images.LoadManifest(p) // its errors name the file
		if err != nil {
			return nil, err
		}
		ids, err := images.ManifestObjects(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		for o := range ids {
			set[o] = true
		}
	}
	return set, nil
}

// ObjectsOf is the union of BuildObjects over ids; builds that cannot be
// read add nothing. Pruning reads it before the builds go, for EvictCache.
func ObjectsOf(d *build.Dir, ids []string) map[string]bool {
	set := map[string]bool{}
	for _, id := range ids {
		objs, _ := BuildObjects(d, id)
		for o := range objs {
			set[o] = true
		}
	}
	return set
}

// EvictCache removes from st the objects CachePlan drops for the builds in
// d (plus gone). The caller holds the builds/ lock, so that no build is
// published meanwhile. busy means another engine run held the store and
// nothing was removed; a later build or prune retries.
func EvictCache(d *build.Dir, st *images.Store, gone map[string]bool) (evicted []string, busy bool, err error) {
	if _, err := os.Stat(st.Dir); errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	idx, err := d.ReadIndex()
	if err != nil {
		return nil, false, err
	}
	drop, err := CachePlan(idx, d.HasBuild, func(id string) (map[string]bool, error) { return BuildObjects(d, id) }, gone)
	if err != nil {
		return nil, false, fmt.Errorf("evicting cached objects: %w", err)
	}
	return st.EvictObjects(drop)
}
