package images

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// The pull-local stage ends ostree's options with "--" before its
// positional arguments, so none of them is ever read as an option. A
// source repo whose (relative) path starts with "-" shows it.
func TestPullLocalPositionalArgsAfterDashDash(t *testing.T) {
	if _, err := exec.LookPath("ostree"); err != nil {
		t.Skip("ostree CLI not installed")
	}
	ctx := context.Background()
	base := t.TempDir()
	t.Chdir(base)
	os.MkdirAll("src/etc", 0o755)
	os.WriteFile("src/etc/hostname", []byte("x\n"), 0o644)
	mustRun(t, "ostree", "init", "--repo=-repo", "--mode=archive")
	commit := strings.TrimSpace(mustRun(t, "ostree", "commit", "--repo=-repo", "--branch=test/x", "--tree=dir=src"))

	tree := filepath.Join(base, "tree")
	os.Mkdir(tree, 0o755)
	e := &Env{Tree: tree, Sources: Sources{OSTreeRepo: "-repo"}, Scratch: t.TempDir(), Log: io.Discard}
	for _, st := range []StageImpl{&OSTreeInitFS{}, &OSTreePullLocal{Commit: commit, Ref: "test/x"}} {
		if err := st.Run(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.TrimSpace(mustRun(t, "ostree", "rev-parse", "--repo="+filepath.Join(tree, "ostree/repo"), "test/x"))
	if got != commit {
		t.Errorf("test/x in the sysroot is %q, want %s", got, commit)
	}
}

// With an earlier image tree to reuse, pull-local links the objects that
// tree's repo holds and copies the rest: the sysroot repo is the one a
// plain pull makes (same objects, each with the same owner, mode, size,
// content and, for regular files, mtime), the unchanged objects share the
// earlier tree's inodes, and the changed one does not.
func TestPullLocalReusesEarlierObjects(t *testing.T) {
	if _, err := exec.LookPath("ostree"); err != nil {
		t.Skip("ostree CLI not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("a bare repo needs root")
	}
	ctx := context.Background()
	base := t.TempDir()
	src := filepath.Join(base, "src")
	mustRun(t, "ostree", "init", "--repo="+src, "--mode=bare-user")
	tree := filepath.Join(base, "t")
	os.MkdirAll(filepath.Join(tree, "usr/bin"), 0o755)
	for i := 0; i < 20; i++ {
		os.WriteFile(filepath.Join(tree, "usr/bin", fmt.Sprintf("tool%d", i)), []byte(strings.Repeat(fmt.Sprint(i), 1000)), 0o755)
	}
	os.Symlink("tool1", filepath.Join(tree, "usr/bin/link"))
	os.WriteFile(filepath.Join(tree, "usr/bin/changed"), []byte("one\n"), 0o644)
	commit1 := strings.TrimSpace(mustRun(t, "ostree", "commit", "--repo="+src, "--orphan", "--tree=dir="+tree))
	os.WriteFile(filepath.Join(tree, "usr/bin/changed"), []byte("two\n"), 0o644)
	commit2 := strings.TrimSpace(mustRun(t, "ostree", "commit", "--repo="+src, "--orphan", "--tree=dir="+tree))

	var log strings.Builder
	pull := func(name, commit string, reuse []string) string {
		t.Helper()
		dir := filepath.Join(base, name)
		os.Mkdir(dir, 0o755)
		e := &Env{Tree: dir, Sources: Sources{OSTreeRepo: src}, Scratch: t.TempDir(), Log: &log, Reuse: reuse}
		for _, st := range []StageImpl{&OSTreeInitFS{}, &OSTreePullLocal{Commit: commit, Ref: "test/x"}} {
			if err := st.Run(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		mustRun(t, "ostree", "fsck", "--repo="+filepath.Join(dir, "ostree/repo"))
		return filepath.Join(dir, "ostree/repo")
	}
	earlier := pull("earlier", commit1, nil)
	plain := pull("plain", commit2, nil)
	log.Reset()
	reused := pull("reused", commit2, []string{filepath.Join(base, "earlier"), filepath.Join(base, "nothing-here")})
	if !strings.Contains(log.String(), "reused 21 of 22 content objects") {
		t.Errorf("log: %s", log.String())
	}
	type obj struct {
		mode        os.FileMode
		uid, gid    uint32
		size, mtime int64
		content     string
	}
	objects := func(repo string) map[string]obj {
		m := map[string]obj{}
		filepath.WalkDir(filepath.Join(repo, "objects"), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			info, _ := os.Lstat(p)
			st := info.Sys().(*syscall.Stat_t)
			var c []byte
			if info.Mode().IsRegular() {
				c, _ = os.ReadFile(p)
			} else {
				s, _ := os.Readlink(p)
				c = []byte(s)
			}
			rel, _ := filepath.Rel(repo, p)
			mtime := info.ModTime().Unix()
			if !strings.HasSuffix(rel, ".file") || !info.Mode().IsRegular() {
				// ostree gives regular file objects a fixed mtime, but
				// writes metadata objects and symlinks with the time of
				// the pull (mtime is not part of an object's checksum),
				// and two pulls can fall in different seconds.
				mtime = 0
			}
			m[rel] = obj{info.Mode(), st.Uid, st.Gid, info.Size(), mtime, string(c)}
			return nil
		})
		return m
	}
	p, r := objects(plain), objects(reused)
	for name, po := range p {
		ro, ok := r[name]
		switch {
		case !ok:
			t.Errorf("%s: in the plain pull only", name)
		case !reflect.DeepEqual(po, ro):
			t.Errorf("%s differs: plain mode %v uid %d gid %d size %d mtime %d, reused mode %v uid %d gid %d size %d mtime %d, content equal %v",
				name, po.mode, po.uid, po.gid, po.size, po.mtime, ro.mode, ro.uid, ro.gid, ro.size, ro.mtime, po.content == ro.content)
		}
	}
	for name := range r {
		if _, ok := p[name]; !ok {
			t.Errorf("%s: in the reusing pull only", name)
		}
	}
	ino := func(p string) uint64 {
		info, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return info.Sys().(*syscall.Stat_t).Ino
	}
	csum := func(commit, path string) string {
		f := strings.Fields(mustRun(t, "ostree", "ls", "--repo="+src, "-C", "--", commit, path))
		return filepath.Join("objects", f[4][:2], f[4][2:]+".file")
	}
	if o := csum(commit2, "/usr/bin/tool3"); ino(filepath.Join(earlier, o)) != ino(filepath.Join(reused, o)) {
		t.Error("an unchanged object was copied, not linked")
	}
	if o := csum(commit2, "/usr/bin/changed"); ino(filepath.Join(plain, o)) == ino(filepath.Join(reused, o)) {
		t.Error("the changed object is shared with another pull")
	}
}

// CmdNoSync runs the tool with libeatmydata preloaded when it is installed
// (make deps installs it), and as Cmd would when it is not.
func TestCmdNoSyncPreloadsEatmydata(t *testing.T) {
	var log strings.Builder
	e := &Env{Log: &log}
	err := e.CmdNoSync(context.Background(), "sh", "-c", `case "$LD_PRELOAD" in *libeatmydata*) exit 0;; *) exit 3;; esac`)
	if eatmydataLib() == "" {
		if err == nil {
			t.Errorf("libeatmydata is not installed, yet LD_PRELOAD named it")
		}
		t.Skip("libeatmydata is not installed (make deps installs eatmydata)")
	}
	if err != nil {
		t.Errorf("LD_PRELOAD did not name libeatmydata: %v\n%s", err, log.String())
	}
}
