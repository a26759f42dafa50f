package ostree

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A commit or ref that looks like an option is taken as a (bad) commit or
// ref, never as an option: `ostree rev-parse --help` would print help and
// exit 0, so "--help" would pass for a commit checksum.
func TestOptionLikeArgumentsAreNotOptions(t *testing.T) {
	ctx := context.Background()
	repo, dir := testRepo(t)
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(tree, 0o755)
	os.WriteFile(filepath.Join(tree, "f"), []byte("x"), 0o644)
	st, err := repo.CommitDir(ctx, tree, CommitOptions{Branch: "test/x", Metadata: map[string]string{"version": "1"}})
	if err != nil {
		t.Fatal(err)
	}

	if got, err := repo.RevParse(ctx, "--help"); err == nil {
		t.Errorf("RevParse(--help) = %q, nil", got)
	}
	if got, err := repo.MetadataString(ctx, "--help", "version"); err == nil {
		t.Errorf("MetadataString(--help) = %q, nil", got)
	}
	if _, err := repo.Show(ctx, "--help"); err == nil {
		t.Error("Show(--help) succeeded")
	}
	if err := repo.SetRef(ctx, "test/y", "--help"); err == nil {
		t.Error("SetRef(test/y, --help) succeeded")
	}
	other, err := Open(ctx, filepath.Join(dir, "other"), ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.PullLocal(ctx, repo, "--help"); err == nil {
		t.Error("PullLocal(--help) succeeded")
	}

	// The ordinary arguments still work after "--".
	if got, err := repo.RevParse(ctx, "test/x"); err != nil || got != st.Commit {
		t.Errorf("RevParse(test/x) = %q, %v; want %s", got, err, st.Commit)
	}
	if v, err := repo.MetadataString(ctx, st.Commit, "version"); err != nil || v != "1" {
		t.Errorf("MetadataString = %q, %v", v, err)
	}
	if err := repo.SetRef(ctx, "test/y", st.Commit); err != nil {
		t.Fatal(err)
	}
	if err := repo.DeleteRef(ctx, "test/y"); err != nil {
		t.Fatal(err)
	}
	if err := other.PullLocal(ctx, repo, st.Commit); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Show(ctx, st.Commit); err != nil {
		t.Errorf("pulled commit not there: %v", err)
	}
}
