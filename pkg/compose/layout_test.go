package compose

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRoot makes the smallest tree ToOstreeLayout accepts: one kernel with
// its initramfs, /etc, /var and the top-level directories.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"usr/lib/modules/6.1.0-test", "boot", "etc", "var/lib/dpkg", "tmp", "dev", "proc", "sys", "run", "home", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for f, data := range map[string]string{
		"boot/vmlinuz-6.1.0-test":                  "kernel",
		"usr/lib/modules/6.1.0-test/initramfs.img": "initrd",
		"etc/machine-id":                           "0123456789abcdef\n",
		"etc/hostname":                             "x\n",
		"var/lib/dpkg/status":                      "",
	} {
		if err := os.WriteFile(filepath.Join(root, f), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// canaries are host files outside the tree that a hostile tree points at.
type canaries struct {
	dir, file string
	dirData   []byte
}

func newCanaries(t *testing.T) *canaries {
	t.Helper()
	base := t.TempDir()
	c := &canaries{dir: filepath.Join(base, "etc"), file: filepath.Join(base, "shadow")}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.file, []byte("root:secret:1:0:99999:7:::\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *canaries) check(t *testing.T) {
	t.Helper()
	if fi, err := os.Stat(c.dir); err != nil || fi.Mode().Perm() != 0o755 || fi.Mode()&os.ModeSticky != 0 {
		t.Errorf("canary dir %s: %v, %v (want 0755, no sticky bit)", c.dir, fi.Mode(), err)
	}
	if data, err := os.ReadFile(filepath.Join(c.dir, "passwd")); err != nil || !strings.HasPrefix(string(data), "root:x:0:0") {
		t.Errorf("canary dir content: %q, %v", data, err)
	}
	if fi, err := os.Stat(c.file); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("canary file %s: %v, %v (want 0640)", c.file, fi.Mode(), err)
	}
	if data, err := os.ReadFile(c.file); err != nil || !bytes.Equal(data, []byte("root:secret:1:0:99999:7:::\n")) {
		t.Errorf("canary file content: %q, %v", data, err)
	}
}

func TestToOstreeLayout(t *testing.T) {
	root := fakeRoot(t)
	if err := ToOstreeLayout(root); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		"usr/lib/modules/6.1.0-test/vmlinuz":       0o644,
		"usr/lib/modules/6.1.0-test/initramfs.img": 0o644,
		"usr/etc/machine-id":                       0o644,
	} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want a %v file", p, fi, err, want)
		}
	}
	if fi, err := os.Lstat(filepath.Join(root, "tmp")); err != nil || !fi.IsDir() || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("tmp: %v %v", fi, err)
	}
	if data, _ := os.ReadFile(filepath.Join(root, "usr/etc/machine-id")); len(data) != 0 {
		t.Errorf("machine-id not emptied: %q", data)
	}
	if l, _ := os.Readlink(filepath.Join(root, "home")); l != "var/home" {
		t.Errorf("home -> %q", l)
	}
	if _, err := os.Stat(filepath.Join(root, factoryVar, "lib/dpkg/status")); err != nil {
		t.Error(err)
	}
	conf, _ := os.ReadFile(filepath.Join(root, "usr/lib/tmpfiles.d/cosa-var.conf"))
	if !strings.Contains(string(conf), "C /var/lib/dpkg - - - - /usr/share/factory/var/lib/dpkg") {
		t.Errorf("tmpfiles: %s", conf)
	}
}

// A tree whose /tmp and /dev point at a host directory and whose
// machine-id and sources.list point at a host file: the layout replaces
// the links, and the host files keep their bytes and modes.
func TestToOstreeLayoutSymlinksStayInside(t *testing.T) {
	root := fakeRoot(t)
	c := newCanaries(t)
	for name, target := range map[string]string{"tmp": c.dir, "dev": c.dir, "etc/machine-id": c.file, "boot/vmlinuz.old": c.file} {
		p := filepath.Join(root, name)
		os.RemoveAll(p)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(c.file, filepath.Join(root, "initrd.img")); err != nil {
		t.Fatal(err)
	}
	err := ToOstreeLayout(root)
	c.check(t)
	if err != nil {
		t.Fatalf("layout refused a tree it can fix in place: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(root, "tmp")); err != nil || !fi.IsDir() {
		t.Errorf("tmp is still not a directory: %v %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(root, "usr/etc/machine-id")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("machine-id is not a regular file: %v %v", fi, err)
	}
}

// Links that the layout cannot replace (the kernel, /etc, /var, a
// directory on the way) make it fail with an error naming the path,
// still without touching the host.
func TestToOstreeLayoutRefusesEscapes(t *testing.T) {
	for _, tc := range []struct{ name, link, want string }{
		{"initramfs", "usr/lib/modules/6.1.0-test/initramfs.img", "initramfs.img is not a regular file"},
		{"etc", "etc", "/etc must be a directory"},
		{"var", "var", "/var must be a directory"},
		{"lib dir", "usr/lib", "leads out of the tree"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t)
			c := newCanaries(t)
			target := c.file
			if tc.link == "etc" || tc.link == "var" || tc.link == "usr/lib" {
				target = c.dir
			}
			p := filepath.Join(root, tc.link)
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			err := ToOstreeLayout(root)
			c.check(t)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestPointAptAtArchiveStaysInside(t *testing.T) {
	root := fakeRoot(t)
	c := newCanaries(t)
	if err := os.MkdirAll(filepath.Join(root, "etc/apt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(c.file, filepath.Join(root, "etc/apt/sources.list")); err != nil {
		t.Fatal(err)
	}
	if err := pointAptAtArchive(root, "deb http://archive.invalid/debian bookworm main\n"); err != nil {
		t.Fatal(err)
	}
	c.check(t)
	// A symlinked etc/apt: refused, host untouched.
	os.RemoveAll(filepath.Join(root, "etc/apt"))
	if err := os.Symlink(c.dir, filepath.Join(root, "etc/apt")); err != nil {
		t.Fatal(err)
	}
	if err := pointAptAtArchive(root, "x\n"); err == nil || !strings.Contains(err.Error(), "leads out of the tree") {
		t.Errorf("symlinked etc/apt: err = %v", err)
	}
	c.check(t)
	if _, err := os.Stat(filepath.Join(c.dir, "sources.list")); err == nil {
		t.Error("sources.list was written into the host directory")
	}
}
