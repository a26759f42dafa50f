package ostree

import (
	"bytes"
	"context"
	"crypto/rand"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPrehash reads a tree ahead, changes two of its files afterwards
// (one grows, one changes mode), then commits it with the read-ahead: the
// commit must be the one ostree makes of the changed tree, the changed
// files hashed again, and the export cache filled on the way must give
// the same tar as an export that compressed everything itself.
func TestPrehash(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("prelinking takes files owned by 0:0: run as root")
	}
	ctx := context.Background()
	plain, dir := testRepo(t)
	root := archiveTree(t, dir)
	for name, size := range map[string]int{"usr/share/big2": 64 << 10, "usr/share/grows": 32 << 10, "usr/share/chmodded": 20 << 10, "usr/share/small": 100} {
		data := make([]byte, size)
		rand.Read(data[:size/2])
		if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tree := filepath.Join(dir, "copy")
	if out, err := exec.Command("cp", "-a", root, tree).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	// The files just written changed less than a second ago: taken as
	// settled here, and as not settled at all below.
	saved := prehashSettle
	defer func() { prehashSettle = saved }()
	prehashSettle = 0

	var plainFiles, bigFiles int
	filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		var st unix.Stat_t
		if err == nil && d.Type().IsRegular() && unix.Lstat(p, &st) == nil && plainStat(&st) {
			if sz, _ := unix.Llistxattr(p, nil); sz == 0 {
				plainFiles++
				if st.Size >= minCached {
					bigFiles++
				}
			}
		}
		return nil
	})
	cache := filepath.Join(dir, "export-cache")
	p, err := StartPrehash(ctx, tree, cache)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if _, st := p.Finish(2); st.Hashed != plainFiles || st.Compressed != bigFiles || bigFiles != 4 {
		t.Fatalf("read ahead %+v; the tree has %d plain files, %d of them big (want 4)", st, plainFiles, bigFiles)
	}
	for _, r := range []string{root, tree} {
		f, err := os.OpenFile(filepath.Join(r, "usr/share/grows"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("more"))
		f.Close()
		if err := os.Chmod(filepath.Join(r, "usr/share/chmodded"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	o := CommitOptions{Subject: "s", Timestamp: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)}
	want, err := plain.CommitDir(ctx, root, o)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := Open(ctx, filepath.Join(dir, "pre"), ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	o2 := o
	o2.Consume, o2.Parallel, o2.Prehash = true, 2, p
	got, err := repo.CommitDir(ctx, tree, o2)
	if err != nil {
		t.Fatal(err)
	}
	if got.Commit != want.Commit {
		t.Fatalf("commit with the read-ahead %s, ostree's %s", got.Commit, want.Commit)
	}
	if got.Prelinked != plainFiles || got.Prehashed != plainFiles-2 {
		t.Errorf("prelinked %d, %d of them read ahead; want %d and %d (the two changed files read again)", got.Prelinked, got.Prehashed, plainFiles, plainFiles-2)
	}

	var withCache, fresh bytes.Buffer
	st, err := repo.WriteArchiveTar(ctx, got.Commit, "test/ref", cache, &withCache)
	if err != nil {
		t.Fatal(err)
	}
	// The two changed files' entries are under their old checksums: not
	// used, and pruned.
	if st.Reused != bigFiles-2 || st.Pruned != 2 {
		t.Errorf("export took %d objects from the read-ahead's cache and pruned %d; want %d and 2", st.Reused, st.Pruned, bigFiles-2)
	}
	if _, err := repo.WriteArchiveTar(ctx, got.Commit, "test/ref", filepath.Join(dir, "empty-cache"), &fresh); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(withCache.Bytes(), fresh.Bytes()) {
		t.Error("the tar made from the read-ahead's cache differs from one made without it")
	}

	// A file changed less than prehashSettle before it would be read is
	// left to the commit.
	prehashSettle = time.Hour
	again := filepath.Join(dir, "again")
	if out, err := exec.Command("cp", "-a", root, again).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	p2, err := StartPrehash(ctx, again, "")
	if err != nil {
		t.Fatal(err)
	}
	if sums, st := p2.Finish(2); len(sums) != 0 || st.Hashed != 0 || st.Listed == 0 {
		t.Errorf("unsettled files read ahead: %+v", st)
	}
	p2.Stop()
}
