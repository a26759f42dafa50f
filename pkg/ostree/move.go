package ostree

import (
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// moveInto renames the entries rels of dir (relative paths) to the same
// paths under root, an empty directory on the same file system. The
// directories above them, and the directories extra, are made first and
// given dir's metadata last, deepest first, so that a read-only one is
// filled before it is closed. moved is called after each rename.
func moveInto(dir, root string, rels, extra []string, moved func(from, to string)) error {
	set := map[string]bool{".": true}
	for _, rel := range extra {
		set[rel] = true
	}
	for _, rel := range append(append([]string(nil), rels...), extra...) {
		for q := filepath.Dir(rel); q != "."; q = filepath.Dir(q) {
			set[q] = true
		}
	}
	dirs := make([]string, 0, len(set))
	for q := range set {
		dirs = append(dirs, q)
	}
	sort.Strings(dirs) // "." first, parents before children
	for _, q := range dirs[1:] {
		if err := os.Mkdir(filepath.Join(root, q), 0o700); err != nil {
			return err
		}
	}
	for _, rel := range rels {
		from, to := filepath.Join(dir, rel), filepath.Join(root, rel)
		if err := os.Rename(from, to); err != nil {
			return err
		}
		moved(from, to)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := copyDirMeta(filepath.Join(dir, dirs[i]), filepath.Join(root, dirs[i])); err != nil {
			return err
		}
	}
	return nil
}

// copyDirMeta gives directory dst src's owner, mode and xattrs: what
// ostree records of a directory.
func copyDirMeta(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	names, err := fileutil.ListXattrs(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		v, err := fileutil.GetXattr(src, name)
		if err != nil {
			return err
		}
		if err := unix.Lsetxattr(dst, name, v, 0); err != nil {
			return &os.PathError{Op: "setxattr " + name, Path: dst, Err: err}
		}
	}
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return &os.PathError{Op: "lchown", Path: dst, Err: err}
	}
	if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
		return &os.PathError{Op: "chmod", Path: dst, Err: err}
	}
	return nil
}
