package ostree

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A commit over the previous commit, naming only what changed, is the
// commit of the whole tree: a changed file, a new file in a new directory,
// a directory whose mode and xattrs changed, a symlink retargeted, a file
// that became read-only, and a changed kernel (--bootable).
func TestCommitOverIsTheWholeCommit(t *testing.T) {
	needOstree(t)
	ctx := context.Background()
	base := t.TempDir()
	repo, err := Open(ctx, filepath.Join(base, "repo"), ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	orig := filepath.Join(base, "orig")
	treeFixture(t, orig)
	cp := func(name string) string {
		p := filepath.Join(base, name)
		if out, err := exec.Command("cp", "-a", orig, p).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return p
	}
	parent, err := repo.CommitDir(ctx, cp("first"), CommitOptions{Consume: true, Bootable: true, Timestamp: ts})
	if err != nil {
		t.Fatal(err)
	}

	change := func(dir string) {
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(os.WriteFile(filepath.Join(dir, "usr/bin/tool7"), []byte("new tool\n"), 0o755))
		must(os.MkdirAll(filepath.Join(dir, "usr/share/new/deeper"), 0o755))
		must(os.WriteFile(filepath.Join(dir, "usr/share/new/deeper/f"), []byte("f\n"), 0o644))
		must(unix.Chmod(filepath.Join(dir, "usr/share/doc/p9"), 0o700))
		must(unix.Lsetxattr(filepath.Join(dir, "usr/share/doc/p9"), "user.cosa-test", []byte("p9"), 0))
		must(os.Remove(filepath.Join(dir, "usr/bin/link")))
		must(os.Symlink("tool2", filepath.Join(dir, "usr/bin/link")))
		must(os.Chmod(filepath.Join(dir, "usr/share/zoneinfo/UTC"), 0o444))
		must(os.WriteFile(filepath.Join(dir, "usr/lib/modules/6.1.0-1-amd64/initramfs.img"), []byte("another initramfs"), 0o644))
	}
	changed := []string{"usr/bin/tool7", "usr/share/new", "usr/share/new/deeper", "usr/share/new/deeper/f",
		"usr/share/doc/p9", "usr/bin/link", "usr/share/zoneinfo/UTC", "usr/lib/modules/6.1.0-1-amd64/initramfs.img"}

	opts := CommitOptions{Subject: "s", Metadata: map[string]string{"version": "2"}, Bootable: true, Consume: true, Timestamp: ts}
	whole := cp("whole")
	change(whole)
	want, err := repo.CommitDir(ctx, whole, opts)
	if err != nil {
		t.Fatal(err)
	}
	over := cp("over")
	change(over)
	got, err := repo.CommitOver(ctx, over, parent.Commit, changed, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got.Commit != want.Commit {
		d, _ := repo.run(ctx, "diff", "--", want.Commit, got.Commit)
		t.Errorf("over %s: commit %s, whole tree: %s\n%s", parent.Commit, got.Commit, want.Commit, d)
	}
	// Only the changed files were read: 4 regular files and a symlink.
	// Only the changed entries were taken: every other file is still in
	// dir, for the caller to remove.
	count := func(dir string) (n int) {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	if left, all := count(over), count(orig); left != all-4 {
		t.Errorf("commit over: %d of the tree's %d files left in dir, want all but the 4 changed", left, all)
	}
	for _, rel := range changed {
		if _, err := os.Lstat(filepath.Join(over, rel)); err == nil && rel != "usr/share/doc/p9" && !strings.HasPrefix(rel, "usr/share/new") {
			t.Errorf("changed %s still in dir", rel)
		}
	}
	if _, err := os.Stat(over + ".over"); !os.IsNotExist(err) {
		t.Errorf("the sibling root is left: %v", err)
	}

	// Leaving out a change is a different commit: the test can fail.
	lie := cp("lie")
	change(lie)
	bad, err := repo.CommitOver(ctx, lie, parent.Commit, changed[1:], opts)
	if err != nil {
		t.Fatal(err)
	}
	if bad.Commit == want.Commit {
		t.Errorf("a change left out made the whole tree's commit %s", bad.Commit)
	}
	if _, err := repo.CommitOver(ctx, cp("bad"), parent.Commit, []string{"../etc"}, opts); err == nil {
		t.Errorf("a path out of the tree was accepted")
	}
}
