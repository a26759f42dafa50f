package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// writeTree creates files under root. A value starting with "symlink:" makes
// a symlink to the rest of the value; "dir:" makes an empty directory,
// "fifo:" a named pipe.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(content, "symlink:"):
			if err := os.Symlink(strings.TrimPrefix(content, "symlink:"), p); err != nil {
				t.Fatal(err)
			}
		case content == "fifo:":
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		case content == "dir:":
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// minimalManifest is the smallest valid manifest.yaml.
const minimalManifest = `name: demo
ref: demo/x86_64/dev
distro:
  suite: bookworm
packages:
  - systemd
  - linux-image-amd64
`

// lines joins its arguments with newlines (and a trailing newline) so that
// tests can count lines easily.
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }
