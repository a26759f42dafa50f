package extend

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"syscall"
	"testing"
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
	if h, n, err := hashSparse(src); err != nil || h != got || n != size {
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
