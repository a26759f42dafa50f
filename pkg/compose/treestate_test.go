package compose

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/ostree"
)

// treeBuild copies base into a new root as a build does (restore, mark,
// origins), lets change edit it, and returns the root and its state.
func treeBuild(t *testing.T, base, name string, change func(root string)) (string, *TreeState) {
	t.Helper()
	work := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(work, "rootfs")
	if out, err := exec.Command("cp", "-a", base, root).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	mark, err := changeMark(work)
	if err != nil {
		t.Fatal(err)
	}
	origins, err := dirOrigins(root)
	if err != nil {
		t.Fatal(err)
	}
	change(root)
	s, err := scanTreeState(root, "base/1", mark, origins)
	if err != nil {
		t.Fatal(err)
	}
	return root, s
}

func run(t *testing.T, dir string, script string) {
	t.Helper()
	cmd := exec.Command("sh", "-euc", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", script, err, out)
	}
}

// A commit over the previous build's commit, with the paths ChangedSince
// names, is the commit of the whole tree, in the cases a ctime alone would
// get wrong: a file the previous build changed and this one does not, a
// base file the previous build removed, two builds that each renamed a
// different base directory to the same name (and one moved
// another into the name the other left), a directory moved as the
// OSTree layout moves /etc, and a file only chmod'ed.
func TestTreeStateCommitOver(t *testing.T) {
	if _, err := exec.LookPath("ostree"); err != nil {
		t.Skip("needs the ostree CLI")
	}
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	testutil.WriteTree(t, base, map[string]string{
		"etc/os-release": "base os\n", "etc/ssh/sshd_config": "base sshd\n", "etc/hosts": "base hosts\n",
		"opt/a/x": "a's x\n", "opt/c/x": "c's x\n", "opt/c/sub/y": "c's y\n", "opt/a/sub/y": "a's y\n",
		"usr/bin/tool": "tool\n", "usr/bin/other": "other\n", "usr/share/doc/d": "doc\n", "var/log/old": "log\n",
	})
	repo, err := ostree.Open(ctx, filepath.Join(dir, "repo"), ostree.ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	opts := ostree.CommitOptions{Consume: true, Timestamp: ts}
	layout := "mkdir -p usr && mv etc usr/etc && rm -rf var/log && "

	prevRoot, prev := treeBuild(t, base, "prev", func(root string) {
		run(t, root, layout+`echo overlay > usr/bin/tool; rm usr/share/doc/d; mv opt/a opt/b; echo new > usr/bin/added`)
	})
	parent, err := repo.CommitDir(ctx, prevRoot, opts)
	if err != nil {
		t.Fatal(err)
	}

	change := func(root string) {
		run(t, root, layout+`rm usr/share/doc/d; mv opt/c opt/b; mv opt/a opt/c; echo new > usr/bin/added; chmod 0600 usr/bin/other; mkdir -p usr/lib/x && echo 1 > usr/lib/x/y`)
	}
	wholeRoot, _ := treeBuild(t, base, "whole", change)
	want, err := repo.CommitDir(ctx, wholeRoot, opts)
	if err != nil {
		t.Fatal(err)
	}
	curRoot, cur := treeBuild(t, base, "cur", change)
	changed, ok, why := cur.ChangedSince(prev)
	if !ok {
		t.Fatalf("not committable over the previous tree: %s", why)
	}
	got, err := repo.CommitOver(ctx, curRoot, parent.Commit, changed, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got.Commit != want.Commit {
		out, _ := exec.Command("ostree", "diff", "--repo="+repo.Path, want.Commit, got.Commit).CombinedOutput()
		t.Errorf("over the previous commit: %s, the whole tree: %s; changed %q\n%s", got.Commit, want.Commit, changed, out)
	}
	for _, p := range []string{"usr/bin/tool", "opt/b/x", "opt/b/sub/y", "opt/c/x", "opt/c/sub/y", "usr/bin/other", "usr/lib/x/y"} {
		if !contains(changed, p) {
			t.Errorf("%s not in the changed paths %q", p, changed)
		}
	}
	// The layout's move of /etc and what neither build touched are not
	// hashed again (a file both builds wrote is: the ctime cannot tell).
	for _, p := range []string{"usr/etc/os-release", "usr/etc/ssh/sshd_config", "usr/share"} {
		if contains(changed, p) {
			t.Errorf("%s is in the changed paths %q", p, changed)
		}
	}

	// A path of the previous tree that this one lacks cannot be expressed
	// as changes over it; neither can another base tree.
	_, gone := treeBuild(t, base, "gone", func(root string) {
		run(t, root, layout+`rm usr/share/doc/d usr/bin/tool; mv opt/a opt/b; echo new > usr/bin/added`)
	})
	if _, ok, why := gone.ChangedSince(prev); ok || !strings.Contains(why, "/usr/bin/tool is gone") {
		t.Errorf("a removed path: ok %v, %q", ok, why)
	}
	other := *cur
	other.Base = "base/2"
	if _, ok, _ := other.ChangedSince(prev); ok {
		t.Errorf("a tree of another base went over the previous one")
	}

	// The state survives the cache.
	cache := t.TempDir()
	if err := SaveTreeState(cache, parent.Commit, prev); err != nil {
		t.Fatal(err)
	}
	back := LoadTreeState(cache, parent.Commit)
	if back == nil || len(back.Entries) != len(prev.Entries) || back.Base != prev.Base {
		t.Fatalf("stored state: %+v", back)
	}
	if c, ok, _ := cur.ChangedSince(back); !ok || strings.Join(c, " ") != strings.Join(changed, " ") {
		t.Errorf("over the stored state: %q, over the scanned one: %q", c, changed)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
