package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cosa-build/cosa/internal/testutil"
)

// TestModesIgnoreUmask: what cosa creates has the same modes whatever the
// caller's umask (directories 0755, files 0644), as docs/workdir.md says;
// a restrictive umask used to give 0700 directories next to 0644 artifacts.
func TestModesIgnoreUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })

	wd := filepath.Join(t.TempDir(), "w")
	cosa(t, "init", "-C", wd).wantOK(t)
	for _, d := range []string{".", "src", "src/config", "src/config/overlay.d", "cache", "tmp", "builds"} {
		wantMode(t, filepath.Join(wd, d), fs.ModeDir|0o755)
	}
	wantMode(t, filepath.Join(wd, "src", "config", "manifest.yaml"), 0o644)

	// An image pipeline writes the stage cache and, with --output, a
	// directory of its own.
	syscall.Umask(0o077)
	testutil.WriteTree(t, wd, map[string]string{"p.json": goodPipeline})
	out := filepath.Join(wd, "builds", "out")
	cosa(t, "-C", wd, "pipeline", "run", filepath.Join(wd, "p.json"), "--output", out).wantCode(t, 0)
	wantMode(t, out, fs.ModeDir|0o755)
	wantMode(t, filepath.Join(out, "image"), fs.ModeDir|0o755)
	wantMode(t, filepath.Join(out, "image", "disk.raw"), 0o644)
	objects := filepath.Join(wd, "cache", "objects")
	wantMode(t, objects, fs.ModeDir|0o755)
	ents, err := os.ReadDir(objects)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if e.IsDir() {
			n++
			wantMode(t, filepath.Join(objects, e.Name()), fs.ModeDir|0o755)
		}
	}
	if n == 0 {
		t.Error("the pipeline stored no object")
	}
}
