package images

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/intree"
)

// The deployment's /etc comes from a commit a config made: an etc/fstab
// that links at a host file is replaced, and the host file keeps its bytes.
func TestFstabDoesNotWriteThroughSymlinks(t *testing.T) {
	tree := t.TempDir()
	canary := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(canary, []byte("secret\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	dep := filepath.Join(tree, "ostree/deploy/os/deploy/abc.0")
	if err := os.MkdirAll(filepath.Join(dep, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(canary, filepath.Join(dep, "etc/fstab")); err != nil {
		t.Fatal(err)
	}
	s := &OSTreeFstab{OSName: "os", Entries: []FstabEntry{{Label: "boot", Path: "/boot", FSType: "ext4"}}}
	if err := s.Run(context.Background(), &Env{Tree: tree, Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(canary); err != nil || string(data) != "secret\n" {
		t.Fatalf("host file changed: %q %v", data, err)
	}
	fi, err := os.Lstat(filepath.Join(dep, "etc/fstab"))
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("fstab is not a regular file: %v %v", fi, err)
	}
	data, _ := os.ReadFile(filepath.Join(dep, "etc/fstab"))
	if !strings.Contains(string(data), "LABEL=boot /boot ext4") {
		t.Errorf("fstab: %q", data)
	}

	// A symlinked etc is refused.
	os.RemoveAll(filepath.Join(dep, "etc"))
	if err := os.Symlink(filepath.Dir(canary), filepath.Join(dep, "etc")); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background(), &Env{Tree: tree, Log: io.Discard}); err == nil {
		t.Error("fstab through a symlinked etc: no error")
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(canary), "fstab")); err == nil {
		t.Error("fstab was written into the host directory")
	}
}

// A symlink where the disk stage wants an empty directory is replaced by
// one; what the link named outside the tree stays.
func TestEmptyDirReplacesSymlink(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "boot")); err != nil {
		t.Fatal(err)
	}
	if err := intree.EmptyDirIn(dir, "boot"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("outside file removed: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "boot")); err != nil || !fi.IsDir() {
		t.Errorf("boot is not a directory: %v %v", fi, err)
	}
	os.MkdirAll(filepath.Join(dir, "boot/x"), 0o755)
	if err := intree.EmptyDirIn(dir, "boot"); err != nil {
		t.Fatal(err)
	}
	if n, _ := os.ReadDir(filepath.Join(dir, "boot")); len(n) != 0 {
		t.Errorf("boot not emptied: %v", n)
	}
	// A link on the way is refused.
	os.RemoveAll(filepath.Join(dir, "boot"))
	os.Symlink(outside, filepath.Join(dir, "boot"))
	if err := intree.EmptyDirIn(dir, "boot/sub"); err == nil || !strings.Contains(err.Error(), "leads out of the tree") {
		t.Errorf("a path through a link out: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("outside file removed: %v", err)
	}
}

// tar's "file changed as we read it" is accepted only when the object's
// size and mtime held (a hard link or chmod moves the ctime alone).
func TestOnlyCtimeMoved(t *testing.T) {
	src := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(src, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	changed := "tar: disk.raw: file changed as we read it\n"
	exit1 := &hostcmd.Error{Name: "tar", ExitCode: 1, Stderr: changed}
	exit2 := &hostcmd.Error{Name: "tar", ExitCode: 2, Stderr: changed}
	other := &hostcmd.Error{Name: "tar", ExitCode: 1, Stderr: changed + "tar: other trouble\n"}
	if err := os.Link(src, src+".link"); err != nil {
		t.Fatal(err)
	}
	if !onlyCtimeMoved(exit1, src, before) {
		t.Error("a new hard link (ctime only) was not accepted")
	}
	if onlyCtimeMoved(exit2, src, before) || onlyCtimeMoved(other, src, before) {
		t.Error("another failure was accepted")
	}
	if err := os.WriteFile(src, []byte("DATA, longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if onlyCtimeMoved(exit1, src, before) {
		t.Error("a content change was accepted")
	}
}
