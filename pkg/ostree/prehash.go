package ostree

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/flate"
	"golang.org/x/sys/unix"
)

// Prehash reads a tree's plain files ahead of its commit, while the
// caller is still finishing the tree: in a cold build, from the end of
// mmdebstrap through the base-cache copy, the overlays and dracut, which
// together leave one of two cores idle for about 8 s. Each file is read
// once for two results: its object checksum, which commitPrelinked then
// takes instead of reading the file again, and, for a file of minCached
// bytes or more, its archive form in the export cache, which the export
// then finds there instead of compressing it (the cache is keyed by
// object checksum, so an entry is right whatever becomes of the file).
//
// A checksum is only used for the file it was read from, unchanged: the
// same inode with the same size, mode, owner, mtime and ctime. A write
// changes the ctime, and no program can set it back; a file whose ctime
// was less than prehashSettle before it was read is not hashed at all,
// so a write in the same clock tick as the one before the read cannot go
// unnoticed. Anything not hashed ahead, or changed since, is hashed at
// the commit as before; Prehash never makes a commit different.
//
// The tree is read through an os.Root: whatever the sandboxed steps
// still running do to it, no path leads out of it.
type Prehash struct {
	root     *os.Root
	cacheDir string
	cancel   context.CancelFunc
	ctx      context.Context
	listed   chan struct{} // closed once files is complete
	files    []string
	next     atomic.Int64
	results  []prehashed // by index in files
	wg       sync.WaitGroup

	compressed atomic.Int64
	finish     sync.Once
	sums       map[[2]uint64]prehashed
}

// prehashed is one file's checksum with the stat it was read under.
type prehashed struct {
	key statKey
	sum string
}

// statKey is what must not have changed for a checksum to still hold.
type statKey struct {
	dev, ino, nlink uint64
	size            int64
	mode, uid, gid  uint32
	mtime, ctime    unix.Timespec
}

func keyOf(st *unix.Stat_t) statKey {
	return statKey{dev: st.Dev, ino: st.Ino, nlink: uint64(st.Nlink), size: st.Size, mode: st.Mode,
		uid: st.Uid, gid: st.Gid, mtime: st.Mtim, ctime: st.Ctim}
}

// prehashSettle is how long before its read a file must have last
// changed. ctime comes from a coarse clock (a few ms per tick). A
// variable for the tests.
var prehashSettle = time.Second

// StartPrehash starts reading dir's plain files on one core. cacheDir, if
// not empty, is the export cache WriteArchiveTar will be given. Finish or
// Stop must be called.
func StartPrehash(ctx context.Context, dir, cacheDir string) (*Prehash, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Prehash{root: root, cacheDir: cacheDir, ctx: ctx, cancel: cancel, listed: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		// At a lower priority than the compose's own steps (dracut), on
		// its own thread: it is meant to take the core they leave, not
		// to slow them down. The thread keeps its priority and ends with
		// the goroutine (LockOSThread without Unlock).
		runtime.LockOSThread()
		unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 10)
		p.list()
		p.work()
	}()
	return p, nil
}

// list collects the regular files (a best effort: the tree may be
// changing; whatever is missed is hashed at the commit).
func (p *Prehash) list() {
	defer close(p.listed)
	fs.WalkDir(p.root.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if p.ctx.Err() != nil {
			return fs.SkipAll
		}
		if err == nil && d.Type().IsRegular() {
			p.files = append(p.files, path)
		}
		return nil
	})
	p.results = make([]prehashed, len(p.files))
}

func (p *Prehash) work() {
	<-p.listed
	buf := make([]byte, 256<<10)
	fw, _ := flate.NewWriter(nil, flate.BestSpeed)
	var out bytes.Buffer
	for p.ctx.Err() == nil {
		i := int(p.next.Add(1) - 1)
		if i >= len(p.files) {
			return
		}
		p.results[i] = p.hashFile(p.files[i], buf, fw, &out)
	}
}

// hashFile returns the checksum of path with the stat it holds for, or a
// zero prehashed if path is not a plain file or was not settled.
func (p *Prehash) hashFile(path string, buf []byte, fw *flate.Writer, out *bytes.Buffer) prehashed {
	f, err := p.root.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return prehashed{}
	}
	defer f.Close()
	fd := int(f.Fd())
	start := time.Now()
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || !plainStat(&st) {
		return prehashed{}
	}
	if sz, err := unix.Flistxattr(fd, nil); err != nil || sz != 0 {
		return prehashed{}
	}
	if time.Unix(st.Ctim.Unix()).After(start.Add(-prehashSettle)) {
		return prehashed{}
	}
	h := sha256.New()
	h.Write(fileHeader(st.Uid, st.Gid, st.Mode))
	var w io.Writer = h
	cache := p.cacheDir != "" && st.Size >= minCached
	if cache {
		// The export's archive form of this object, built in the same pass.
		out.Reset()
		out.Write(archiveHeader(uint64(st.Size), st.Uid, st.Gid, st.Mode, "", nil))
		fw.Reset(out)
		w = io.MultiWriter(h, fw)
	}
	n, err := io.CopyBuffer(w, f, buf)
	if err != nil || n != st.Size {
		return prehashed{}
	}
	var after unix.Stat_t
	if unix.Fstat(fd, &after) != nil || keyOf(&after) != keyOf(&st) {
		return prehashed{}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if cache && fw.Close() == nil {
		dst := filepath.Join(p.cacheDir, "objects", objectName(sum, "filez"))
		if _, err := os.Lstat(dst); err != nil && writeCached(dst, out.Bytes()) == nil {
			p.compressed.Add(1)
		}
	}
	return prehashed{key: keyOf(&st), sum: sum}
}

// plainStat reports whether st is a plain file (see prelink): regular, one
// link, owned by 0:0, no setuid, setgid or sticky bit.
func plainStat(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&(unix.S_ISUID|unix.S_ISGID|unix.S_ISVTX) == 0 &&
		st.Uid == 0 && st.Gid == 0 && st.Nlink == 1
}

// Finish hashes what is left on n cores and returns the checksums by
// device and inode, each with the stat it holds for. Later calls return
// the same.
func (p *Prehash) Finish(n int) (map[[2]uint64]prehashed, PrehashStats) {
	p.finish.Do(func() {
		for ; n > 1; n-- {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.work()
			}()
		}
		p.wg.Wait()
		p.root.Close()
		p.sums = map[[2]uint64]prehashed{}
		if p.ctx.Err() == nil {
			for _, r := range p.results {
				if r.sum != "" {
					p.sums[[2]uint64{r.key.dev, r.key.ino}] = r
				}
			}
		}
		p.cancel()
	})
	return p.sums, PrehashStats{Listed: len(p.files), Hashed: len(p.sums), Compressed: int(p.compressed.Load())}
}

// Stop ends the reading (a build that failed first); safe after Finish.
func (p *Prehash) Stop() {
	p.cancel()
	p.wg.Wait()
	p.root.Close()
}

// PrehashStats says what a Prehash did.
type PrehashStats struct {
	Listed     int // regular files listed
	Hashed     int // plain files hashed
	Compressed int // of those, written to the export cache
}
