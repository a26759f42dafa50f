package fileutil

import (
	"bytes"
	"errors"
	"testing"
)

type recWriter struct {
	sizes []int
	buf   bytes.Buffer
	fail  int // fail the write with this index (1-based), 0 never
}

func (r *recWriter) Write(p []byte) (int, error) {
	r.sizes = append(r.sizes, len(p))
	if len(r.sizes) == r.fail {
		r.buf.Write(p[:10])
		return 10, errors.New("no space")
	}
	return r.buf.Write(p)
}

func TestChunkedWriter(t *testing.T) {
	data := make([]byte, 2*WriteChunk+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var r recWriter
	n, err := ChunkedWriter{W: &r}.Write(data)
	if err != nil || n != len(data) || !bytes.Equal(r.buf.Bytes(), data) {
		t.Fatalf("wrote %d, %v", n, err)
	}
	if want := []int{WriteChunk, WriteChunk, 12345}; len(r.sizes) != 3 || r.sizes[0] != want[0] || r.sizes[1] != want[1] || r.sizes[2] != want[2] {
		t.Errorf("write sizes %v, want %v", r.sizes, want)
	}
	r = recWriter{fail: 2}
	n, err = ChunkedWriter{W: &r}.Write(data)
	if err == nil || n != WriteChunk+10 || len(r.sizes) != 2 {
		t.Errorf("after a failed write: n=%d err=%v writes %v", n, err, r.sizes)
	}
}
