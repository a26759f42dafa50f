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

// treeFixture writes a tree with what ostree records of directories and
// files in every corner a commit that moves or links files could get wrong: modes (setgid, sticky,
// read-only directories), xattrs on directories above and inside moved
// subtrees, symlinks, a hard link across subtrees, empty directories, and
// a kernel for --bootable.
func treeFixture(t *testing.T, dir string) {
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

// A consumed tree committed to a bare-user repo (prelinked: see
// commitPrelinked) makes the very commit one plain `ostree commit` of it
// makes, also when the repo already has every object, and leaves nothing.
func TestCommitPrelinkedIsOneCommit(t *testing.T) {
	needOstree(t)
	ctx := context.Background()
	base := t.TempDir()
	repo, err := Open(ctx, filepath.Join(base, "repo"), ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	orig := filepath.Join(base, "orig")
	treeFixture(t, orig)
	opts := CommitOptions{Subject: "s", Metadata: map[string]string{"version": "1"}, Bootable: true,
		Timestamp: time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)}
	plain, err := Open(ctx, filepath.Join(base, "plain"), ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	want, err := plain.CommitDir(ctx, orig, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		tree := filepath.Join(base, fmt.Sprintf("tree%d", i))
		if out, err := exec.Command("cp", "-a", orig, tree).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		o := opts
		o.Consume, o.Parallel = true, 2
		got, err := repo.CommitDir(ctx, tree, o)
		if err != nil {
			t.Fatal(err)
		}
		if got.Commit != want.Commit {
			d, _ := plain.run(ctx, "ls", "-R", "-C", "-X", "--", want.Commit)
			t.Errorf("commit %d: %s, plain: %s\n%s", i, got.Commit, want.Commit, d)
		}
		if os.Geteuid() == 0 && got.Prelinked < 100 {
			t.Errorf("commit %d: %d files prelinked; the test needs most of them", i, got.Prelinked)
		}
		if left, _ := filepath.Glob(tree + "*"); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
	}
	k, err := repo.MetadataString(ctx, want.Commit, "ostree.linux")
	if err != nil || k != "6.1.0-1-amd64" {
		t.Errorf("ostree.linux = %q, %v", k, err)
	}
	if out, err := exec.Command("ostree", "fsck", "--repo="+repo.Path).CombinedOutput(); err != nil {
		t.Fatalf("fsck: %v\n%s", err, out)
	}
}
