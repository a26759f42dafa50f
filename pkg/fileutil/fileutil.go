// Package fileutil is the one home of the small file helpers cosa's
// packages share: atomic replacement, directory sync, hashing, human sizes,
// cancellable reads and removing trees that ostree made immutable.
package fileutil

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cosa-build/cosa/pkg/fsattr"
	"golang.org/x/sys/unix"
)

// WriteFileAtomic replaces path with data so that readers see either the old
// content or the new one, never a mix, even across a crash: the data goes to
// a temporary file (".NAME.tmp-XXXX") in the same directory, which is synced,
// given perm, and renamed over path; the directory is then synced so the
// rename itself is durable.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return WriteAtomic(path, perm, func(f *os.File) error {
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		return nil
	})
}

// WriteAtomic is WriteFileAtomic for content that fill writes (streamed, or
// checked before it may replace path: an error from fill leaves path as it
// was and removes the temporary file).
func WriteAtomic(path string, perm os.FileMode, fill func(*os.File) error) (err error) {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if err = fill(tmp); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	// CreateTemp makes 0600 files; chmod explicitly because the umask must
	// not decide whether meta.json is world-readable.
	if err = tmp.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return SyncDir(dir)
}

// RemoveTemps removes the temporary files that WriteFileAtomic and
// WriteAtomic name after path (".NAME.tmp-*") and that a killed writer left
// behind; their random suffix means no later write reuses, and so clears,
// them. Only a caller that is the sole writer of path may call it (under
// the lock that serialises path's writers), or it deletes another writer's
// file in flight.
func RemoveTemps(path string) error {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	matches, err := filepath.Glob(filepath.Join(dir, "."+globEscape(name)+".tmp-*"))
	if err != nil {
		return err
	}
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing stale %s: %w", m, err)
		}
	}
	return nil
}

func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`).Replace(s)
}

// SyncDir makes a rename, link or removal inside dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// SHA256File returns the hex sha256 of the file at path and its size.
func SHA256File(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	sum, n, err := SHA256Reader(f)
	if err != nil {
		return "", 0, fmt.Errorf("reading %s: %w", path, err)
	}
	return sum, n, nil
}

// SHA256Reader returns the hex sha256 of what r yields and its length.
func SHA256Reader(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// SHA256Hex is the hex sha256 of b.
func SHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// HumanBytes formats n in binary units (KiB, MiB, GiB), as cosa's sizes
// in configs and disk images are.
func HumanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// ContextReader returns a reader that fails with ctx's error once ctx is
// done, so hashing or copying a large file stops promptly on cancel.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// RemoveAll is os.RemoveAll (which never follows symlinks) for trees that
// may hold ostree deployments, whose directories `ostree admin deploy`
// makes immutable: if something could not be removed, it clears the inode
// flags that block removal on what is left and tries again. The first pass
// leaves only the flagged entries and their parents, so the walk is short.
func RemoveAll(p string) error {
	err := os.RemoveAll(p)
	if err == nil {
		return nil
	}
	if _, cerr := fsattr.ClearTree(p); cerr != nil && !errors.Is(cerr, os.ErrNotExist) {
		return fmt.Errorf("%w (and clearing immutable flags: %v)", err, cerr)
	}
	return os.RemoveAll(p)
}

// OpenSized opens path for reading and returns its size, taken from the
// open file so the two always agree.
func OpenSized(path string) (*os.File, int64, error) {
	f, st, err := OpenStat(path)
	if err != nil {
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// OpenStat opens path for reading and returns the open file's FileInfo,
// so what the caller checks is what it reads.
func OpenStat(path string) (*os.File, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// StartWriteback asks the kernel to start writing path's dirty pages to
// disk now, without waiting (sync_file_range SYNC_FILE_RANGE_WRITE). A
// tool that wrote a big file without syncing it leaves it in memory until
// a later sync pays for all of it at once; started early, the disk writes
// it while the next steps use the CPU. Only a hint: errors are ignored.
func StartWriteback(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
