package fileutil

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// treeState describes every entry of a tree: type, mode, owner, size,
// content, link target, mtime, xattrs, and which entries share an inode.
func treeState(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %o %d:%d mtime=%d", rel, st.Mode, st.Uid, st.Gid, st.Mtim.Nano())
		switch {
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(data))
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					line += " link-of=" + first
				} else {
					inodes[st.Ino] = rel
				}
			}
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		}
		names, err := ListXattrs(p)
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, n := range names {
			v, err := GetXattr(p, n)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %s=%q", n, v)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// makeTree makes a tree with what a composed root has: nested
// directories of uneven weight, modes with set-id and sticky bits, other
// owners, symlinks (one pointing out of the tree), a fifo, hard links,
// an xattr on a directory and old times on everything.
func makeTree(t *testing.T, root string, crossLink bool) {
	t.Helper()
	write := func(rel string, size int) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.Repeat(rel, size/len(rel)+1)[:size]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 40; i++ {
		write(fmt.Sprintf("usr/lib/modules/k/drivers/d%02d/m%02d.ko", i%7, i), 200_000)
		write(fmt.Sprintf("usr/share/doc/p%02d/copyright", i), 500)
		write(fmt.Sprintf("etc/conf%02d", i), 100)
	}
	write("usr/bin/perl", 3000)
	if err := os.Link(filepath.Join(root, "usr/bin/perl"), filepath.Join(root, "usr/bin/perl5")); err != nil {
		t.Fatal(err)
	}
	if crossLink {
		if err := os.Link(filepath.Join(root, "usr/bin/perl"), filepath.Join(root, "usr/lib/modules/k/perl-too")); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range [][2]string{{"usr/bin", "bin"}, {"/etc/passwd", "usr/lib/escape"}, {"../../etc/conf01", "usr/share/rel"}} {
		if err := os.Symlink(l[0], filepath.Join(root, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(root, "usr/lib/fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "tmp"), 0o755))
	must(os.Chmod(filepath.Join(root, "tmp"), 0o1777))
	must(os.Chmod(filepath.Join(root, "usr/lib"), 0o2750))
	must(os.Chmod(filepath.Join(root, "usr"), 0o711))
	if os.Geteuid() == 0 {
		must(os.Lchown(filepath.Join(root, "usr/lib"), 0, 50))
		must(os.Lchown(filepath.Join(root, "usr/lib/modules"), 1234, 5678))
		must(os.Lchown(filepath.Join(root, "usr/lib/escape"), 42, 43))
	}
	// user.* xattrs need a file system that has them (tmpfs, ext4).
	if err := unix.Lsetxattr(filepath.Join(root, "usr/lib/modules"), "user.cosa", []byte("kept"), 0); err != nil {
		t.Logf("no user xattrs here: %v", err)
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
	must(filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		ts := []unix.Timespec{unix.NsecToTimespec(old.UnixNano()), unix.NsecToTimespec(old.UnixNano())}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	}))
}

func TestCopyTreeSplitMatchesCp(t *testing.T) {
	old := splitMinEntries
	splitMinEntries = 1
	defer func() { splitMinEntries = old }()
	for _, cross := range []bool{false, true} {
		t.Run(fmt.Sprintf("crossLink=%v", cross), func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "src")
			makeTree(t, src, cross)
			plan, err := planCopy(src, 3)
			if err != nil {
				t.Fatal(err)
			}
			if cross {
				if plan != nil {
					t.Fatalf("a hard link across parts must make one cp copy the tree, got plan %+v", plan)
				}
			} else {
				if plan == nil || len(plan.dirs) == 0 {
					t.Fatalf("the tree was not split: %+v", plan)
				}
				busy := 0
				for _, p := range plan.parts {
					if len(p) > 0 {
						busy++
					}
				}
				if busy < 2 {
					t.Fatalf("only %d of 3 parts have work: %+v", busy, plan.parts)
				}
			}
			ref := filepath.Join(dir, "ref")
			if out, err := exec.Command("cp", "-a", "--no-target-directory", src, ref).CombinedOutput(); err != nil {
				t.Fatalf("cp -a: %v\n%s", err, out)
			}
			dst := filepath.Join(dir, "dst")
			if err := CopyTree(context.Background(), src, dst, "--reflink=auto"); err != nil {
				t.Fatal(err)
			}
			want, got := treeState(t, ref), treeState(t, dst)
			if want != got {
				t.Fatalf("CopyTree differs from cp -a:\n--- cp -a\n%s\n--- CopyTree\n%s", want, got)
			}
			if s := treeState(t, src); s != want {
				t.Fatalf("cp -a copy differs from the source (the comparison is blind?):\n%s\n---\n%s", s, want)
			}
		})
	}
}

func TestCopyTreeRefusesExistingAndNonDir(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, false)
	old := splitMinEntries
	splitMinEntries = 1
	defer func() { splitMinEntries = old }()
	dst := filepath.Join(dir, "dst")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := CopyTree(context.Background(), src, dst); err == nil {
		t.Fatal("copying onto an existing directory succeeded")
	}
	if err := CopyTree(context.Background(), filepath.Join(src, "etc/conf01"), filepath.Join(dir, "x")); err == nil {
		t.Fatal("copying a file as a tree succeeded")
	}
}
