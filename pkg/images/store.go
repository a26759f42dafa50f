package images

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// Store is the content-addressed object store: cache/objects/<stage id>.
// Objects are complete trees; a tree is only ever visible under its final
// name after a rename, so a crash leaves at most a .tmp- dir behind.
type Store struct {
	Dir     string
	MaxSize int64 // bytes; 0 = no limit
}

// Path is where the object for id lives (whether or not it exists).
func (s *Store) Path(id string) string { return filepath.Join(s.Dir, id) }

// Has reports whether id is stored, and marks it used for LRU eviction.
func (s *Store) Has(id string) bool {
	p := s.Path(id)
	if _, err := os.Stat(p); err != nil {
		return false
	}
	now := time.Now()
	os.Chtimes(p, now, now)
	return true
}

// Recent returns the paths of up to n stored objects, most recently used
// first.
func (s *Store) Recent(n int) []string {
	ents, _ := os.ReadDir(s.Dir)
	type obj struct {
		path string
		t    time.Time
	}
	var objs []obj
	for _, e := range ents {
		if !e.IsDir() || !validObjectID(e.Name()) {
			continue
		}
		if info, err := e.Info(); err == nil {
			objs = append(objs, obj{s.Path(e.Name()), info.ModTime()})
		}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].t.After(objs[j].t) })
	var out []string
	for i := 0; i < len(objs) && i < n; i++ {
		out = append(out, objs[i].path)
	}
	return out
}

// Commit stores a copy of tree as object id.
func (s *Store) Commit(ctx context.Context, tree, id string) error {
	if s.Has(id) {
		return nil
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir, ".tmp-"+id+"-"+randHex(4))
	if err := copyTree(ctx, tree, tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, s.Path(id)); err != nil {
		os.RemoveAll(tmp)
		if s.Has(id) { // another run stored it first
			return nil
		}
		return err
	}
	return nil
}

// CommitMove stores tree as object id by renaming it (the caller is done
// with it), falling back to a copy across filesystems.
func (s *Store) CommitMove(ctx context.Context, tree, id string) error {
	if s.Has(id) {
		return nil
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tree, s.Path(id)); err == nil {
		return nil
	}
	return s.Commit(ctx, tree, id)
}

// StoreLockFile is the lock every engine run holds shared on the store
// (see storelock.go); it is never removed, so that a run waiting on it
// and the cleaner agree on one inode.
const StoreLockFile = ".lock"

// TryLockExclusive takes the store's lock exclusively without waiting, for
// a caller that empties the whole store: busy is true while an engine run
// (a build's image, buildextend, pipeline run) uses it. A store that does
// not exist is not created.
func (s *Store) TryLockExclusive() (release func(), busy bool, err error) {
	f, err := os.OpenFile(filepath.Join(s.Dir, StoreLockFile), os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	u := &storeUse{f}
	if !u.tryExclusive() {
		f.Close()
		return nil, true, nil
	}
	return u.release, false, nil
}

// Clean removes leftovers of interrupted commits and evictions, and the
// checksum sidecars of objects that are gone.
func (s *Store) Clean() {
	old, _ := filepath.Glob(filepath.Join(s.Dir, ".tmp-*"))
	for _, d := range old {
		fileutil.RemoveAll(d)
	}
	sums, _ := filepath.Glob(filepath.Join(s.Dir, "*.sums.json"))
	for _, p := range sums {
		if _, err := os.Lstat(strings.TrimSuffix(p, ".sums.json")); os.IsNotExist(err) {
			os.Remove(p)
		}
	}
}

// Evict deletes least recently used objects until the store is under
// MaxSize, never touching the ids in keep.
func (s *Store) Evict(keep map[string]bool) ([]string, error) {
	if s.MaxSize <= 0 {
		return nil, nil
	}
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, err
	}
	type obj struct {
		id   string
		used time.Time
		size int64
	}
	var objs []obj
	var total int64
	for _, e := range entries {
		if !e.IsDir() || e.Name()[0] == '.' {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		size := diskUsage(s.Path(e.Name()))
		total += size
		objs = append(objs, obj{e.Name(), info.ModTime(), size})
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].used.Before(objs[j].used) })
	var evicted []string
	for _, o := range objs {
		if total <= s.MaxSize {
			break
		}
		if keep[o.id] {
			continue
		}
		if err := s.removeObject(o.id); err != nil {
			return evicted, err
		}
		total -= o.size
		evicted = append(evicted, o.id)
	}
	return evicted, nil
}

// Size is the disk space the store uses, in bytes.
func (s *Store) Size() int64 { return diskUsage(s.Dir) }

// diskUsage counts allocated blocks, so sparse disk images count for what
// they really use.
func diskUsage(root string) int64 {
	var total int64
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			}
		}
		return nil
	})
	return total
}

// copyTree copies a tree keeping ownership, modes, xattrs, hardlinks and
// holes, with reflinks where the filesystem has them.
func copyTree(ctx context.Context, src, dst string) error {
	return fileutil.CopyTree(ctx, src, dst, "--reflink=auto", "--sparse=always")
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
