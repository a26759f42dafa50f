package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteTree(t *testing.T) {
	root := t.TempDir()
	WriteTree(t, root, map[string]string{
		"a/b.txt":  "hello",
		"a/run.sh": "#!/bin/sh\n",
		"link":     "symlink:a/b.txt",
		"empty":    "dir:",
		"pipe":     "fifo:",
	})
	if b, err := os.ReadFile(filepath.Join(root, "link")); err != nil || string(b) != "hello" {
		t.Errorf("link reads %q, %v", b, err)
	}
	checks := map[string]os.FileMode{"a/b.txt": 0o644, "a/run.sh": 0o755, "empty": os.ModeDir | 0o755, "pipe": os.ModeNamedPipe | 0o644}
	for name, want := range checks {
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if fi.Mode()&^0o022 != want&^0o022 { // the umask may take group/other write
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
}
