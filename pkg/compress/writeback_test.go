package compress

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestFollowWrites hashes a file while a real compressor process writes
// it, as compressFile does, and checks the sum against the finished file.
func TestFollowWrites(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Skip("zstd is not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "in")
	data := make([]byte, 24<<20) // random: zstd writes it out nearly whole
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(filepath.Join(dir, "out.zst"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	h := newHashCounter()
	fw := followWrites(context.Background(), out, h)
	if err := CompressStream(context.Background(), Zstd, out, in, StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := fw.finish(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(got)
	if h.sum() != hex.EncodeToString(want[:]) || h.n != int64(len(got)) {
		t.Fatalf("followed %d bytes with sha256 %s; the file has %d bytes, sha256 %x", h.n, h.sum(), len(got), want)
	}
	if len(got) < len(data)/2 {
		t.Fatalf("output is only %d bytes", len(got))
	}
}

// TestFollowWritesCancel: a cancelled context ends a follower whose
// writer never finishes.
func TestFollowWritesCancel(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	fw := followWrites(ctx, f, newHashCounter())
	cancel()
	if err := <-fw.res; err != context.Canceled {
		t.Fatalf("follower after cancel: %v", err)
	}
}
