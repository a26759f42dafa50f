package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/fsattr"
)

// needRootTools skips unless the test runs as root (ostree only sets, and
// only root can set, the immutable flag) with the given tools.
func needRootTools(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs host tools; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestOSTreeDeployLeavesNothingImmutable runs the ostree stages on a tiny
// bootable commit: the deployment they leave in the tree (which becomes a
// stage cache object under cache/) must be removable with a plain
// os.RemoveAll, as rm -rf of a workdir is.
func TestOSTreeDeployLeavesNothingImmutable(t *testing.T) {
	needRootTools(t, "ostree")
	ctx := context.Background()
	base := t.TempDir()
	// The deployment must not outlive the test if the stage regresses.
	t.Cleanup(func() { fsattr.ClearTree(base) })

	src := filepath.Join(base, "src")
	testutil.WriteTree(t, src, map[string]string{
		"usr/lib/modules/6.1.0/vmlinuz":       "kernel",
		"usr/lib/modules/6.1.0/initramfs.img": "initramfs",
		"usr/etc/hostname":                    "test\n",
		"usr/etc/os-release":                  "ID=test\n",
	})
	repo := filepath.Join(base, "repo")
	mustRun(t, "ostree", "init", "--repo="+repo, "--mode=bare")
	commit := strings.TrimSpace(mustRun(t, "ostree", "commit", "--repo="+repo, "--branch=test/x", "--tree=dir="+src))

	tree := filepath.Join(base, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &Env{Tree: tree, Sources: Sources{OSTreeRepo: repo}, Scratch: t.TempDir(), Log: io.Discard}
	for _, st := range []StageImpl{
		&OSTreeInitFS{},
		&OSTreeOSInit{OSName: "os"},
		&OSTreePullLocal{Commit: commit, Ref: "test/x"},
		&OSTreeDeploy{OSName: "os", Ref: "test/x", KernelArgs: []string{"quiet"}},
	} {
		if err := st.Run(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	deploy := filepath.Join(tree, "ostree", "deploy", "os", "deploy", commit+".0")
	if imm, err := fsattr.IsImmutable(deploy); err != nil || imm {
		t.Errorf("deployment %s: immutable %v, %v; want a plain directory", deploy, imm, err)
	}
	if err := os.RemoveAll(tree); err != nil {
		t.Errorf("the deployed tree cannot be removed: %v", err)
	}
}

// TestMkfsDropsImmutable pins what the disk image stages rely on: mkfs.ext4
// -d does not carry inode flags into the filesystem it makes, so clearing
// the flag in the tree (above) leaves the image as it was, and an
// immutable flag in a cached tree never reached an image either.
func TestMkfsDropsImmutable(t *testing.T) {
	needRootTools(t, "mkfs.ext4", "debugfs")
	base := t.TempDir()
	t.Cleanup(func() { fsattr.ClearTree(base) })
	src := filepath.Join(base, "src")
	dir := filepath.Join(src, "d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		t.Skipf("chattr +i: %v: %s", err, out)
	}
	if imm, _ := fsattr.IsImmutable(dir); !imm {
		t.Skip("this filesystem keeps no immutable flag")
	}
	img := filepath.Join(base, "img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "mkfs.ext4", "-q", "-d", src, img)
	out := mustRun(t, "debugfs", "-R", "stat /d", img)
	i := strings.Index(out, "Flags: ")
	if i < 0 {
		t.Fatalf("no Flags in debugfs output:\n%s", out)
	}
	var flags uint32
	if _, err := fmt.Sscanf(strings.Fields(out[i+len("Flags: "):])[0], "0x%x", &flags); err != nil {
		t.Fatal(err)
	}
	if flags&0x10 != 0 { // EXT2_IMMUTABLE_FL
		t.Errorf("mkfs.ext4 -d kept the immutable flag (flags %#x): images would carry it", flags)
	}
}
