package testutil

import (
	"archive/tar"
	"bytes"
	"io"
	"sync"
	"testing"
)

// SyncBuffer is a bytes.Buffer that a command's goroutines and a test may
// write and read at the same time.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TarMembers reads a whole tar archive into member name -> contents.
func TarMembers(t testing.TB, data []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("tar member %s: %v", h.Name, err)
		}
		out[h.Name] = string(b)
	}
}
