package images

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The pull-local stage ends ostree's options with "--" before its
// positional arguments, so none of them is ever read as an option. A
// source repo whose (relative) path starts with "-" shows it.
func TestPullLocalPositionalArgsAfterDashDash(t *testing.T) {
	if _, err := exec.LookPath("ostree"); err != nil {
		t.Skip("ostree CLI not installed")
	}
	ctx := context.Background()
	base := t.TempDir()
	t.Chdir(base)
	os.MkdirAll("src/etc", 0o755)
	os.WriteFile("src/etc/hostname", []byte("x\n"), 0o644)
	mustRun(t, "ostree", "init", "--repo=-repo", "--mode=archive")
	commit := strings.TrimSpace(mustRun(t, "ostree", "commit", "--repo=-repo", "--branch=test/x", "--tree=dir=src"))

	tree := filepath.Join(base, "tree")
	os.Mkdir(tree, 0o755)
	e := &Env{Tree: tree, Sources: Sources{OSTreeRepo: "-repo"}, Scratch: t.TempDir(), Log: io.Discard}
	for _, st := range []StageImpl{&OSTreeInitFS{}, &OSTreePullLocal{Commit: commit, Ref: "test/x"}} {
		if err := st.Run(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.TrimSpace(mustRun(t, "ostree", "rev-parse", "--repo="+filepath.Join(tree, "ostree/repo"), "test/x"))
	if got != commit {
		t.Errorf("test/x in the sysroot is %q, want %s", got, commit)
	}
}
