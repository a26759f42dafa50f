package ostree

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// commitPrelinked is CommitDir for a consumed tree in a bare-user repo.
// `ostree commit` hashes every file on one core with a sha256 several
// times slower than Go's (4.5 to 5.8 s for the default 747 MB root on 2
// cores, even split in two commits at once). Here the plain files are
// hashed on every core first, and each becomes its own repo object: its
// inode gets the user.ostreemeta xattr and a link under objects/. Then
// `ostree commit --link-checkout-speedup` finds every such file already
// in the repo by device and inode and only writes what is left (symlinks,
// files with xattrs or special bits) and the directory metadata.
//
// The commit is the one `ostree commit` of dir makes (the test compares
// them), and every prelinked file's checksum is checked against the
// commit's dirtrees afterwards: a file ostree hashed itself after all
// would carry the xattr set here and so get another checksum, which is
// an error, never a silent difference.
func (r *Repo) commitPrelinked(ctx context.Context, dir string, o CommitOptions) (*CommitStats, error) {
	var known map[[2]uint64]prehashed
	var pst PrehashStats
	if o.Prehash != nil {
		known, pst = o.Prehash.Finish(o.Parallel)
	}
	linked, reused, err := r.prelink(ctx, dir, o.Parallel, known)
	if err != nil {
		return nil, err
	}
	o.speedup = true
	st, err := r.commitOnce(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	if err := r.checkPrelinked(st.Commit, linked); err != nil {
		return nil, err
	}
	st.Prelinked = len(linked)
	st.Prehashed, st.PrehashCompressed = int(reused), pst.Compressed
	return st, nil
}

// prelink makes the plain files of dir objects of r on n workers and
// returns their checksums by path (slash-separated, relative to dir) and
// how many of them were taken from known (see Prehash), not read again.
// A plain file is a regular file with one link, owned by 0:0, with no
// xattrs and no setuid, setgid or sticky bit: its repo object is the file
// itself, mode and all. Anything else is left to ostree.
func (r *Repo) prelink(ctx context.Context, dir string, n int, known map[[2]uint64]prehashed) (map[string]string, int64, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		// A file with other links is left to ostree: linking it and
		// setting the xattr would change what its other paths read as
		// before this walk reaches them.
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink == 1 {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	for i := 0; i < 256; i++ {
		if err := os.MkdirAll(filepath.Join(r.Path, "objects", fmt.Sprintf("%02x", i)), 0o755); err != nil {
			return nil, 0, err
		}
	}
	if n < 1 {
		n = 1
	}
	sums := make([]string, len(files))
	var next, reused atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for ; n > 0; n-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(files) || ctx.Err() != nil {
					return
				}
				sum, err := r.prelinkFile(files[i], buf, known, &reused)
				if err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
				sums[i] = sum
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	linked := make(map[string]string, len(files))
	for i, p := range files {
		if sums[i] != "" {
			rel, _ := filepath.Rel(dir, p)
			linked[filepath.ToSlash(rel)] = sums[i]
		}
	}
	return linked, reused.Load(), nil
}

// prelinkFile makes path a repo object if it is a plain file, and returns
// its checksum ("" if it is not plain). The checksum is known's when
// known has it for this very inode, unchanged.
func (r *Repo) prelinkFile(path string, buf []byte, known map[[2]uint64]prehashed, reused *atomic.Int64) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", err
	}
	if !plainStat(&st) {
		return "", nil
	}
	if sz, err := unix.Flistxattr(int(f.Fd()), nil); err != nil || sz != 0 {
		return "", nil
	}
	var sum string
	if k, ok := known[[2]uint64{st.Dev, st.Ino}]; ok && k.key == keyOf(&st) {
		sum = k.sum
		reused.Add(1)
	} else {
		// The checksum of a content object: its header (uuuusa(ayay):
		// uid, gid, mode, rdev, no symlink target, no xattrs), then the
		// content.
		h := sha256.New()
		h.Write(fileHeader(st.Uid, st.Gid, st.Mode))
		if _, err := io.CopyBuffer(h, f, buf); err != nil {
			return "", err
		}
		sum = hex.EncodeToString(h.Sum(nil))
	}
	obj := filepath.Join(r.Path, "objects", objectName(sum, "file"))
	if _, err := os.Lstat(obj); err == nil {
		// The repo has it already (an earlier build, or a file of the
		// same content here): the tree's file becomes a link to it.
		if err := replaceWithLink(obj, path); err != nil {
			return "", fmt.Errorf("commit: %w", err)
		}
		return sum, nil
	}
	// From here the tree's file carries the object's xattr, so it must
	// end up as the object or an error stops the commit.
	meta := make([]byte, 12) // (uuua(ayay)): uid, gid, mode, no xattrs
	binary.BigEndian.PutUint32(meta[0:], st.Uid)
	binary.BigEndian.PutUint32(meta[4:], st.Gid)
	binary.BigEndian.PutUint32(meta[8:], st.Mode)
	if err := unix.Fsetxattr(int(f.Fd()), "user.ostreemeta", meta, 0); err != nil {
		return "", fmt.Errorf("commit: %s: %w", path, err)
	}
	// OSTree's bare objects all have mtime 0.
	if err := unix.Futimes(int(f.Fd()), []unix.Timeval{{}, {}}); err != nil {
		return "", err
	}
	err = os.Link(path, obj)
	if errors.Is(err, fs.ErrExist) {
		// Another worker linked the same content first.
		err = replaceWithLink(obj, path)
	}
	if err != nil {
		return "", fmt.Errorf("commit: %w", err)
	}
	return sum, nil
}

// replaceWithLink replaces path by a hard link to target.
func replaceWithLink(target, path string) error {
	b := make([]byte, 6)
	rand.Read(b)
	tmp := path + ".cosa-link-" + hex.EncodeToString(b)
	if err := os.Link(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// fileHeader is the header a content object's checksum covers: the size
// of the variant (big-endian u32), 4 bytes of padding, then
// (uuuusa(ayay)) for a regular file without xattrs.
func fileHeader(uid, gid, mode uint32) []byte {
	b := make([]byte, 8+18)
	binary.BigEndian.PutUint32(b[0:], 18)
	binary.BigEndian.PutUint32(b[8:], uid)
	binary.BigEndian.PutUint32(b[12:], gid)
	binary.BigEndian.PutUint32(b[16:], mode)
	// rdev 0, then "" (its NUL at 16 of the variant), no xattrs, and the
	// string's end (17) as the one framing offset.
	b[8+17] = 17
	return b
}

// checkPrelinked checks that commit holds every prelinked file with the
// checksum it was linked under.
func (r *Repo) checkPrelinked(commit string, linked map[string]string) error {
	w := &walk{repo: r, meta: map[string]bool{}, content: map[string]bool{}}
	b, err := w.read(objectName(commit, "commit"))
	if err != nil {
		return err
	}
	info, err := parseCommit(b)
	if err != nil {
		return err
	}
	seen := 0
	var check func(tree, prefix string) error
	check = func(tree, prefix string) error {
		b, err := w.read(objectName(tree, "dirtree"))
		if err != nil {
			return err
		}
		files, dirs, err := parseDirtree(b)
		if err != nil {
			return err
		}
		for _, f := range files {
			if want, ok := linked[prefix+f.name]; ok {
				seen++
				if f.checksum != want {
					return fmt.Errorf("commit %s: %s has content %s, but it was linked as %s", commit, prefix+f.name, f.checksum, want)
				}
			}
		}
		for _, d := range dirs {
			if err := check(d.tree, prefix+d.name+"/"); err != nil {
				return err
			}
		}
		return nil
	}
	if err := check(info.tree, ""); err != nil {
		return err
	}
	if seen != len(linked) {
		return fmt.Errorf("commit %s: holds %d of the %d files linked into the repo before it", commit, seen, len(linked))
	}
	return nil
}
