package prune

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cosa-build/cosa/pkg/build"
)

// deletedPrefix marks a build directory that is being deleted. Renaming
// before deleting means an interrupted prune leaves no half-deleted build
// under its real name, only a .deleted-* directory that the next Execute
// finishes off.
const deletedPrefix = ".deleted-"

// Execute removes each build in remove. The caller must hold the builds/
// lock (see Run). For each id, in order:
//
//  1. removeRefs(id) lets the caller delete the build's ostree ref(s);
//  2. the build leaves builds.json, written before anything on disk goes,
//     so the index never lists a build that is half gone;
//  3. latest is repointed at the newest remaining on-disk build (or
//     cleared) before the directory goes, so it never dangles;
//  4. builds/<id> is moved into builds/.deleted-<id>-<random>/ and removed.
//
// Tagged builds are refused. Execute stops at the first error.
func Execute(ctx context.Context, d *build.Dir, remove []string, removeRefs func(id string) error) error {
	cleanupDeleted(d)
	for _, id := range remove {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := removeOne(d, id, removeRefs); err != nil {
			return fmt.Errorf("pruning %s: %w", id, err)
		}
	}
	return nil
}

func removeOne(d *build.Dir, id string, removeRefs func(string) error) error {
	if err := build.ValidBuildID(id); err != nil {
		return err
	}
	idx, err := d.ReadIndex()
	if err != nil {
		return err
	}
	if tags := idx.TagsOf(id); len(tags) > 0 {
		return fmt.Errorf("build is tagged %s", strings.Join(tags, ", "))
	}
	if removeRefs != nil {
		if err := removeRefs(id); err != nil {
			return fmt.Errorf("removing ostree refs: %w", err)
		}
	}
	// An id that is no longer indexed (say, an earlier prune stopped after
	// writing the index) still has its directory removed below.
	if idx.Remove(id) {
		if err := d.WriteIndex(idx); err != nil {
			return err
		}
	}
	if err := repointLatest(d, idx, id); err != nil {
		return err
	}
	return removeDir(d, id)
}

// repointLatest points latest at the newest build in idx that is on disk,
// not counting gone (about to be deleted), or clears it.
func repointLatest(d *build.Dir, idx *build.BuildsIndex, gone string) error {
	for _, id := range idx.IDs() {
		if id != gone && d.HasBuild(id) {
			if cur, err := d.Latest(); err == nil && cur == id {
				return nil
			}
			return d.SetLatest(id)
		}
	}
	return d.ClearLatest()
}

func removeDir(d *build.Dir, id string) error {
	src := filepath.Join(d.Root, id)
	tmp, err := os.MkdirTemp(d.Root, deletedPrefix+id+"-")
	if err != nil {
		return err
	}
	// The build moves inside the uniquely named directory (os.Rename will
	// not replace a directory), which is equally atomic.
	if err := os.Rename(src, filepath.Join(tmp, id)); err != nil {
		os.Remove(tmp)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(tmp)
}

// cleanupDeleted finishes deletions an earlier, interrupted Execute left
// behind. Failures are ignored: they leave only hidden garbage, which the
// next run retries.
func cleanupDeleted(d *build.Dir) {
	entries, _ := os.ReadDir(d.Root)
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), deletedPrefix) {
			os.RemoveAll(filepath.Join(d.Root, e.Name()))
		}
	}
}
