package images

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The root file system's /boot must be empty (the boot partition holds
// it). Instead of a hard-link copy of the whole tree, mkfs reads a view
// of it: the other top-level directories bind-mounted in a mount
// namespace of mkfs's own. Everything mkfs sees must be the tree, minus
// /boot's content; the tree itself must be left as it was.
func TestMkfsView(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (bind mounts)")
	}
	src := t.TempDir()
	for _, d := range []string{"boot/loader/entries", "ostree/repo/objects/ab", "ostree/deploy/os/var", "sysroot"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
	}
	os.WriteFile(filepath.Join(src, "boot/loader/entries/a.conf"), []byte("title a\n"), 0o644)
	os.WriteFile(filepath.Join(src, "boot/vmlinuz"), []byte("kernel"), 0o644)
	os.WriteFile(filepath.Join(src, "ostree/repo/objects/ab/cd.file"), []byte("object"), 0o644)
	os.Symlink("../../repo", filepath.Join(src, "ostree/deploy/os/repo-link"))
	os.WriteFile(filepath.Join(src, "top-file"), []byte("top"), 0o600)
	os.Symlink("sysroot/ostree", filepath.Join(src, "top-link"))
	os.Chmod(filepath.Join(src, "boot"), 0o700)
	os.Chown(filepath.Join(src, "ostree"), 12, 34)

	list := func(cmd ...string) []string {
		out, err := exec.Command(cmd[0], cmd[1:]...).Output()
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		sort.Strings(lines)
		return lines
	}
	// What mkfs -d reads: names, types, modes, owners and contents.
	walk := func(dir string) []string {
		return list("sh", "-c", `cd "$1" && find . -mindepth 1 -printf '%P %y %m %U:%G %l\n' -type f -exec md5sum {} +`, "sh", dir)
	}
	before := walk(src)
	var want []string
	for _, l := range before {
		if !strings.HasPrefix(l, "boot/") && !strings.Contains(l, "./boot/") {
			want = append(want, l)
		}
	}

	var log bytes.Buffer
	e := &Env{Scratch: t.TempDir(), Log: &log}
	staged := filepath.Join(e.Scratch, "fs")
	seen := filepath.Join(t.TempDir(), "seen")
	argv := []string{"sh", "-c", `cd "$1" && find . -mindepth 1 -printf '%P %y %m %U:%G %l\n' -type f -exec md5sum {} + > "$2"`, "sh", staged, seen}
	if err := e.mkfsView(context.Background(), src, staged, []string{"boot"}, argv); err != nil {
		t.Fatalf("mkfsView: %v\n%s", err, log.String())
	}
	data, _ := os.ReadFile(seen)
	got := strings.Split(strings.TrimSpace(string(data)), "\n")
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the view:\n%s\nwant the tree without /boot's content:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The view's own directories: its root and /boot as the tree has them.
	for _, p := range []string{"", "boot"} {
		a, _ := os.Stat(filepath.Join(src, p))
		b, err := os.Stat(filepath.Join(staged, p))
		if err != nil || a.Mode() != b.Mode() || !a.ModTime().Equal(b.ModTime()) {
			t.Errorf("/%s in the view: %v %v, the tree's %v %v", p, b.Mode(), err, a.Mode(), a.ModTime())
		}
	}
	// The mounts ended with the command; the tree is as it was.
	if ents, _ := os.ReadDir(filepath.Join(staged, "ostree")); len(ents) != 0 {
		t.Errorf("the bind mount outlived the command: %v", ents)
	}
	if after := walk(src); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("the tree changed:\n%s", strings.Join(after, "\n"))
	}

	// A path below the top level, or a special file at the top: no view,
	// and nothing run.
	os.MkdirAll(filepath.Join(e.Scratch, "x"), 0o755)
	if err := e.mkfsView(context.Background(), src, filepath.Join(e.Scratch, "x", "fs"), []string{"ostree/deploy"}, []string{"false"}); err != errNoView {
		t.Errorf("nested empty path: %v, want errNoView", err)
	}
}
