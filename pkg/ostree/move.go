package ostree

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
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
	names, err := listXattrs(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		v, err := getXattr(src, name)
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

func listXattrs(p string) ([]string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, &os.PathError{Op: "listxattr", Path: p, Err: err}
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: p, Err: err}
		}
		return buf[:n], nil
	}
}
