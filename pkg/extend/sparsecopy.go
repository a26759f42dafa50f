package extend

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"os"

	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/images"
	"golang.org/x/sys/unix"
)

// Disk images are mostly holes (a 10 GiB raw disk holds ~1 GiB). The
// helpers here visit only the data extents (fileutil.WalkSparse); holes
// are hashed from a zero buffer and never read or written.

var zeros = make([]byte, 1<<20)

func hashZeros(h hash.Hash, n int64) {
	for n > 0 {
		k := min(int64(len(zeros)), n)
		h.Write(zeros[:k])
		n -= k
	}
}

// copySparseHash copies src to dst in one pass, keeping holes as holes,
// and returns the sha256 and size of the content: reading the image once
// instead of copying and then hashing halves the work.
func copySparseHash(src, dst string) (string, int64, error) {
	return copySparse(src, dst, true)
}

// copySparse copies src to dst keeping holes; with hashing off the data
// moves in the kernel (copy_file_range), never through user space.
func copySparse(src, dst string, hashing bool) (string, int64, error) {
	in, size, err := fileutil.OpenSized(src)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return "", 0, err
	}
	defer out.Close()
	h := sha256.New()
	buf := make([]byte, fileutil.WriteChunk)
	err = fileutil.WalkSparse(in, 0, size, func(n int64) error {
		if hashing {
			hashZeros(h, n)
		}
		return nil
	}, func(off, n int64) error {
		if _, err := in.Seek(off, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(off, io.SeekStart); err != nil {
			return err
		}
		var err error
		if hashing {
			_, err = io.CopyBuffer(io.MultiWriter(out, h), io.LimitReader(in, n), buf)
		} else {
			_, err = out.ReadFrom(io.LimitReader(in, n)) // copy_file_range
		}
		return err
	})
	if err != nil {
		return "", 0, err
	}
	if err := out.Truncate(size); err != nil {
		return "", 0, err
	}
	if err := out.Close(); err != nil {
		return "", 0, err
	}
	if !hashing {
		return "", size, nil
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// hashSparse returns the sha256 and size of path, reading only its data.
// It goes on from p, a hash of path stopped part way, when p is one.
func hashSparse(path string, p *images.PartialSum) (string, int64, error) {
	in, size, err := fileutil.OpenSized(path)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	sum, _, err := hashSparseFrom(context.Background(), in, size, p)
	return sum, size, err
}

// hashSparseFrom hashes in (of the given size) to its end, starting from
// p when p is a hash stopped part way over this very file, and from the
// start otherwise. If ctx ends first, it returns where it got to instead
// of a sum; a run that goes on from there gives the sum of the whole file.
func hashSparseFrom(ctx context.Context, in *os.File, size int64, p *images.PartialSum) (string, *images.PartialSum, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(in.Fd()), &st); err != nil {
		return "", nil, err
	}
	here := images.PartialSum{Ino: st.Ino, MtimeNs: st.Mtim.Nano()}
	h := sha256.New()
	if p != nil && p.Ino == here.Ino && p.MtimeNs == here.MtimeNs && p.Offset > 0 && p.Offset <= size &&
		h.(encoding.BinaryUnmarshaler).UnmarshalBinary(p.State) == nil {
		here.Offset = p.Offset
	} else {
		h.Reset()
	}
	// Checked every chunk: a stop costs at most one chunk's hashing.
	stop := func() bool { return ctx.Err() != nil }
	buf := make([]byte, 4<<20)
	errStopped := errors.New("stopped")
	err := fileutil.WalkSparse(in, here.Offset, size, func(n int64) error {
		for n > 0 {
			if stop() {
				return errStopped
			}
			k := min(int64(len(zeros)), n)
			h.Write(zeros[:k])
			n -= k
			here.Offset += k
		}
		return nil
	}, func(off, n int64) error {
		for n > 0 {
			if stop() {
				return errStopped
			}
			k, err := in.ReadAt(buf[:min(int64(len(buf)), n)], off)
			h.Write(buf[:k])
			n -= int64(k)
			off += int64(k)
			here.Offset += int64(k)
			if err != nil && !(errors.Is(err, io.EOF) && n == 0) {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errStopped) {
		state, merr := h.(encoding.BinaryMarshaler).MarshalBinary()
		if merr != nil {
			return "", nil, merr
		}
		here.State = state
		return "", &here, nil
	}
	if err != nil {
		return "", nil, err
	}
	return hex.EncodeToString(h.Sum(nil)), nil, nil
}
