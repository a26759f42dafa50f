package assemble

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/ostree"
)

// A build whose inputs changed but whose tree is the previous build's
// makes no new build, as coreos-assembler does; a different tree,
// different commit metadata, new image settings, --force or
// COSA_NO_SKIP=1 does.
func TestBuildSkipsUnchangedTree(t *testing.T) {
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
	// touchInputs changes an overlay file the fake compose does not read:
	// new inputs, the same tree.
	overlays, err := o.Config.OverlayDirs()
	if err != nil || len(overlays) == 0 {
		t.Fatalf("overlays %v, %v", overlays, err)
	}
	n := 0
	touchInputs := func() {
		n++
		p := filepath.Join(overlays[0], fmt.Sprintf("input-%d", n))
		if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := func(force bool) *Result {
		t.Helper()
		o.Force = force
		out.Reset()
		res, err := Build(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		m, err := openDir(t, o).ReadMeta(res.BuildID, testArch)
		if err != nil {
			t.Fatal(err)
		}
		if m.OSTreeCommit != res.Commit || m.OSTreeVersion != res.BuildID {
			t.Fatalf("meta.json commit %s version %s, result %s %s", m.OSTreeCommit, m.OSTreeVersion, res.Commit, res.BuildID)
		}
		return res
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
	ids := func() int {
		t.Helper()
		idx, err := openDir(t, o).ReadIndex()
		if err != nil {
			t.Fatal(err)
		}
		return len(idx.Builds)
	}

	r1 := build(false)
	// New inputs, the same tree: no new build, the refs as they were.
	touchInputs()
	r2 := build(false)
	if !r2.Unchanged || r2.BuildID != r1.BuildID || r2.Commit != r1.Commit || ids() != 1 {
		t.Fatalf("unchanged tree: %+v, %d builds; want build %s unchanged", r2, ids(), r1.BuildID)
	}
	if !strings.Contains(out.String(), "No changes in the tree since build "+r1.BuildID) {
		t.Errorf("output:\n%s", out.String())
	}
	refIs(o.Config.Manifest.Ref, r1.Commit)
	if refs, _ := repo.Refs(ctx); len(refs) != 2 {
		t.Errorf("refs after the skipped build: %v; want the config's and build %s's", refs, r1.BuildID)
	}

	// New image settings, the same tree: a new build, for new images.
	o.Config.Image.Size++
	touchInputs()
	r2b := build(false)
	if r2b.Unchanged || r2b.BuildID == r1.BuildID {
		t.Fatalf("new image settings: %+v", r2b)
	}
	if m, _ := openDir(t, o).ReadMeta(r2b.BuildID, testArch); m == nil || len(m.ImageInputChecksum) != 64 {
		t.Errorf("meta.json image input checksum: %+v", m)
	}

	// --force: a new build of the same tree, with a commit of its own.
	r3 := build(true)
	if r3.Unchanged || r3.BuildID == r2b.BuildID || r3.Commit == r2b.Commit {
		t.Fatalf("--force: %+v", r3)
	}
	refIs(BuildRef(r3.BuildID, testArch), r3.Commit)

	// Other commit metadata (kernel arguments end up in the image): a new build.
	o.Config.Manifest.KernelArgs = append(o.Config.Manifest.KernelArgs, "quiet")
	r4 := build(false)
	if r4.Unchanged || r4.Commit == r3.Commit {
		t.Fatalf("new kernel arguments: %+v", r4)
	}

	// A different tree: a new build.
	hostname = "other\n"
	touchInputs()
	r5 := build(false)
	if r5.Unchanged || r5.Commit == r4.Commit {
		t.Fatal("a changed tree made no new build")
	}

	// COSA_NO_SKIP=1: new inputs, the same tree, yet a new build.
	t.Setenv(NoSkipEnv, "1")
	touchInputs()
	r6 := build(false)
	if r6.Unchanged || r6.Commit == r5.Commit {
		t.Fatalf("COSA_NO_SKIP=1: %+v", r6)
	}
	c5, _ := repo.Show(ctx, r5.Commit)
	c6, _ := repo.Show(ctx, r6.Commit)
	if c5 == nil || c6 == nil || c5.ContentChecksum != c6.ContentChecksum {
		t.Errorf("the same tree has content %+v and %+v", c5, c6)
	}
}
