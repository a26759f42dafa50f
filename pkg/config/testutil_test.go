package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/internal/testutil"
)

// minimalManifest is a small valid manifest.yaml with a kernel package.
const minimalManifest = testutil.MinimalManifest + "  - linux-image-amd64\n"

// lines joins its arguments with newlines (and a trailing newline) so that
// tests can count lines easily.
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

// wantLoadError writes files into ROOT/sub/config and outside into ROOT,
// and asserts that Load of that config fails with want, one line, as a
// config error. In want, DIR stands for the config dir and REAL for ROOT
// with symlinks resolved.
func wantLoadError(t *testing.T, sub string, files, outside map[string]string, want string) {
	t.Helper()
	root := t.TempDir()
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, sub, "config")
	testutil.WriteTree(t, dir, files)
	testutil.WriteTree(t, root, outside)
	c, err := Load(dir)
	if err == nil {
		t.Fatalf("Load succeeded: %+v", c)
	}
	want = strings.NewReplacer("DIR", dir, "REAL", real).Replace(want)
	if got := err.Error(); got != want {
		t.Errorf("wrong error\n got: %s\nwant: %s", got, want)
	}
	if !IsConfigError(err) {
		t.Errorf("IsConfigError(%v) = false", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans several lines: %q", err.Error())
	}
}
