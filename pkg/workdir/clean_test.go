package workdir

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cosa-build/cosa/pkg/fsattr"
)

// cleanFixture is a workdir with something in every place Clean looks,
// plus symlinks from cache/ and tmp/ to a canary directory outside it.
func cleanFixture(t *testing.T) (w *Workdir, canary string) {
	t.Helper()
	w, err := Init(context.Background(), filepath.Join(t.TempDir(), "w"), InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	canary = t.TempDir()
	write(t, filepath.Join(canary, "precious"), "keep me")
	for name, content := range map[string]string{
		"cache/apt/lists/x_Packages":             "apt",
		"cache/debs/a_1_amd64.deb":               "deb",
		"cache/manifest-lock.x86_64.json":        "{}",
		"cache/objects/.lock":                    "",
		"cache/objects/0123/disk.raw":            "disk",
		"cache/rootfs/abc/usr/bin/sh":            "sh",
		"tmp/repo/config":                        "[core]",
		"tmp/logs/build.log":                     "log",
		"builds/.lock":                           "",
		"builds/builds.json":                     `{"builds": []}`,
		"builds/1.0/x86_64/meta.json":            "{}",
		"src/config/manifest.yaml.orig":          "kept",
		"cache/objects/0123/nested/deep/f.txt":   "x",
		"tmp/build-1.0-abcd/rootfs/etc/hostname": "h",
	} {
		write(t, filepath.Join(w.Root, filepath.FromSlash(name)), content)
	}
	for _, l := range []string{"cache/out", "tmp/out", "cache/objects/0123/out", "builds/out"} {
		if err := os.Symlink(canary, filepath.Join(w.Root, l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("1.0", filepath.Join(w.Root, "builds", "latest")); err != nil {
		t.Fatal(err)
	}
	return w, canary
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tree lists every entry under dir, slash-separated, sorted.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			r, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(r))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantTree(t *testing.T, dir string, want ...string) {
	t.Helper()
	if got := tree(t, dir); !slices.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

func wantCanary(t *testing.T, canary string) {
	t.Helper()
	if data, err := os.ReadFile(filepath.Join(canary, "precious")); err != nil || string(data) != "keep me" {
		t.Errorf("the canary outside the workdir was touched: %q, %v", data, err)
	}
}

func TestClean(t *testing.T) {
	w, canary := cleanFixture(t)
	configBefore := tree(t, w.ConfigDir())
	buildsBefore := tree(t, w.BuildsDir())
	done, err := w.Clean(CleanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(done, []string{"cache/", "tmp/"}) {
		t.Errorf("cleaned %v", done)
	}
	// The stage cache's lock stays: a pipeline waiting on it must find
	// the same file as the next one.
	wantTree(t, w.CacheDir(), "objects", "objects/.lock")
	wantTree(t, w.TmpDir())
	wantTree(t, w.BuildsDir(), buildsBefore...)
	wantTree(t, w.ConfigDir(), configBefore...)
	wantCanary(t, canary)
}

func TestCleanAll(t *testing.T) {
	w, canary := cleanFixture(t)
	configBefore := tree(t, w.ConfigDir())
	done, err := w.Clean(CleanOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(done, []string{"cache/", "tmp/", "builds/"}) {
		t.Errorf("cleaned %v", done)
	}
	wantTree(t, w.CacheDir(), "objects", "objects/.lock")
	wantTree(t, w.TmpDir())
	wantTree(t, w.BuildsDir(), ".lock")
	wantTree(t, w.ConfigDir(), configBefore...)
	wantCanary(t, canary)
}

func TestCleanKeepPackages(t *testing.T) {
	w, canary := cleanFixture(t)
	if _, err := w.Clean(CleanOptions{KeepPackages: true}); err != nil {
		t.Fatal(err)
	}
	wantTree(t, w.CacheDir(), "apt", "apt/lists", "apt/lists/x_Packages", "debs", "debs/a_1_amd64.deb",
		"manifest-lock.x86_64.json", "objects", "objects/.lock")
	wantTree(t, w.TmpDir())
	wantCanary(t, canary)
}

// A cache/ (or tmp/, builds/) that is itself a symlink is refused before
// anything is removed: emptying it would empty a directory elsewhere.
func TestCleanRefusesSymlinkedDir(t *testing.T) {
	for _, d := range []string{"cache", "tmp", "builds"} {
		t.Run(d, func(t *testing.T) {
			w, canary := cleanFixture(t)
			p := filepath.Join(w.Root, d)
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(canary, p); err != nil {
				t.Fatal(err)
			}
			before := tree(t, w.Root)
			_, err := w.Clean(CleanOptions{All: true})
			if err == nil || !strings.Contains(err.Error(), p+" is a symlink (to "+canary+")") {
				t.Fatalf("err = %v, want a refusal naming %s", err, p)
			}
			if after := tree(t, w.Root); !slices.Equal(after, before) {
				t.Errorf("a refused clean changed the workdir:\n%q\n%q", before, after)
			}
			wantCanary(t, canary)
		})
	}
}

// While an image pipeline holds the stage cache, clean refuses rather
// than delete objects under it.
func TestCleanStoreBusy(t *testing.T) {
	w, _ := cleanFixture(t)
	f, err := os.Open(filepath.Join(w.ObjectsDir(), ".lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	before := tree(t, w.Root)
	if _, err := w.Clean(CleanOptions{}); err == nil || !strings.Contains(err.Error(), "in use by a running image pipeline") {
		t.Fatalf("err = %v", err)
	}
	if after := tree(t, w.Root); !slices.Equal(after, before) {
		t.Error("a refused clean removed something")
	}
}

// A workdir made before the deploy stage cleared ostree's immutable flag
// holds immutable deployments in cache/objects; clean removes them, and
// does not clear the flag on anything a symlink points at.
func TestCleanImmutable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can set the immutable flag")
	}
	if _, err := exec.LookPath("chattr"); err != nil {
		t.Skip("chattr not installed")
	}
	w, canary := cleanFixture(t)
	deploy := filepath.Join(w.ObjectsDir(), "4567", "tree", "ostree", "deploy", "os", "deploy", "abc.0")
	write(t, filepath.Join(deploy, "etc", "hostname"), "h")
	outside := filepath.Join(canary, "immutable")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(deploy, "etc", "out")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{deploy, outside} {
		if out, err := exec.Command("chattr", "+i", p).CombinedOutput(); err != nil {
			t.Skipf("chattr +i: %v: %s", err, out)
		}
		t.Cleanup(func() { fsattr.Clear(p) })
	}
	if imm, _ := fsattr.IsImmutable(deploy); !imm {
		t.Skip("this filesystem keeps no immutable flag")
	}
	if err := os.RemoveAll(filepath.Join(w.ObjectsDir(), "4567")); err == nil {
		t.Fatal("an immutable deployment was removable; the test proves nothing")
	}
	if _, err := w.Clean(CleanOptions{}); err != nil {
		t.Fatal(err)
	}
	wantTree(t, w.CacheDir(), "objects", "objects/.lock")
	if imm, err := fsattr.IsImmutable(outside); err != nil || !imm {
		t.Errorf("clean cleared the flag of %s outside the workdir (%v, %v)", outside, imm, err)
	}
	wantCanary(t, canary)
}

// Something mounted in the workdir (a bind mount left by a killed build)
// is refused before anything is removed: os.RemoveAll would empty the
// mounted filesystem too.
func TestCleanRefusesMounts(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	w, _ := cleanFixture(t)
	mp := filepath.Join(w.TmpDir(), "build-x", "rootfs", "dev")
	if err := os.MkdirAll(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mp, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mp, syscall.MNT_DETACH) })
	write(t, filepath.Join(mp, "host-file"), "must survive")
	before := tree(t, w.Root)
	_, err := w.Clean(CleanOptions{All: true})
	if err == nil || !strings.Contains(err.Error(), "not cleaning: "+mp+" is mounted") {
		t.Fatalf("err = %v, want a refusal naming %s", err, mp)
	}
	if after := tree(t, w.Root); !slices.Equal(after, before) {
		t.Errorf("a refused clean changed the workdir:\n%q\n%q", before, after)
	}
}
