package extend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/images"
)

func TestCopySparseHash(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	// data, hole, data, trailing hole
	f.WriteAt(bytes.Repeat([]byte("a"), 5000), 0)
	f.WriteAt(bytes.Repeat([]byte("b"), 70000), 8<<20)
	f.Truncate(64 << 20)
	f.Close()
	want, _ := os.ReadFile(src)
	sum := sha256.Sum256(want)
	got, size, err := copySparseHash(src, filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	if got != hex.EncodeToString(sum[:]) || size != int64(len(want)) {
		t.Fatalf("sha256 %s size %d, want %x %d", got, size, sum, len(want))
	}
	dst, _ := os.ReadFile(filepath.Join(dir, "dst"))
	if !bytes.Equal(dst, want) {
		t.Fatal("copy differs from the source")
	}
	var st syscall.Stat_t
	syscall.Stat(filepath.Join(dir, "dst"), &st)
	if st.Blocks*512 > 4<<20 {
		t.Errorf("copy uses %d bytes on disk: holes were filled", st.Blocks*512)
	}
	// Hash only, and copy only (in-kernel): same answers.
	if h, n, err := hashSparse(src, nil); err != nil || h != got || n != size {
		t.Errorf("hashSparse: %s %d %v, want %s %d", h, n, err, got, size)
	}
	if _, n, err := copySparse(src, filepath.Join(dir, "dst2"), false); err != nil || n != size {
		t.Fatalf("copySparse: %d %v", n, err)
	}
	if dst2, _ := os.ReadFile(filepath.Join(dir, "dst2")); !bytes.Equal(dst2, want) {
		t.Fatal("in-kernel copy differs from the source")
	}
	syscall.Stat(filepath.Join(dir, "dst2"), &st)
	if st.Blocks*512 > 4<<20 {
		t.Errorf("in-kernel copy uses %d bytes on disk: holes were filled", st.Blocks*512)
	}
	// An all-hole file.
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644)
	os.Truncate(filepath.Join(dir, "empty"), 3<<20)
	z := sha256.Sum256(make([]byte, 3<<20))
	if got, _, err := copySparseHash(filepath.Join(dir, "empty"), filepath.Join(dir, "e2")); err != nil || got != hex.EncodeToString(z[:]) {
		t.Fatalf("all-hole file: %s %v", got, err)
	}
}

// stopAfter is a context whose Err turns non-nil at its n-th call: a stop
// at an exact point of a hash, the same on every run.
type stopAfter struct {
	context.Context
	n int
}

func (c *stopAfter) Err() error {
	if c.n--; c.n < 0 {
		return context.Canceled
	}
	return nil
}

func TestHashSparseStopAndResume(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// data, hole, data across chunk boundaries, hole, data, trailing hole
	f.WriteAt(bytes.Repeat([]byte("a"), 5000), 0)
	f.WriteAt(bytes.Repeat([]byte("b"), 9<<20+123), 8<<20)
	f.WriteAt([]byte("c"), 40<<20)
	f.Truncate(64 << 20)
	f.Close()
	content, _ := os.ReadFile(path)
	full := sha256.Sum256(content)
	want := hex.EncodeToString(full[:])
	in, size, err := fileutil.OpenSized(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()

	// Stopped after n chunks, then resumed (stopped again on the way for
	// the odd n): always the sum of the whole file, from partial states
	// that only move forward.
	for _, n := range []int{0, 1, 2, 3, 9, 10, 40, 55} {
		sum, p, err := hashSparseFrom(&stopAfter{context.Background(), n}, in, size, nil)
		if err != nil || sum != "" || p == nil {
			t.Fatalf("stop after %d: %q %+v %v, want a partial state", n, sum, p, err)
		}
		if p.Offset < 0 || p.Offset >= size {
			t.Fatalf("stop after %d: offset %d of %d", n, p.Offset, size)
		}
		if n%2 == 1 {
			_, q, err := hashSparseFrom(&stopAfter{context.Background(), 2}, in, size, p)
			if err != nil || q == nil || q.Offset <= p.Offset {
				t.Fatalf("stop after %d, then 2 more: %+v %v (from %d)", n, q, err, p.Offset)
			}
			p = q
		}
		if got, q, err := hashSparseFrom(context.Background(), in, size, p); err != nil || got != want || q != nil {
			t.Errorf("stop after %d at %d, resumed: %s %v, want %s", n, p.Offset, got, err, want)
		}
	}
	// Not stopped: the sum, as hashSparse gives it.
	if got, p, err := hashSparseFrom(&stopAfter{context.Background(), 1 << 20}, in, size, nil); got != want || p != nil || err != nil {
		t.Errorf("unstopped: %s %+v %v", got, p, err)
	}

	// The resumed run takes the state as it is: a state over other bytes
	// gives the sum of those bytes followed by the rest of the file. (A
	// run that started over would hide a resume that does not work.)
	_, p, _ := hashSparseFrom(&stopAfter{context.Background(), 3}, in, size, nil)
	other := sha256.New()
	other.Write(bytes.Repeat([]byte("x"), int(p.Offset)))
	forged := *p
	forged.State, _ = other.(encoding.BinaryMarshaler).MarshalBinary()
	other.Write(content[p.Offset:])
	if got, _, _ := hashSparseFrom(context.Background(), in, size, &forged); got != hex.EncodeToString(other.Sum(nil)) {
		t.Errorf("resume from a state at %d did not go on from it", p.Offset)
	}
	// ... but only over the file it was taken from: another inode or
	// mtime, a damaged state or an offset past the end starts over.
	for name, bad := range map[string]func(*images.PartialSum){
		"inode":  func(q *images.PartialSum) { q.Ino++ },
		"mtime":  func(q *images.PartialSum) { q.MtimeNs++ },
		"state":  func(q *images.PartialSum) { q.State = q.State[:10] },
		"offset": func(q *images.PartialSum) { q.Offset = size + 1 },
	} {
		q := forged
		bad(&q)
		if got, _, err := hashSparseFrom(context.Background(), in, size, &q); got != want || err != nil {
			t.Errorf("partial state with another %s: %s %v, want %s (from the start)", name, got, err, want)
		}
	}
	// hashSparse goes on from a partial state too.
	if got, n, err := hashSparse(path, &forged); err != nil || n != size || got != hex.EncodeToString(other.Sum(nil)) {
		t.Errorf("hashSparse from a partial state: %s %d %v", got, n, err)
	}
}
