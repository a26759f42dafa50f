package compress

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A sum stamp lets Compress take a file's sha256 from meta.json without
// reading the file again (SHA-256 of a 1 GB image is about a core-second,
// taken from the compressor on a 2-CPU machine). Whoever last knew the
// file's content for certain (the image build, which hashed it or got it
// from the write-once store, and Decompress, which verified it while
// writing it) stores in the xattr stampAttr:
//
//	v1 <sha256> <size> <mtime ns> <stamp time ns>
//
// The xattr lives on the inode, so it goes away with the file, leaves
// nothing in the build directory, and a copy made with cp -a is a copy of
// the same content. The stamp is believed only while the file still has
// that size and modification time: any write moves the mtime, except a
// write in the same clock tick as the one the stamp saw. That is why
// the stamp time is taken before the stat it is based on, and a stamp is
// only believed (or written) when that stat's mtime was already
// stampWindow old: a later write then gets a later mtime (the kernel's
// coarse clock lags by at most a tick, a few ms). A file system that keeps
// mtimes to the millisecond or coarser (mtime nanoseconds a multiple of
// 10^6) is never stamped: there a tick-sized window would not be enough.
const stampAttr = "user.cosa.sha256"

// stampWindow is far above a clock tick (1-10 ms) and short enough to wait
// for once per artifact written.
const stampWindow = 50 * time.Millisecond

// sumStamp is the decoded xattr.
type sumStamp struct {
	sha256  string
	size    int64
	mtimeNs int64
	atNs    int64 // wall clock just before the stat that saw mtimeNs
}

func (s sumStamp) String() string {
	return fmt.Sprintf("v1 %s %d %d %d", s.sha256, s.size, s.mtimeNs, s.atNs)
}

func parseStamp(b []byte) (sumStamp, bool) {
	f := strings.Fields(string(b))
	if len(f) != 5 || f[0] != "v1" || len(f[1]) != 64 {
		return sumStamp{}, false
	}
	var n [3]int64
	for i := range n {
		v, err := strconv.ParseInt(f[2+i], 10, 64)
		if err != nil {
			return sumStamp{}, false
		}
		n[i] = v
	}
	return sumStamp{sha256: f[1], size: n[0], mtimeNs: n[1], atNs: n[2]}, true
}

// fileTimes is what a stamp is checked against.
type fileTimes struct {
	size    int64
	mtimeNs int64
}

func fstatTimes(f *os.File) (fileTimes, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return fileTimes{}, err
	}
	return fileTimes{size: st.Size, mtimeNs: st.Mtim.Nano()}, nil
}

// fineMtime reports whether ns looks like it comes from a file system with
// sub-millisecond timestamps (see stampAttr).
func fineMtime(ns int64) bool { return ns%int64(time.Millisecond) != 0 }

// stampedSum returns the sha256 that a valid stamp on f records, provided
// it is the one meta.json has (sum, size): the file is then known to hold
// that content, unread. ok is false when there is no stamp, or it does not
// match the file or meta.json, or it was taken too close to a write.
func stampedSum(f *os.File, sum string, size int64) (ft fileTimes, ok bool) {
	buf := make([]byte, 256)
	n, err := unix.Fgetxattr(int(f.Fd()), stampAttr, buf)
	if err != nil {
		return fileTimes{}, false
	}
	s, ok := parseStamp(buf[:n])
	if !ok || s.sha256 != sum || s.size != size {
		return fileTimes{}, false
	}
	ft, err = fstatTimes(f)
	if err != nil || ft.size != s.size || ft.mtimeNs != s.mtimeNs || !fineMtime(ft.mtimeNs) ||
		s.atNs-s.mtimeNs < int64(stampWindow) {
		return fileTimes{}, false
	}
	return ft, true
}

// StampSum records that the file at path has the given sha256 and size,
// for a later `cosa compress` to trust instead of hashing the file again.
// Call it only with a sum that was computed from (or verified against)
// this very file after its last write. It waits up to stampWindow when the
// file was written just now. Not stamping is never an error that matters
// to the caller (Compress then hashes): the error is for tests and logs.
func StampSum(path, sum string, size int64) error {
	return stampSum(path, sum, size, -1)
}

// stampSum is StampSum for a caller that saw the file's mtime (wantMtimeNs)
// when it knew its content; -1 means the current mtime.
func stampSum(path, sum string, size int64, wantMtimeNs int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		at := time.Now().UnixNano()
		ft, err := fstatTimes(f)
		if err != nil {
			return err
		}
		if wantMtimeNs < 0 {
			wantMtimeNs = ft.mtimeNs
		}
		switch {
		case ft.size != size:
			return fmt.Errorf("not stamping %s: %d bytes, not %d", path, ft.size, size)
		case ft.mtimeNs != wantMtimeNs:
			return fmt.Errorf("not stamping %s: written again meanwhile", path)
		case !fineMtime(ft.mtimeNs):
			return fmt.Errorf("not stamping %s: the file system keeps coarse timestamps", path)
		}
		wait := time.Duration(ft.mtimeNs + int64(stampWindow) - at)
		if wait > stampWindow {
			// An mtime in the future (the clock was set back): there is
			// no telling how long to wait.
			return fmt.Errorf("not stamping %s: its mtime is ahead of the clock", path)
		}
		if wait > 0 {
			// Too fresh: a write in the same tick would leave the mtime as
			// is. Once the window has passed, the stat is taken again.
			time.Sleep(wait)
			continue
		}
		s := sumStamp{sha256: sum, size: size, mtimeNs: ft.mtimeNs, atNs: at}
		if err := unix.Fsetxattr(int(f.Fd()), stampAttr, []byte(s.String()), 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
				return fmt.Errorf("not stamping %s: no user xattrs here: %w", path, err)
			}
			return fmt.Errorf("stamping %s: %w", path, err)
		}
		return nil
	}
}
