package fsattr

import (
	"os"
	"path/filepath"
	"testing"
)

// setImmutable sets the flag the way chattr +i does; it needs root (really
// CAP_LINUX_IMMUTABLE) and a filesystem with inode flags, else the test
// is skipped.
func setImmutable(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("setting the immutable flag needs root")
	}
	f, err := openNoFollow(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fl, err := getFlags(f, path)
	if err != nil {
		t.Fatal(err)
	}
	fl |= immutableFL
	if err := ioctl(f, fsIocSetflags, &fl); err != nil {
		t.Skipf("cannot set the immutable flag here: %v", err)
	}
	t.Cleanup(func() { Clear(path) })
	if imm, err := IsImmutable(path); err != nil || !imm {
		t.Fatalf("%s: immutable %v, %v after setting it", path, imm, err)
	}
}

func TestClearPlain(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, file} {
		if cleared, err := Clear(p); err != nil || cleared {
			t.Errorf("Clear(%s) = %v, %v; want false, nil", p, cleared, err)
		}
	}
	link := filepath.Join(dir, "l")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Clear(link); err == nil {
		t.Error("Clear followed a symlink")
	}
}

// TestClearTree: a tree with an immutable directory (as ostree leaves its
// deployments) and an immutable file cannot be removed until ClearTree ran;
// a symlink in it to an immutable directory outside is not followed.
func TestClearTree(t *testing.T) {
	root := filepath.Join(t.TempDir(), "tree")
	deploy := filepath.Join(root, "ostree", "deploy", "os", "deploy", "abc.0")
	if err := os.MkdirAll(filepath.Join(deploy, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	canary := t.TempDir()
	if err := os.Symlink(canary, filepath.Join(root, "out")); err != nil {
		t.Fatal(err)
	}
	setImmutable(t, deploy)
	setImmutable(t, file)
	setImmutable(t, canary)

	if err := os.RemoveAll(root); err == nil {
		t.Fatal("removed a tree with immutable entries; the test proves nothing")
	}
	n, err := ClearTree(root)
	if err != nil || n != 2 {
		t.Fatalf("ClearTree = %d, %v; want 2, nil", n, err)
	}
	if imm, err := IsImmutable(canary); err != nil || !imm {
		t.Errorf("the canary outside the tree lost its flag (%v, %v): ClearTree followed a symlink", imm, err)
	}
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
}

func TestSpreadSubdirs(t *testing.T) {
	dir := t.TempDir()
	if err := SpreadSubdirs(dir); err != nil {
		t.Fatal(err)
	}
	fl, err := Flags(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fl == 0 {
		t.Skipf("%s's file system has no inode flags", dir)
	}
	if fl&topdirFL == 0 {
		t.Fatalf("flags of %s are %#x after SpreadSubdirs: no FS_TOPDIR_FL", dir, fl)
	}
	// Setting it again changes nothing, and a subdirectory does not
	// inherit it: only the marked directory's children are spread.
	if err := SpreadSubdirs(dir); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if fl, err := Flags(sub); err != nil || fl&topdirFL != 0 {
		t.Fatalf("flags of the subdirectory: %#x, %v", fl, err)
	}
	if err := SpreadSubdirs(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("SpreadSubdirs of a missing directory: no error")
	}
}

func TestMkdirSpread(t *testing.T) {
	parent := t.TempDir()
	before, err := Flags(parent)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "scratch")
	if err := MkdirSpread(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("MkdirSpread made no directory: %v", err)
	}
	// The parent is left as it was: its other children are not spread.
	if after, err := Flags(parent); err != nil || after != before {
		t.Fatalf("parent flags %#x before, %#x (%v) after", before, after, err)
	}
	if err := MkdirSpread(dir, 0o755); !os.IsExist(err) {
		t.Fatalf("MkdirSpread of an existing directory: %v", err)
	}
	if err := MkdirSpread(filepath.Join(parent, "missing", "x"), 0o755); err == nil {
		t.Fatal("MkdirSpread under a missing parent: no error")
	}
}
