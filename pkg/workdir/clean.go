package workdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/images"
)

// CleanOptions configure Clean.
type CleanOptions struct {
	// All also empties builds/.
	All bool
	// KeepPackages keeps what `cosa fetch` wrote to cache/ (the apt state,
	// the downloaded .debs and the package lock file), so that the next
	// build needs no network.
	KeepPackages bool
}

// ObjectsDir is cache/objects, the image pipeline's stage cache.
func (w *Workdir) ObjectsDir() string { return filepath.Join(w.CacheDir(), "objects") }

// Clean empties cache/ and tmp/, and builds/ with o.All; src/config is
// never touched. The caller holds the builds/ lock, as every writer does;
// Clean takes the stage cache's lock itself and fails, rather than wait,
// while an image pipeline runs. Lock files stay, so that a process waiting
// on one and the next holder agree on the same file.
//
// Nothing outside the workdir is changed: a symlink in these directories
// is removed as a link, never followed, and cache/, tmp/ or builds/
// being a symlink is an error. Immutable and append-only flags (ostree's
// deployments in stage cache objects of older cosa versions, or anything
// else) are cleared on what is to be removed. It returns the directories
// it emptied, relative to the workdir.
func (w *Workdir) Clean(o CleanOptions) ([]string, error) {
	type target struct {
		dir  string
		keep keepList
	}
	cacheKeep := keepList{"objects/" + images.StoreLockFile}
	if o.KeepPackages {
		cacheKeep = append(cacheKeep, "apt", "debs", "manifest-lock.*.json")
	}
	targets := []target{{w.CacheDir(), cacheKeep}, {w.TmpDir(), nil}}
	if o.All {
		targets = append(targets, target{w.BuildsDir(), keepList{build.LockFile}})
	}
	// Refuse before removing anything, so that a refused clean leaves the
	// workdir as it was.
	for _, t := range targets {
		if err := checkRealDir(t.dir); err != nil {
			return nil, err
		}
	}
	// os.RemoveAll descends into mount points: a bind mount left by a
	// build killed mid-way (of /dev, or of a host directory) would be
	// emptied with the workdir.
	for _, t := range targets {
		mounts, err := mountsUnder(t.dir)
		if err != nil {
			return nil, err
		}
		if len(mounts) > 0 {
			return nil, fmt.Errorf("not cleaning: %s is mounted; unmount it first", mounts[0])
		}
	}
	release, busy, err := (&images.Store{Dir: w.ObjectsDir()}).TryLockExclusive()
	if err != nil {
		return nil, err
	}
	if busy {
		return nil, fmt.Errorf("%s is in use by a running image pipeline (build, buildextend or pipeline run); try again when it is done", w.ObjectsDir())
	}
	defer release()

	var done []string
	for _, t := range targets {
		if _, err := os.Lstat(t.dir); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := emptyDir(t.dir, "", t.keep); err != nil {
			return done, err
		}
		done = append(done, filepath.Base(t.dir)+"/")
	}
	return done, nil
}

// checkRealDir accepts a directory or nothing; a symlink could lead out of
// the workdir.
func checkRealDir(dir string) error {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		t, _ := os.Readlink(dir)
		return fmt.Errorf("%s is a symlink (to %s); cosa clean does not follow symlinks out of the workdir: empty or remove it yourself", dir, t)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// keepList holds path.Match patterns, slash-separated and relative to the
// directory being emptied, of entries that stay.
type keepList []string

func (k keepList) keeps(rel string) bool {
	for _, p := range k {
		if ok, _ := path.Match(p, rel); ok {
			return true
		}
	}
	return false
}

// below reports whether a pattern names something under rel.
func (k keepList) below(rel string) bool {
	n := strings.Count(rel, "/") + 1
	for _, p := range k {
		if parts := strings.Split(p, "/"); len(parts) > n {
			if ok, _ := path.Match(strings.Join(parts[:n], "/"), rel); ok {
				return true
			}
		}
	}
	return false
}

// emptyDir removes the entries of root/rel except those keep names, going
// into a real directory (never a symlink) only when something below it is
// kept.
func emptyDir(root, rel string, keep keepList) error {
	dir := filepath.Join(root, filepath.FromSlash(rel))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		r := path.Join(rel, e.Name())
		if keep.keeps(r) {
			continue
		}
		if e.IsDir() && keep.below(r) {
			if err := emptyDir(root, r, keep); err != nil {
				return err
			}
			// Nothing to keep was there after all.
			if left, err := os.ReadDir(filepath.Join(dir, e.Name())); err == nil && len(left) == 0 {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
					return err
				}
			}
			continue
		}
		if err := fileutil.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// mountinfo has the kernel's path, symlinks resolved.
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		// Field 5 is the mount point, with space, tab, newline and
		// backslash as octal escapes.
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeOctal(f[4])
		if mp == abs || strings.HasPrefix(mp, abs+"/") {
			out = append(out, mp)
		}
	}
	return out, nil
}

// unescapeOctal undoes mountinfo's \NNN escapes.
func unescapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
