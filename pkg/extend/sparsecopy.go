package extend

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"os"
	"syscall"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// lseek(2) whence values for walking a sparse file (Linux).
const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

// Disk images are mostly holes (a 10 GiB raw disk holds ~1 GiB). The
// helpers here visit only the data extents; holes are hashed from a zero
// buffer and never read or written.

// walkSparse calls hole(n) for each run of n hole bytes and data(off, n)
// for each data extent of in, in file order.
func walkSparse(in *os.File, size int64, hole func(n int64), data func(off, n int64) error) error {
	var off int64
	for off < size {
		d, err := in.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			d = size // only a hole remains
		} else if err != nil {
			return err
		}
		if d > off {
			hole(d - off)
			off = d
		}
		if off >= size {
			break
		}
		h, err := in.Seek(off, seekHole)
		if err != nil {
			return err
		}
		if err := data(off, h-off); err != nil {
			return err
		}
		off = h
	}
	return nil
}

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
	buf := make([]byte, 4<<20)
	err = walkSparse(in, size, func(n int64) {
		if hashing {
			hashZeros(h, n)
		}
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
func hashSparse(path string) (string, int64, error) {
	in, size, err := fileutil.OpenSized(path)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	sum, err := hashSparseFile(in, size)
	return sum, size, err
}

// hashSparseFile is hashSparse of an open file of the given size.
func hashSparseFile(in *os.File, size int64) (string, error) {
	h := sha256.New()
	buf := make([]byte, 4<<20)
	err := walkSparse(in, size, func(n int64) { hashZeros(h, n) }, func(off, n int64) error {
		_, err := io.CopyBuffer(h, io.NewSectionReader(in, off, n), buf)
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
