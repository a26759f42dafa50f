package ostree

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// splitFixture writes a tree with what ostree records of directories and
// files in every corner a split could get wrong: modes (setgid, sticky,
// read-only directories), xattrs on directories above and inside moved
// subtrees, symlinks, a hard link across subtrees, empty directories, and
// a kernel for --bootable.
func splitFixture(t *testing.T, dir string) {
	t.Helper()
	mk := func(rel string, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Join(dir, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := func(rel string, n int, mode os.FileMode) {
		p := filepath.Join(dir, rel)
		mk(filepath.Dir(rel), 0o755)
		data := []byte(strings.Repeat(fmt.Sprintf("%s\n", rel), n/(len(rel)+1)+1))[:n]
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	file("usr/lib/modules/6.1.0-1-amd64/vmlinuz", 300<<10, 0o644)
	file("usr/lib/modules/6.1.0-1-amd64/initramfs.img", 200<<10, 0o644)
	for i := 0; i < 40; i++ {
		file(fmt.Sprintf("usr/lib/x86_64-linux-gnu/lib%d.so", i), 20<<10+i, 0o644)
		file(fmt.Sprintf("usr/share/doc/p%d/copyright", i), 9<<10+i, 0o644)
		file(fmt.Sprintf("usr/bin/tool%d", i), 15<<10+i, 0o755)
	}
	file("usr/share/zoneinfo/UTC", 100, 0o644)
	file("usr/etc/shadow", 10, 0o640)
	mk("usr/share/empty", 0o755)
	mk("var/tmp", 0o755)
	if err := os.Symlink("../lib/x86_64-linux-gnu/lib1.so", filepath.Join(dir, "usr/bin/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/lib", filepath.Join(dir, "lib")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "usr/bin/tool3"), filepath.Join(dir, "usr/share/doc/p3/tool3")); err != nil {
		t.Fatal(err)
	}
	for rel, v := range map[string]string{".": "root", "usr": "usr", "usr/share": "share", "usr/lib/x86_64-linux-gnu": "gnu", "usr/bin/tool5": "file"} {
		if err := unix.Lsetxattr(filepath.Join(dir, rel), "user.cosa-test", []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	}
	for rel, mode := range map[string]uint32{"var/tmp": 0o1777, "usr/share": 0o2755, "usr/share/empty": 0o555, "usr": 0o750, ".": 0o711} {
		if err := unix.Chmod(filepath.Join(dir, rel), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Lchown(filepath.Join(dir, "usr/share/doc"), 0, 4); err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
}

// Committing in parts makes the very commit one `ostree commit` makes.
func TestCommitInPartsIsOneCommit(t *testing.T) {
	needOstree(t)
	ctx := context.Background()
	saved := minSplitBytes
	minSplitBytes = 0
	defer func() { minSplitBytes = saved }()

	base := t.TempDir()
	repo, err := Open(ctx, filepath.Join(base, "repo"), ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	orig := filepath.Join(base, "orig")
	splitFixture(t, orig)
	opts := CommitOptions{Subject: "s", Metadata: map[string]string{"version": "1"}, Bootable: true, Consume: true,
		Timestamp: time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)}
	one := filepath.Join(base, "one")
	if out, err := exec.Command("cp", "-a", orig, one).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want, err := repo.CommitDir(ctx, one, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{2, 3} {
		tree := filepath.Join(base, fmt.Sprintf("tree%d", n))
		if out, err := exec.Command("cp", "-a", orig, tree).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		parts, err := splitTree(tree, n)
		if err != nil || len(parts) != n-1 {
			t.Fatalf("split in %d: %v, %v; the test needs a real split", n, parts, err)
		}
		o := opts
		o.Parallel = n
		got, err := repo.CommitDir(ctx, tree, o)
		if err != nil {
			t.Fatal(err)
		}
		if got.Commit != want.Commit {
			d, _ := repo.run(ctx, "diff", "--", want.Commit, got.Commit)
			t.Errorf("in %d parts (%v): commit %s, in one: %s\n%s", n, parts, got.Commit, want.Commit, d)
		}
		if len(got.Parts) != n {
			t.Errorf("in %d parts: part commits %v", n, got.Parts)
		}
		if got.ContentTotal != want.ContentTotal {
			t.Errorf("in %d parts: %d content objects, in one: %d", n, got.ContentTotal, want.ContentTotal)
		}
		if left, _ := filepath.Glob(tree + "*"); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
	}
	// The parts of the last commit, pulled at once into an archive repo,
	// hold all its content: the commit's own pull then adds none.
	last, err := repo.CommitDir(ctx, func() string {
		tree := filepath.Join(base, "tree-pull")
		if out, err := exec.Command("cp", "-a", orig, tree).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return tree
	}(), CommitOptions{Consume: true, Parallel: 2, Timestamp: opts.Timestamp})
	if err != nil {
		t.Fatal(err)
	}
	arch, err := Open(ctx, filepath.Join(base, "archive"), ModeArchive)
	if err != nil {
		t.Fatal(err)
	}
	if err := arch.PullLocalAll(ctx, repo, last.Parts); err != nil {
		t.Fatal(err)
	}
	if out, err := arch.run(ctx, "pull-local", "--", repo.Path, last.Commit); err != nil || !strings.Contains(out, " 0 content objects imported") {
		t.Errorf("pull of the commit after its parts: %q, %v", out, err)
	}
	k, err := repo.MetadataString(ctx, want.Commit, "ostree.linux")
	if err != nil || k != "6.1.0-1-amd64" {
		t.Errorf("ostree.linux = %q, %v", k, err)
	}
}

// A tree too small to be worth it, or with nothing to split, is committed
// in one piece.
func TestSplitTreeSmall(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if parts, err := splitTree(dir, 2); err != nil || parts != nil {
		t.Errorf("small tree: %v, %v", parts, err)
	}
}
