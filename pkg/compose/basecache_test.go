package compose

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cosa-build/cosa/pkg/config"
)

func testManifest() *config.Manifest {
	m := &config.Manifest{Packages: []string{"systemd", "ostree"}}
	m.Distro.Variant = "minbase"
	return m
}

func TestBaseKeyChangesWithWhatMmdebstrapSees(t *testing.T) {
	lock := &Lockfile{Suite: "bookworm", Arch: "amd64", Packages: map[string]LockedPackage{
		"systemd": {Version: "252.1", Sha256: "aa"}, "ostree": {Version: "2022.7", Sha256: "bb"}}}
	base := BaseKey(testManifest(), lock)
	if base != BaseKey(testManifest(), lock) {
		t.Fatal("BaseKey is not stable")
	}
	changes := map[string]func(m *config.Manifest, l *Lockfile){
		"package list": func(m *config.Manifest, l *Lockfile) { m.Packages = append(m.Packages, "vim") },
		"excluded":     func(m *config.Manifest, l *Lockfile) { m.ExcludePackages = []string{"ostree"} },
		"variant":      func(m *config.Manifest, l *Lockfile) { m.Distro.Variant = "apt" },
		"suite":        func(m *config.Manifest, l *Lockfile) { l.Suite = "trixie" },
		"locked version": func(m *config.Manifest, l *Lockfile) {
			l.Packages["systemd"] = LockedPackage{Version: "252.2", Sha256: "aa"}
		},
		"locked checksum": func(m *config.Manifest, l *Lockfile) {
			l.Packages["ostree"] = LockedPackage{Version: "2022.7", Sha256: "cc"}
		},
		"index": func(m *config.Manifest, l *Lockfile) { l.IndexSha256 = "dd" },
	}
	for name, change := range changes {
		m := testManifest()
		l := *lock
		l.Packages = map[string]LockedPackage{}
		for k, v := range lock.Packages {
			l.Packages[k] = v
		}
		change(m, &l)
		if BaseKey(m, &l) == base {
			t.Errorf("changing the %s keeps the base key", name)
		}
	}
	// Things mmdebstrap never sees must not invalidate the base.
	m := testManifest()
	m.KernelArgs = []string{"console=ttyS0"}
	m.Postprocess = []string{"postprocess/x.sh"}
	if BaseKey(m, lock) != base {
		t.Error("kernel args or postprocess scripts changed the base key")
	}
}

func TestBaseCacheRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	root := filepath.Join(dir, "root")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
	must(os.WriteFile(filepath.Join(root, "usr/bin/ping"), []byte("ping"), 0o755))
	must(os.Chmod(filepath.Join(root, "usr/bin/ping"), os.ModeSetuid|0o755))
	must(os.Link(filepath.Join(root, "usr/bin/ping"), filepath.Join(root, "usr/bin/ping6")))
	must(os.Symlink("/etc/shadow", filepath.Join(root, "usr/bin/escape")))
	xattrOK := syscall.Setxattr(filepath.Join(root, "usr/bin/ping"), "user.cosa-test", []byte("cap"), 0) == nil

	// A leftover of a killed copy and an older key must both go.
	must(os.MkdirAll(filepath.Join(BaseCacheDir(cache), ".tmp-old"), 0o755))
	must(os.MkdirAll(filepath.Join(BaseCacheDir(cache), "oldkey"), 0o755))
	if hasBase(cache, "k1") {
		t.Fatal("empty cache has a base")
	}
	inst, err := saveBase(ctx, cache, "k1", root)
	must(err)
	entries, _ := os.ReadDir(BaseCacheDir(cache))
	if len(entries) != 2 || entries[0].Name() != "k1" || entries[1].Name() != "k1"+instanceSuffix {
		t.Fatalf("cache holds %v, want only k1 and its instance token", entries)
	}
	if !strings.HasPrefix(inst, "k1/") {
		t.Fatalf("instance %q does not name key k1", inst)
	}
	// The build goes on changing its root; the cache must not see it.
	must(os.WriteFile(filepath.Join(root, "usr/bin/ping"), []byte("changed"), 0o4755))

	out := filepath.Join(dir, "restored")
	if !hasBase(cache, "k1") {
		t.Fatal("saved base not found")
	}
	got, err := restoreBase(ctx, cache, "k1", out)
	must(err)
	if got != inst {
		t.Errorf("restored instance %q, saved %q", got, inst)
	}
	data, err := os.ReadFile(filepath.Join(out, "usr/bin/ping"))
	must(err)
	if string(data) != "ping" {
		t.Errorf("restored ping holds %q: the cache shares data with the build root", data)
	}
	a, _ := os.Stat(filepath.Join(out, "usr/bin/ping"))
	b, _ := os.Stat(filepath.Join(out, "usr/bin/ping6"))
	if !os.SameFile(a, b) {
		t.Error("hard link not kept")
	}
	if a.Mode()&os.ModeSetuid == 0 {
		t.Errorf("setuid bit lost: %v", a.Mode())
	}
	if l, err := os.Readlink(filepath.Join(out, "usr/bin/escape")); err != nil || l != "/etc/shadow" {
		t.Errorf("symlink: %q %v (must be copied as a link, never followed)", l, err)
	}
	if xattrOK {
		buf := make([]byte, 16)
		n, err := syscall.Getxattr(filepath.Join(out, "usr/bin/ping"), "user.cosa-test", buf)
		if err != nil || string(buf[:n]) != "cap" {
			t.Errorf("xattr not kept: %q %v", buf[:n], err)
		}
	}
	// Saving the same key again is a no-op; restoring into an existing dir fails cleanly.
	// That tree is not root (mmdebstrap ran again), so no instance.
	if again, err := saveBase(ctx, cache, "k1", root); err != nil || again != "" {
		t.Errorf("saving an existing key: instance %q, %v; want none", again, err)
	}
	if _, err := restoreBase(ctx, cache, "k1", filepath.Join(dir, "root")); err == nil {
		t.Error("restore over an existing directory succeeded")
	}
}
