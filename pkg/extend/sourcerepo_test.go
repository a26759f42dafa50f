package extend

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/workdir"
)

// sourceRepo falls back to the build's ostree archive when the workdir
// repo lacks the commit: a short commit in that message is an error, not
// a slice out of range, and only an archive meta.json describes is
// unpacked.
func TestSourceRepoFallback(t *testing.T) {
	if _, err := exec.LookPath("ostree"); err != nil {
		t.Skip("ostree CLI not installed")
	}
	ctx := context.Background()
	w := &workdir.Workdir{Root: t.TempDir()}
	os.MkdirAll(w.TmpDir(), 0o755)
	d := &build.Dir{Root: filepath.Join(w.Root, "builds")}
	id, arch := "1.20261122.dev.0", "x86_64"
	os.MkdirAll(d.BuildDir(id, arch), 0o755)

	_, _, err := sourceRepo(ctx, w, d, id, arch, &build.Meta{BuildID: id, OSTreeCommit: "abc"})
	if err == nil || !strings.Contains(err.Error(), "commit abc is not in") {
		t.Errorf("no archive, short commit: %v", err)
	}

	tar := "x-ostree.tar"
	os.WriteFile(filepath.Join(d.BuildDir(id, arch), tar), []byte("not the archive meta.json describes"), 0o644)
	m := &build.Meta{BuildID: id, OSTreeCommit: strings.Repeat("a", 64), Images: map[string]build.Artifact{
		"ostree": {Path: tar, Sha256: strings.Repeat("b", 64), Size: 35},
	}}
	_, _, err = sourceRepo(ctx, w, d, id, arch, m)
	if err == nil || !strings.Contains(err.Error(), "artifact ostree: ") || !strings.Contains(err.Error(), "meta.json sha256 is "+strings.Repeat("b", 64)) {
		t.Errorf("archive that does not match: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(w.TmpDir(), "ostree-import-*")); len(left) != 0 {
		t.Errorf("unpacked anyway: %v", left)
	}
}
