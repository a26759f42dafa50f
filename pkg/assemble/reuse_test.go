package assemble

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/ostree"
)

// A build whose tree is the previous build's takes that build's commit
// (so its images are cache hits); a different tree, different commit
// metadata or COSA_NO_SKIP=1 makes a new commit.
func TestBuildReusesUnchangedTree(t *testing.T) {
	needOstree(t)
	ctx := context.Background()
	w, o := testWorkdir(t)
	writeLock(t, o)
	hostname := "test\n"
	saved := composeFn
	defer func() { composeFn = saved }()
	composeFn = func(ctx context.Context, o *Options, lock *compose.Lockfile, dir string) (*compose.Result, error) {
		root := fakeRoot(t)
		if err := os.WriteFile(filepath.Join(root, "usr/etc/hostname"), []byte(hostname), 0o644); err != nil {
			return nil, err
		}
		return &compose.Result{Root: root, Packages: []compose.Package{{Name: "systemd", Version: "252.1-1", Arch: "amd64"}}}, nil
	}
	var out bytes.Buffer
	o.Out = &out
	build := func(force bool) (*Result, string) {
		t.Helper()
		o.Force = force
		res, err := Build(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		m, err := openDir(t, o).ReadMeta(res.BuildID, testArch)
		if err != nil {
			t.Fatal(err)
		}
		if m.OSTreeCommit != res.Commit {
			t.Fatalf("meta.json commit %s, result %s", m.OSTreeCommit, res.Commit)
		}
		return res, m.OSTreeVersion
	}
	repo, err := ostree.Open(ctx, w.RepoDir(), ostree.ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	refIs := func(ref, want string) {
		t.Helper()
		if got, err := repo.RevParse(ctx, ref); err != nil || got != want {
			t.Errorf("ref %s = %s, %v; want %s", ref, got, err, want)
		}
	}

	r1, v1 := build(false)
	// Same tree (--force: new inputs would do the same): build 1's commit.
	r2, v2 := build(true)
	if r2.BuildID == r1.BuildID || r2.Commit != r1.Commit || v2 != r1.BuildID || v1 != r1.BuildID {
		t.Fatalf("unchanged tree: build %s commit %s version %s; want build %s's commit %s", r2.BuildID, r2.Commit, v2, r1.BuildID, r1.Commit)
	}
	refIs(BuildRef(r2.BuildID, testArch), r1.Commit)
	refIs(o.Config.Manifest.Ref, r1.Commit)
	if !strings.Contains(out.String(), "Built "+r2.BuildID+": commit "+r1.Commit[:12]) {
		t.Errorf("output:\n%s", out.String())
	}

	// Other commit metadata (kernel arguments end up in the image): new commit.
	o.Config.Manifest.KernelArgs = append(o.Config.Manifest.KernelArgs, "quiet")
	r3, v3 := build(false)
	if r3.Commit == r1.Commit || v3 != r3.BuildID {
		t.Fatalf("new kernel arguments reused commit %s (version %s)", r3.Commit, v3)
	}

	// A different tree: new commit.
	hostname = "other\n"
	r4, _ := build(true)
	if r4.Commit == r3.Commit {
		t.Fatal("a changed tree reused the commit")
	}

	// COSA_NO_SKIP=1: the same tree, but a commit of its own.
	t.Setenv(NoSkipEnv, "1")
	r5, v5 := build(true)
	if r5.Commit == r4.Commit || v5 != r5.BuildID {
		t.Fatalf("COSA_NO_SKIP=1 reused commit %s (version %s)", r5.Commit, v5)
	}
	refIs(BuildRef(r5.BuildID, testArch), r5.Commit)
	c4, _ := repo.Show(ctx, r4.Commit)
	c5, _ := repo.Show(ctx, r5.Commit)
	if c4 == nil || c5 == nil || c4.ContentChecksum != c5.ContentChecksum {
		t.Errorf("the same tree has content %+v and %+v", c4, c5)
	}
}
