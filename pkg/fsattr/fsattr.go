// Package fsattr clears the inode flags (chattr(1)) that make a file or
// directory impossible to delete: `ostree admin deploy` sets the immutable
// flag on every deployment directory it makes, and a workdir holding one
// cannot be removed with rm -rf, not even by root.
package fsattr

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// Inode flags from linux/fs.h that stop unlink(2) and rename(2): in an
// immutable or append-only directory no entry can be removed.
const (
	immutableFL = 0x00000010 // FS_IMMUTABLE_FL
	appendFL    = 0x00000020 // FS_APPEND_FL
	blockingFL  = immutableFL | appendFL
)

// FS_IOC_GETFLAGS and FS_IOC_SETFLAGS are _IOR/_IOW('f', 1/2, long). They
// are computed with the asm-generic ioctl encoding (x86, arm, arm64,
// riscv64, s390x: the architectures cosa builds on), because the size of
// long is in the number; the kernel reads and writes an int either way.
const (
	iocWrite = 1
	iocRead  = 2
	longSize = unsafe.Sizeof(uintptr(0))

	fsIocGetflags = iocRead<<30 | longSize<<16 | 'f'<<8 | 1
	fsIocSetflags = iocWrite<<30 | longSize<<16 | 'f'<<8 | 2
)

// Flags returns the inode flags of path, which must be a directory or a
// regular file (not followed if it is a symlink).
func Flags(path string) (uint32, error) {
	f, err := openNoFollow(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return getFlags(f, path)
}

// IsImmutable reports whether path has the immutable or append-only flag.
func IsImmutable(path string) (bool, error) {
	fl, err := Flags(path)
	return fl&blockingFL != 0, err
}

// Clear removes the immutable and append-only flags from path (a directory
// or regular file; a final symlink is not followed). It reports whether a
// flag was set. A filesystem without inode flags has none to clear.
func Clear(path string) (bool, error) {
	f, err := openNoFollow(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fl, err := getFlags(f, path)
	if err != nil || fl&blockingFL == 0 {
		return false, err
	}
	fl &^= blockingFL
	if err := ioctl(f, fsIocSetflags, &fl); err != nil {
		if errors.Is(err, syscall.EPERM) {
			return false, fmt.Errorf("cannot clear the immutable flag of %s: %w (only root can)", path, err)
		}
		return false, &fs.PathError{Op: "clear immutable flag", Path: path, Err: err}
	}
	return true, nil
}

// ClearTree clears the flags on root and every directory and regular file
// below it. It never follows a symlink: one inside the tree is an entry,
// not a way out of it. Other file types (devices, fifos, sockets) are
// skipped, since opening them can have effects of their own. It returns how
// many flags it cleared.
func ClearTree(root string) (int, error) {
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		cleared, err := Clear(p)
		if cleared {
			n++
		}
		return err
	})
	return n, err
}

// openNoFollow opens path for an ioctl without following a final symlink
// and without blocking, whatever it turns out to be.
func openNoFollow(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, &fs.PathError{Op: "open", Path: path, Err: errors.New("is a symlink; not followed")}
		}
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.IsDir() && !st.Mode().IsRegular() {
		err = &fs.PathError{Op: "open", Path: path, Err: errors.New("not a directory or regular file")}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func getFlags(f *os.File, path string) (uint32, error) {
	var fl uint32
	if err := ioctl(f, fsIocGetflags, &fl); err != nil {
		// Filesystems without inode flags (tmpfs before Linux 6.0, NFS,
		// overlayfs on some lowers) cannot have set one either.
		if errors.Is(err, syscall.ENOTTY) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EINVAL) {
			return 0, nil
		}
		return 0, &fs.PathError{Op: "read inode flags", Path: path, Err: err}
	}
	return fl, nil
}

func ioctl(f *os.File, req uintptr, fl *uint32) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(unsafe.Pointer(fl)))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// topdirFL is FS_TOPDIR_FL: ext4's block allocator treats the directories
// made in such a directory like top-level ones and spreads them over block
// groups, instead of putting each next to its parent.
const topdirFL = 0x00020000

// SpreadSubdirs marks dir so that ext4 places each directory made in it in
// a block group of its own choosing (chattr +T). cosa makes and deletes
// whole trees of thousands of files in a few directories (scratch roots,
// pipeline trees); an ext4 without a journal, as many CI VMs run, will not
// reuse an inode freed in the last minute and scans past every such
// inode, from the start of the group, on each create. A tree made where
// one was just deleted then pays for that scan thousands of times: 3,000
// files took 1.4 s instead of 0.07 s after a 20,000-file delete
// (measured). Only placement rides on the flag, so a file system that
// has no inode flags or refuses this one is not an error; only a dir that
// cannot be opened is.
func SpreadSubdirs(dir string) error {
	f, err := openNoFollow(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	addTopdir(f, dir)
	return nil
}

// MkdirSpread makes the directory path (its parent must exist) placed as
// SpreadSubdirs would place it, without leaving the parent marked: the
// parent's flag is set around the mkdir and put back. For a tree made and
// deleted on every run (a build's scratch dir) whose siblings live long
// (the build repo): spreading those too put a fresh workdir's repos in
// the block groups just freed by deleting another workdir, and its cold
// build's commit, export and base-cache copy got slower (measured in
// make bench).
func MkdirSpread(path string, perm os.FileMode) error {
	parent := filepath.Dir(path)
	f, err := openNoFollow(parent)
	if err != nil {
		return err
	}
	defer f.Close()
	if old, ok := addTopdir(f, parent); ok {
		defer ioctl(f, fsIocSetflags, &old)
	}
	return os.Mkdir(path, perm)
}

// addTopdir sets the topdir flag on f and returns the flags it had, with
// ok true if it changed them (false when it was set already, or the file
// system has no inode flags or refused).
func addTopdir(f *os.File, path string) (old uint32, ok bool) {
	fl, err := getFlags(f, path)
	if err != nil || fl == 0 || fl&topdirFL != 0 {
		return fl, false
	}
	set := fl | topdirFL
	return fl, ioctl(f, fsIocSetflags, &set) == nil
}
