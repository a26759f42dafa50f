// Package intree changes files inside a tree that cosa does not trust (a
// composed root, a deployment made from it) without ever acting outside
// it: every path is resolved inside the tree by an os.Root, so a symlink
// that leads out is refused, and what is replaced is removed first, never
// written through.
package intree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ReplaceFile makes name a new regular file holding data with exactly
// mode (whatever the umask). The old entry, a symlink included, is
// removed first.
func ReplaceFile(r *os.Root, name string, data []byte, mode os.FileMode) error {
	if err := r.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := r.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReplaceFileIn is ReplaceFile in the tree at dir.
func ReplaceFileIn(dir, name string, data []byte, mode os.FileMode) error {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	return Explain(ReplaceFile(r, name, data, mode))
}

// EmptyDir leaves name as an empty real directory: whatever is there, a
// symlink included, is removed (never followed) and the directory made.
func EmptyDir(r *os.Root, name string) error {
	fi, err := r.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return r.MkdirAll(name, 0o755)
	case err != nil:
		return err
	case !fi.IsDir():
		if err := r.Remove(name); err != nil {
			return err
		}
		return r.Mkdir(name, 0o755)
	}
	entries, err := fs.ReadDir(r.FS(), name)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := r.RemoveAll(name + "/" + e.Name()); err != nil {
			return err
		}
	}
	return nil
}

// EmptyDirIn is EmptyDir in the tree at dir.
func EmptyDirIn(dir, name string) error {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	return Explain(EmptyDir(r, name))
}

// Explain says in words what os.Root means by a path that escapes: the
// tree holds a symlink that points outside it.
func Explain(err error) error {
	if err == nil || !strings.Contains(err.Error(), "path escapes from parent") {
		return err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("/%s: refusing a path through a symlink that leads out of the tree", pe.Path)
	}
	return fmt.Errorf("refusing a path through a symlink that leads out of the tree: %w", err)
}
