package ostree

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// archiveTree makes a tree with what a root file system has and an
// export must keep: empty, small and large files, modes, a symlink with a
// long target, an xattr, awkward names, nested directories of other modes.
func archiveTree(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "tree")
	big := make([]byte, 3<<20)
	rand.Read(big[:1<<20]) // part incompressible, part not
	files := map[string][]byte{
		"usr/bin/tool":                 []byte("#!/bin/sh\necho hi\n"),
		"usr/share/empty":              nil,
		"usr/share/big":                big,
		"usr/share/name with\nnewline": []byte("x"),
		"usr/share/dé/ünïcode":         []byte("y"),
		"etc/secret":                   []byte("z"),
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p, m := range map[string]os.FileMode{"usr/bin/tool": 0o755 | os.ModeSetuid, "etc/secret": 0o600} {
		if err := os.Chmod(filepath.Join(root, p), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "etc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../share/"+strings.Repeat("long/", 60)+"target", filepath.Join(root, "usr/bin/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tool", filepath.Join(root, "usr/bin/short")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(root, "usr/share/dé/ünïcode"), "user.cosa-test", []byte("value"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	return root
}

// The export is an archive repo ostree itself accepts (fsck checks every
// object's checksum, so every header and stream), with the commit on the
// ref; every object matches what `ostree pull-local` into an archive repo
// writes (metadata byte for byte, content headers byte for byte and the
// same content once inflated); a second export reuses the cache and gives
// the same tar; objects of an older commit are pruned from the cache.
func TestWriteArchiveTar(t *testing.T) {
	ctx := context.Background()
	repo, dir := testRepo(t)
	root := archiveTree(t, dir)
	defer func(v int64) { minCached = v }(minCached)
	minCached = 0
	ts := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	old, err := repo.CommitDir(ctx, root, CommitOptions{Subject: "old", Timestamp: ts})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/share/changed"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := repo.CommitDir(ctx, root, CommitOptions{Subject: "new", Timestamp: ts})
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	export := func(commit, name string) (*ArchiveStats, string) {
		t.Helper()
		return exportTo(t, repo, commit, cache, filepath.Join(dir, name))
	}
	s0, _ := export(old.Commit, "old.tar")
	if s0.Compressed == 0 || s0.Reused != 0 {
		t.Errorf("first export: %+v", s0)
	}
	s1, tar1 := export(st.Commit, "one.tar")
	// Only the new file's object is new, and nothing of the old commit
	// but what the new one shares stays cached.
	if s1.Compressed != 1 || s1.Reused != s0.Compressed || s1.Pruned != 0 {
		t.Errorf("second export: %+v (first %+v)", s1, s0)
	}
	s2, tar2 := export(st.Commit, "two.tar")
	if s2.Compressed != 0 || s2.Reused != s1.Compressed+s1.Reused {
		t.Errorf("third export: %+v", s2)
	}
	b1, _ := os.ReadFile(tar1)
	b2, _ := os.ReadFile(tar2)
	if !bytes.Equal(b1, b2) {
		t.Error("two exports of one commit differ")
	}
	// Small objects are not cached: only the big file is reused.
	minCached = 1 << 20
	small := filepath.Join(dir, "cache-small")
	exportTo(t, repo, st.Commit, small, filepath.Join(dir, "s1.tar"))
	s3, tar3 := exportTo(t, repo, st.Commit, small, filepath.Join(dir, "s2.tar"))
	if s3.Reused != 1 || s3.Compressed != s2.Reused-1 {
		t.Errorf("with only the big file cached: %+v", s3)
	}
	if b3, _ := os.ReadFile(tar3); !bytes.Equal(b1, b3) {
		t.Error("the export with fewer objects cached differs")
	}

	un := filepath.Join(dir, "un")
	os.MkdirAll(un, 0o755)
	if out, err := exec.Command("tar", "-xf", tar1, "-C", un).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	if out, err := exec.Command("ostree", "fsck", "--repo="+un).CombinedOutput(); err != nil {
		t.Fatalf("fsck: %v\n%s", err, out)
	}
	unRepo := &Repo{Path: un}
	if got, err := unRepo.RevParse(ctx, "os/x86_64/stable"); err != nil || got != st.Commit {
		t.Errorf("ref = %s, %v; want %s", got, err, st.Commit)
	}
	if m, err := unRepo.mode(); err != nil || m != "archive-z2" {
		t.Errorf("mode = %q, %v", m, err)
	}

	ref, err := Open(ctx, filepath.Join(dir, "ref"), ModeArchive)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.PullLocal(ctx, repo, st.Commit); err != nil {
		t.Fatal(err)
	}
	want := objectFiles(t, ref.Path)
	got := objectFiles(t, un)
	if len(got) != len(want) {
		t.Errorf("%d objects, ostree's pull-local has %d", len(got), len(want))
	}
	xattrSeen := false
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if !strings.HasSuffix(name, ".filez") {
			if !bytes.Equal(g, w) {
				t.Errorf("%s differs from ostree's", name)
			}
			continue
		}
		gh, gd := splitFilez(t, name, g)
		wh, wd := splitFilez(t, name, w)
		if !bytes.Equal(gh, wh) {
			t.Errorf("%s: header %x, ostree's %x", name, gh, wh)
		}
		if bytes.Contains(gh, []byte("user.cosa-test")) {
			xattrSeen = true
		}
		if !bytes.Equal(inflate(t, gd), inflate(t, wd)) {
			t.Errorf("%s: content differs from ostree's", name)
		}
	}
	if !xattrSeen {
		t.Error("no object carried the test xattr: the test does not cover xattrs")
	}
}

func exportTo(t *testing.T, repo *Repo, commit, cache, out string) (*ArchiveStats, string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := repo.WriteArchiveTar(context.Background(), commit, "os/x86_64/stable", cache, f)
	if err != nil {
		t.Fatal(err)
	}
	return s, out
}

func objectFiles(t *testing.T, repo string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	paths, _ := filepath.Glob(filepath.Join(repo, "objects", "*", "*"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m[filepath.Base(filepath.Dir(p))+"/"+filepath.Base(p)] = b
	}
	return m
}

func splitFilez(t *testing.T, name string, b []byte) (hdr, data []byte) {
	t.Helper()
	if len(b) < 8 {
		t.Fatalf("%s: %d bytes", name, len(b))
	}
	n := int(binary.BigEndian.Uint32(b))
	if 8+n > len(b) {
		t.Fatalf("%s: header of %d bytes in %d", name, n, len(b))
	}
	return b[:8+n], b[8+n:]
}

func inflate(t *testing.T, b []byte) []byte {
	t.Helper()
	if len(b) == 0 {
		return nil // a symlink: no stream
	}
	out, err := io.ReadAll(flate.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The dirtree parser reads what `ostree ls` prints, for every directory
// of a commit.
func TestParseDirtreeMatchesOstreeLs(t *testing.T) {
	ctx := context.Background()
	repo, dir := testRepo(t)
	st, err := repo.CommitDir(ctx, archiveTree(t, dir), CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := &walk{repo: repo, meta: map[string]bool{}, content: map[string]bool{}}
	if _, err := w.commit(st.Commit); err != nil {
		t.Fatal(err)
	}
	out, err := repo.run(ctx, "ls", "-R", "-C", "--", st.Commit)
	if err != nil {
		t.Fatal(err)
	}
	files, dirs := 0, 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		switch line[0] {
		case '-', 'l':
			files++
			if !w.content[f[4]] {
				t.Errorf("content %s (%s) not walked", f[4], line)
			}
		case 'd':
			dirs++
			if !w.meta[objectName(f[4], "dirtree")] || !w.meta[objectName(f[5], "dirmeta")] {
				t.Errorf("dir %s not walked", line)
			}
		}
	}
	if files < 8 || dirs < 6 || len(w.content) > files {
		t.Errorf("ls: %d files, %d dirs; walked %d content objects", files, dirs, len(w.content))
	}
}

func TestArchiveHeaderWideOffsets(t *testing.T) {
	// A target long enough that the variant needs 2-byte offsets.
	target := strings.Repeat("x", 300)
	h := archiveHeader(0, 0, 0, unix.S_IFLNK|0o777, target, nil)
	n := int(binary.BigEndian.Uint32(h))
	body := h[8:]
	if n != len(body) || offsetSize(n) != 2 {
		t.Fatalf("size %d, body %d", n, len(body))
	}
	m, err := splitTuple(body, []gvMember{gvUint6, {4, 4}, {4, 4}, {4, 4}, {4, 4}, gvVar, gvVar})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := gvString(m[5]); err != nil || s != target || len(m[6]) != 0 {
		t.Errorf("target %q, %v; xattrs %x", s, err, m[6])
	}
}

// A prelinked commit is the commit `ostree commit` makes of the same
// tree; a second one, with every object already in the repo, too; and
// the repo passes fsck.
func TestCommitPrelinkedMatchesOstree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("prelinking takes files owned by 0:0: run as root")
	}
	ctx := context.Background()
	plain, dir := testRepo(t)
	root := archiveTree(t, dir)
	// A hard link inside the tree, and two files of the same content.
	if err := os.Link(filepath.Join(root, "usr/share/big"), filepath.Join(root, "usr/share/big-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/share/same"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := CommitOptions{Subject: "s", Metadata: map[string]string{"version": "1"}, Timestamp: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)}
	want, err := plain.CommitDir(ctx, root, o)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := Open(ctx, filepath.Join(dir, "pre"), ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		tree := filepath.Join(dir, fmt.Sprint("copy", i))
		if out, err := exec.Command("cp", "-a", root, tree).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v: %s", err, out)
		}
		linked, _, err := repo.prelink(ctx, tree, 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Not the hard-linked big file, the setuid tool or the file with
		// an xattr; the rest.
		if linked["usr/share/same"] == "" || linked["usr/share/empty"] == "" || linked["etc/secret"] == "" ||
			linked["usr/share/big"] != "" || linked["usr/share/big-link"] != "" || linked["usr/bin/tool"] != "" || linked["usr/share/dé/ünïcode"] != "" {
			t.Fatalf("prelinked %v", linked)
		}
		o2 := o
		o2.Consume, o2.speedup = true, true
		st, err := repo.commitOnce(ctx, tree, o2)
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.checkPrelinked(st.Commit, linked); err != nil {
			t.Fatal(err)
		}
		if st.Commit != want.Commit {
			a, _ := plain.run(ctx, "ls", "-R", "-C", "-X", "--", want.Commit)
			b, _ := repo.run(ctx, "ls", "-R", "-C", "-X", "--", st.Commit)
			t.Logf("plain:\n%s\npre:\n%s", a, b)
			t.Fatalf("commit %d: %s, ostree's %s", i, st.Commit, want.Commit)
		}
		// ostree wrote only what was not prelinked: the setuid tool, the
		// file with an xattr, the big file and the two symlinks.
		if i == 0 && st.ContentWritten != 5 {
			t.Errorf("ostree wrote %d content objects, want 5", st.ContentWritten)
		}
	}
	if out, err := exec.Command("ostree", "fsck", "--repo="+repo.Path).CombinedOutput(); err != nil {
		t.Fatalf("fsck: %v\n%s", err, out)
	}
	// A mismatch is an error: a file whose linked checksum is not the
	// commit's.
	bad := map[string]string{"usr/share/big": strings.Repeat("0", 64)}
	if err := repo.checkPrelinked(want.Commit, bad); err == nil {
		t.Error("checkPrelinked accepted a wrong checksum")
	}
}
