package fileutil

import (
	"bytes"
	"errors"
	"os"
	"syscall"
)

// lseek(2) whence values for walking a sparse file (Linux).
const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

// WalkSparse calls hole(n) for each run of n hole bytes and data(off, n)
// for each data extent of in from offset start to size, in file order.
// Disk images are mostly holes: their readers visit only the data.
func WalkSparse(in *os.File, start, size int64, hole func(n int64) error, data func(off, n int64) error) error {
	off := start
	for off < size {
		d, err := in.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			d = size // only a hole remains
		} else if err != nil {
			return err
		}
		d = min(d, size)
		if d > off {
			if err := hole(d - off); err != nil {
				return err
			}
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

// AllZero reports whether b holds only zero bytes: the test for a block
// that a sparse file or image leaves as a hole.
func AllZero(b []byte) bool {
	for len(b) >= len(zeroPage) {
		if !bytes.Equal(b[:len(zeroPage)], zeroPage[:]) {
			return false
		}
		b = b[len(zeroPage):]
	}
	return bytes.Equal(b, zeroPage[:len(b)])
}

var zeroPage [64 << 10]byte
