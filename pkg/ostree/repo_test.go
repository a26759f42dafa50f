package ostree

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cosa-build/cosa/internal/hostcmd"
)

func needOstree(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ostree"); err != nil {
		t.Skip("ostree CLI not installed")
	}
}

// testRepo skips the test without the ostree CLI, and opens a bare-user
// repo in a new directory, which it returns too.
func testRepo(t *testing.T) (*Repo, string) {
	t.Helper()
	needOstree(t)
	dir := t.TempDir()
	repo, err := Open(context.Background(), filepath.Join(dir, "repo"), ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	return repo, dir
}

// TestCommitShowRefs runs the real ostree CLI: commit a small tree twice and
// check that identical content gives an identical content checksum while
// metadata changes the commit checksum.
func TestCommitShowRefs(t *testing.T) {
	ctx := context.Background()
	repo, dir := testRepo(t)
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "usr/bin/hello"), []byte("hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	s1, err := repo.CommitDir(ctx, tree, CommitOptions{Branch: "test/x86_64", Subject: "one",
		Metadata: map[string]string{"version": "1.0", "cosa.input-hash": "abc"}, Timestamp: ts})
	if err != nil {
		t.Fatal(err)
	}
	if s1.ContentTotal != 1 || s1.ContentWritten != 1 {
		t.Errorf("stats = %+v, want 1 content object written", s1)
	}
	s2, err := repo.CommitDir(ctx, tree, CommitOptions{Subject: "two", Metadata: map[string]string{"version": "1.1"}, Timestamp: ts})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Commit == s1.Commit {
		t.Fatal("different metadata gave the same commit")
	}
	if s2.ContentWritten != 0 {
		t.Errorf("second commit wrote %d content objects, want 0", s2.ContentWritten)
	}
	i1, err := repo.Show(ctx, "test/x86_64")
	if err != nil {
		t.Fatal(err)
	}
	i2, err := repo.Show(ctx, s2.Commit)
	if err != nil {
		t.Fatal(err)
	}
	if i1.Checksum != s1.Commit || i1.Version != "1.0" || !i1.Timestamp.Equal(ts) {
		t.Errorf("show = %+v", i1)
	}
	if len(i1.ContentChecksum) != 64 || i1.ContentChecksum != i2.ContentChecksum {
		t.Errorf("content checksums %q vs %q: same tree must give the same", i1.ContentChecksum, i2.ContentChecksum)
	}
	if v, err := repo.MetadataString(ctx, s1.Commit, "cosa.input-hash"); err != nil || v != "abc" {
		t.Errorf("metadata = %q, %v", v, err)
	}
	if err := repo.SetRef(ctx, "cosa/builds/1.1", s2.Commit); err != nil {
		t.Fatal(err)
	}
	refs, _ := repo.Refs(ctx)
	if len(refs) != 2 {
		t.Errorf("refs = %v", refs)
	}
	if err := repo.DeleteRef(ctx, "cosa/builds/1.1"); err != nil {
		t.Fatal(err)
	}
	if err := repo.DeleteRef(ctx, "cosa/builds/missing"); err != nil {
		t.Errorf("deleting a missing ref: %v", err)
	}
	if err := repo.PruneRefsOnly(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Show(ctx, s2.Commit); err == nil {
		t.Error("orphan commit survived prune --refs-only")
	}
	// A later commit on the same branch has the first as its parent; once
	// no ref points at the first, prune must drop it despite that link.
	os.WriteFile(filepath.Join(tree, "usr/bin/hello"), []byte("hello again\n"), 0o755)
	s3, err := repo.CommitDir(ctx, tree, CommitOptions{Branch: "test/x86_64", Metadata: map[string]string{"version": "2.0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.PruneRefsOnly(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Show(ctx, s1.Commit); err == nil {
		t.Error("the branch's parent commit survived prune although no ref points at it")
	}
	if _, err := repo.Show(ctx, s3.Commit); err != nil {
		t.Errorf("the branch head was pruned: %v", err)
	}
	_, err = repo.RevParse(ctx, "no/such/ref")
	var oe *hostcmd.Error
	if !errors.As(err, &oe) {
		t.Fatalf("want *Error, got %v", err)
	}
}

// TestSetConfig: a key set with SetConfig is read back, and an invalid
// key is an error.
func TestSetConfig(t *testing.T) {
	needOstree(t)
	ctx := context.Background()
	repo, err := Open(ctx, filepath.Join(t.TempDir(), "repo"), ModeArchive)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.SetConfig(ctx, "archive.zlib-level", "1"); err != nil {
		t.Fatal(err)
	}
	if v, err := repo.GetConfig(ctx, "archive.zlib-level"); err != nil || v != "1" {
		t.Errorf("archive.zlib-level = %q, %v; want 1", v, err)
	}
	if err := repo.SetConfig(ctx, "nogroup", "1"); err == nil {
		t.Error("a key without a group was accepted")
	}
}

func TestVersion(t *testing.T) {
	needOstree(t)
	v, err := Version(context.Background())
	if err != nil || v == "" {
		t.Fatalf("Version() = %q, %v", v, err)
	}
}
