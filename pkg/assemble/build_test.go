package assemble

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/ostree"
	"github.com/cosa-build/cosa/pkg/platform"
	"github.com/cosa-build/cosa/pkg/progress"
	"github.com/cosa-build/cosa/pkg/workdir"
)

const testArch = "x86_64"

var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// testWorkdir is a workdir with the built-in config and Options for it;
// nothing is fetched.
func testWorkdir(t *testing.T) (*workdir.Workdir, Options) {
	t.Helper()
	w, err := workdir.Init(context.Background(), filepath.Join(t.TempDir(), "w"), workdir.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := w.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	return w, Options{
		Workdir: w, Config: cfg, Arch: testArch, LockTimeout: time.Second,
		Progress: progress.New(events.Discard{}), Out: io.Discard, LockWait: io.Discard, Log: io.Discard,
		Now: func() time.Time { return testNow },
	}
}

// writeLock writes a package lock that matches the config, as `cosa
// fetch` would, and returns it.
func writeLock(t *testing.T, o Options) *compose.Lockfile {
	t.Helper()
	l := &compose.Lockfile{Format: compose.LockFormat, Arch: testArch, Suite: "bookworm", Sources: []string{"deb file:///debs ./"},
		PackageInputs: compose.PackageInputs(&o.Config.Manifest, testArch),
		Packages: map[string]compose.LockedPackage{
			"systemd": {Version: "252.1-1", Arch: "amd64", Sha256: strings.Repeat("a", 64), Size: 1, Filename: "systemd.deb"},
		}}
	data, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(compose.LockPath(o.Workdir.CacheDir(), testArch), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return l
}

// addBuild records an on-disk build made from inputHash in builds/, with
// a package list, newest first in builds.json, and makes it latest.
func addBuild(t *testing.T, o Options, id, inputHash string, pkgs []compose.Package) {
	t.Helper()
	d, err := build.Open(o.Workdir.BuildsDir())
	if err != nil {
		t.Fatal(err)
	}
	d.LockWait = io.Discard
	data, _ := json.Marshal(pkgs)
	testutil.WriteTree(t, d.BuildDir(id, testArch), map[string]string{PkgListFile: string(data)})
	testutil.PublishBuild(t, d, id, testArch, &build.Meta{
		BuildID: id, Name: "debian-ostree", Ref: "debian/bookworm/" + testArch, OSTreeCommit: strings.Repeat("c", 64),
		OSTreeTimestamp: "2026-11-21T10:00:00Z", OSTreeVersion: id, BaseArch: testArch, BuildTimestamp: "2026-11-21T10:05:00Z",
		RpmOstreeInputHash: inputHash,
		Images:             map[string]build.Artifact{"ostree": {Path: "x.tar", Sha256: strings.Repeat("d", 64), Size: 1}},
	}, true)
}

func openDir(t *testing.T, o Options) *build.Dir {
	t.Helper()
	d, err := build.Open(o.Workdir.BuildsDir())
	if err != nil {
		t.Fatal(err)
	}
	d.LockWait = io.Discard
	return d
}

func TestReadInputs(t *testing.T) {
	_, o := testWorkdir(t)
	lockPath := compose.LockPath(o.Workdir.CacheDir(), testArch)
	_, err := readInputs(&o)
	if !errors.Is(err, ErrNoFetch) || !strings.Contains(err.Error(), lockPath+" is missing; run `cosa fetch` first") {
		t.Fatalf("no lock: %v", err)
	}

	lock := writeLock(t, o)
	in, err := readInputs(&o)
	if err != nil {
		t.Fatal(err)
	}
	want, err := compose.InputHash(o.Config, lock)
	if err != nil || in.hash != want || len(in.hash) != 64 {
		t.Errorf("hash %q, want %q (%v)", in.hash, want, err)
	}
	if in.lock.Packages["systemd"].Version != "252.1-1" {
		t.Errorf("lock = %+v", in.lock)
	}

	// A package added to the config needs a new fetch.
	o.Config.Manifest.Packages = append(o.Config.Manifest.Packages, "vim")
	if _, err := readInputs(&o); !errors.Is(err, ErrNoFetch) || !strings.Contains(err.Error(), "package set in the config changed") {
		t.Fatalf("changed packages: %v", err)
	}
}

func TestPlanBuild(t *testing.T) {
	_, o := testWorkdir(t)
	d := openDir(t, o)
	hash := strings.Repeat("1", 64)

	pl, err := planBuild(d, &o, hash)
	if err != nil {
		t.Fatal(err)
	}
	if pl.unchanged || pl.id != "12.20261122.dev.0" || pl.prevPkgList != "" {
		t.Fatalf("first build: %+v", pl)
	}

	addBuild(t, o, "12.20261122.dev.0", hash, nil)
	if pl, err = planBuild(d, &o, hash); err != nil || !pl.unchanged {
		t.Fatalf("same inputs: %+v, %v", pl, err)
	}
	// New inputs, or --force: the next id, with the previous build's
	// package list for the pkgdiff.
	for _, force := range []bool{false, true} {
		o.Force = force
		h := strings.Repeat("2", 64)
		if force {
			h = hash
		}
		pl, err = planBuild(d, &o, h)
		if err != nil || pl.unchanged || pl.id != "12.20261122.dev.1" ||
			pl.prevPkgList != filepath.Join(d.BuildDir("12.20261122.dev.0", testArch), PkgListFile) {
			t.Fatalf("force=%v: %+v, %v", force, pl, err)
		}
	}

	// --version: taken ids and bad ids are refused.
	o.Version = "12.20261122.dev.0"
	if _, err := planBuild(d, &o, "new"); err == nil || !strings.Contains(err.Error(), "build 12.20261122.dev.0 already exists") {
		t.Errorf("taken id: %v", err)
	}
	o.Version = "../x"
	if _, err := planBuild(d, &o, "new"); err == nil {
		t.Error("bad id accepted")
	}

	// A directory of an interrupted build of the chosen id is cleared.
	o.Version = "7.0"
	leftover := filepath.Join(d.Root, "7.0", testArch)
	if err := os.MkdirAll(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	if pl, err = planBuild(d, &o, "new"); err != nil || pl.id != "7.0" {
		t.Fatalf("leftover: %+v, %v", pl, err)
	}
	if _, err := os.Stat(filepath.Join(d.Root, "7.0")); !os.IsNotExist(err) {
		t.Errorf("leftover of an interrupted build is still there: %v", err)
	}
}

// Build stops before the lock when the package cache is missing, and
// leaves builds/ as it was.
func TestBuildWithoutFetch(t *testing.T) {
	_, o := testWorkdir(t)
	res, err := Build(context.Background(), o)
	if !errors.Is(err, ErrNoFetch) || res != nil {
		t.Fatalf("Build = %v, %v", res, err)
	}
	entries, _ := os.ReadDir(o.Workdir.BuildsDir())
	if len(entries) != 0 {
		t.Errorf("builds/ has %v", entries)
	}
}

// A build whose inputs are the latest build's says so and changes
// nothing, after clearing what interrupted builds left; the lock is
// released.
func TestBuildUnchanged(t *testing.T) {
	w, o := testWorkdir(t)
	lock := writeLock(t, o)
	hash, err := compose.InputHash(o.Config, lock)
	if err != nil {
		t.Fatal(err)
	}
	addBuild(t, o, "12.20261121.dev.0", hash, nil)
	staleStaging := filepath.Join(w.BuildsDir(), ".staging-12.20261121.dev.1-abcd")
	staleScratch := filepath.Join(w.TmpDir(), "build-12.20261121.dev.1-abcd")
	for _, d := range []string{staleStaging, staleScratch} {
		if err := os.MkdirAll(filepath.Join(d, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	index, _ := os.ReadFile(filepath.Join(w.BuildsDir(), build.IndexFile))
	var out bytes.Buffer
	o.Out = &out
	res, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	// The result names the build that stands for these inputs.
	if !res.Unchanged || res.BuildID != "12.20261121.dev.0" || res.Commit != strings.Repeat("c", 64) || out.String() != "No changes in build inputs.\n" {
		t.Errorf("result %+v, output %q", res, out.String())
	}
	for _, d := range []string{staleStaging, staleScratch} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s: still there (%v)", d, err)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(w.BuildsDir(), build.IndexFile)); !bytes.Equal(after, index) {
		t.Errorf("builds.json changed:\n%s", after)
	}
	release, err := openDir(t, o).Lock(context.Background(), time.Second, "test", io.Discard)
	if err != nil {
		t.Fatalf("lock not released: %v", err)
	}
	release()
}

// Build waits for the builds/ lock, up to the timeout, before deciding
// anything.
func TestBuildWaitsForLock(t *testing.T) {
	_, o := testWorkdir(t)
	writeLock(t, o)
	release, err := openDir(t, o).Lock(context.Background(), time.Second, "other cosa", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	o.LockTimeout = 50 * time.Millisecond
	var lte *build.LockTimeoutError
	if _, err := Build(context.Background(), o); !errors.As(err, &lte) || !strings.Contains(err.Error(), "other cosa") {
		t.Fatalf("Build = %v, want a lock timeout naming the holder", err)
	}
}

// fakeRoot is a composed root as ostree commit --bootable accepts it.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	testutil.WriteTree(t, root, map[string]string{
		"usr/lib/modules/6.1.0-test/vmlinuz":       "kernel",
		"usr/lib/modules/6.1.0-test/initramfs.img": "initramfs",
		"usr/etc/hostname":                         "test\n",
	})
	return root
}

func needOstree(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ostree"); err != nil {
		t.Skip("ostree not installed")
	}
}

// The commit, stage and publish phases on a small root: the commit is on
// the config's ref and the build's ref, the staged build is complete and
// invisible until publish renames it and records it.
func TestCommitStagePublish(t *testing.T) {
	needOstree(t)
	ctx := context.Background()
	w, o := testWorkdir(t)
	d := openDir(t, o)
	hash := strings.Repeat("3", 64)
	addBuild(t, o, "12.20261121.dev.0", strings.Repeat("0", 64), []compose.Package{
		{Name: "systemd", Version: "252.1-1", Arch: "amd64"}, {Name: "gone", Version: "1", Arch: "all"}})
	pl, err := planBuild(d, &o, hash)
	if err != nil {
		t.Fatal(err)
	}
	id := pl.id
	root := fakeRoot(t)

	c, err := commitRoot(ctx, &o, pl, id, hash, &compose.Result{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); err == nil {
		if entries, _ := os.ReadDir(filepath.Join(root, "usr")); len(entries) != 0 {
			t.Errorf("the root was not consumed: %v", entries)
		}
	}
	for _, ref := range []string{o.Config.Manifest.Ref, BuildRef(id, testArch)} {
		if got, err := c.repo.RevParse(ctx, ref); err != nil || got != c.stats.Commit {
			t.Errorf("ref %s = %s, %v; want %s", ref, got, err, c.stats.Commit)
		}
	}
	// Per-object fsync is off in the build repo (publish syncs it once).
	if v, err := c.repo.GetConfig(ctx, "core.fsync"); err != nil || v != "false" {
		t.Errorf("tmp/repo core.fsync = %q, %v; want false", v, err)
	}
	for k, want := range map[string]string{"version": id, "cosa.input-hash": hash, "cosa.name": "debian-ostree"} {
		if got, err := c.repo.MetadataString(ctx, c.stats.Commit, k); err != nil || got != want {
			t.Errorf("commit metadata %s = %q, %v; want %q", k, got, err, want)
		}
	}

	res := &compose.Result{Packages: []compose.Package{{Name: "systemd", Version: "252.2-1", Arch: "amd64"}, {Name: "vim", Version: "9", Arch: "amd64"}}}
	st, err := stageBuild(ctx, &o, pl, hash, c, res)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(st.dir), ".staging-"+id+"-") || filepath.Dir(st.dir) != w.BuildsDir() {
		t.Errorf("staging dir %s", st.dir)
	}
	if d.HasBuild(id) {
		t.Error("the build is visible before publish")
	}
	data, err := os.ReadFile(filepath.Join(st.dir, testArch, build.MetaFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := build.ValidateMeta(data); err != nil {
		t.Fatal(err)
	}
	meta, err := build.ParseMeta("meta.json", data)
	if err != nil {
		t.Fatal(err)
	}
	if meta.BuildID != id || meta.OSTreeCommit != c.stats.Commit || meta.RpmOstreeInputHash != hash ||
		meta.BuildTimestamp != "2026-11-22T12:00:00Z" || meta.Images["ostree"].Path != "debian-ostree-"+id+"-ostree."+testArch+".tar" ||
		!strings.HasPrefix(meta.CosaSource, "cosa ") { // which cosa made it (internal/version)
		t.Errorf("meta.json: %s", data)
	}
	var kinds []string
	for _, e := range meta.PkgDiff {
		kinds = append(kinds, fmt.Sprint(e.Name, ":", e.Kind))
	}
	if want := []string{fmt.Sprint("gone:", build.PkgRemoved), fmt.Sprint("systemd:", build.PkgUpgraded), fmt.Sprint("vim:", build.PkgAdded)}; !slices.Equal(kinds, want) {
		t.Errorf("pkgdiff %v, want %v", kinds, want)
	}
	tarPath := filepath.Join(st.dir, testArch, meta.Images["ostree"].Path)
	if fi, err := os.Stat(tarPath); err != nil || fi.Size() != meta.Images["ostree"].Size {
		t.Errorf("ostree archive: %v, %v", fi, err)
	}
	// The archive is a repo holding the commit on the config's ref.
	unpacked := t.TempDir()
	if out, err := exec.Command("tar", "-xf", tarPath, "-C", unpacked).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	if got, err := (&ostree.Repo{Path: unpacked}).RevParse(ctx, o.Config.Manifest.Ref); err != nil || got != c.stats.Commit {
		t.Errorf("archive ref: %s, %v", got, err)
	}
	for _, f := range []string{PkgListFile, "commitmeta.json"} {
		if _, err := os.Stat(filepath.Join(st.dir, testArch, f)); err != nil {
			t.Error(err)
		}
	}

	cacheRepo := filepath.Join(w.CacheDir(), "ostree-archive")
	if err := publish(context.Background(), d, pl.idx, st.dir, id, testArch, c.repo.Path, cacheRepo); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(st.dir); !os.IsNotExist(err) {
		t.Errorf("staging dir still there: %v", err)
	}
	if _, err := d.ReadMeta(id, testArch); err != nil {
		t.Errorf("published meta.json: %v", err)
	}
	idx, err := d.ReadIndex()
	if err != nil || idx.IDs()[0] != id {
		t.Errorf("builds.json: %v, %v", idx.IDs(), err)
	}
	if latest, err := d.Latest(); err != nil || latest != id {
		t.Errorf("latest = %s, %v", latest, err)
	}
}

// A stage phase that fails leaves no staging dir behind.
func TestStageFailureRemovesStaging(t *testing.T) {
	needOstree(t)
	ctx := context.Background()
	w, o := testWorkdir(t)
	pl, err := planBuild(openDir(t, o), &o, "h")
	if err != nil {
		t.Fatal(err)
	}
	c, err := commitRoot(ctx, &o, pl, pl.id, "h", &compose.Result{Root: fakeRoot(t)})
	if err != nil {
		t.Fatal(err)
	}
	broken := platform.Must(platform.Qemu)
	broken.Pipeline = "no-such-builder"
	o.Images = []platform.Platform{broken}
	if _, err := stageBuild(ctx, &o, pl, "h", c, &compose.Result{}); err == nil || !strings.Contains(err.Error(), "qemu image") {
		t.Fatalf("stageBuild = %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(w.BuildsDir(), ".staging-*")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// The prune phase keeps the newest DefaultKeep builds and removes the
// others with their refs.
func TestAutoPrune(t *testing.T) {
	needOstree(t)
	ctx := context.Background()
	_, o := testWorkdir(t)
	d := openDir(t, o)
	repo, err := ostree.Open(ctx, o.Workdir.RepoDir(), ostree.ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := repo.CommitDir(ctx, fakeRoot(t), ostree.CommitOptions{Branch: "x/y"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range DefaultKeep + 2 {
		id := "12.20261122.dev." + string(rune('0'+i))
		ids = append(ids, id)
		addBuild(t, o, id, strings.Repeat("4", 64), nil)
		if err := repo.SetRef(ctx, BuildRef(id, testArch), stats.Commit); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := d.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	pruned, _, err := autoPrune(ctx, d, idx, repo)
	if err != nil {
		t.Fatal(err)
	}
	if want := ids[:2]; !slices.Equal(sortedCopy(pruned), want) {
		t.Errorf("pruned %v, want %v", pruned, want)
	}
	refs, err := repo.Refs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		kept := i >= 2
		if d.HasBuild(id) != kept || slices.Contains(refs, BuildRef(id, testArch)) != kept {
			t.Errorf("%s: on disk %v, ref %v, want %v", id, d.HasBuild(id), slices.Contains(refs, BuildRef(id, testArch)), kept)
		}
	}
	// Nothing more to prune.
	idx, _ = d.ReadIndex()
	if pruned, _, err := autoPrune(ctx, d, idx, repo); err != nil || len(pruned) != 0 {
		t.Errorf("second prune: %v, %v", pruned, err)
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// Build from end to end with a small root in place of the compose: the
// new build is published, reported, and the oldest build beyond
// DefaultKeep is pruned; building again changes nothing.
func TestBuildWithSmallCompose(t *testing.T) {
	needOstree(t)
	w, o := testWorkdir(t)
	writeLock(t, o)
	old := []string{"12.20261119.dev.0", "12.20261120.dev.0", "12.20261121.dev.0"}
	for _, id := range old {
		addBuild(t, o, id, strings.Repeat("0", 64), nil)
	}
	var scratch string
	saved := composeFn
	defer func() { composeFn = saved }()
	composeFn = func(ctx context.Context, o *Options, lock *compose.Lockfile, dir string) (*compose.Result, error) {
		scratch = dir
		root := fakeRoot(t)
		return &compose.Result{Root: root, Packages: []compose.Package{{Name: "systemd", Version: "252.1-1", Arch: "amd64"}}}, nil
	}
	var out bytes.Buffer
	o.Out = &out
	res, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	id := "12.20261122.dev.0"
	if res.BuildID != id || res.Unchanged || len(res.Commit) != 64 || !slices.Equal(res.Pruned, old[:1]) {
		t.Errorf("result %+v", res)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "Built "+id+": commit "+res.Commit[:12]+", 1 packages, ") ||
		lines[1] != "Pruned "+old[0]+" (keeping the last 3 builds; --skip-prune to keep all)" {
		t.Errorf("output:\n%s", out.String())
	}
	d := openDir(t, o)
	idx, err := d.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{id, old[2], old[1]}; !slices.Equal(idx.IDs(), want) {
		t.Errorf("builds.json %v, want %v", idx.IDs(), want)
	}
	if latest, _ := d.Latest(); latest != id {
		t.Errorf("latest = %s", latest)
	}
	if _, err := os.Stat(scratch); scratch == "" || !os.IsNotExist(err) {
		t.Errorf("scratch %q: %v", scratch, err)
	}
	if left, _ := filepath.Glob(filepath.Join(w.BuildsDir(), ".staging-*")); len(left) != 0 {
		t.Errorf("staging left: %v", left)
	}

	out.Reset()
	if res, err := Build(context.Background(), o); err != nil || !res.Unchanged || out.String() != "No changes in build inputs.\n" {
		t.Errorf("second build: %+v, %v, %q", res, err, out.String())
	}
}

// Exports of several builds at once share the cache of compressed
// objects: each tarball still holds its whole commit. Without the cache's
// lock, one export's prune would drop another's objects between their
// compression and its tar.
func TestConcurrentExports(t *testing.T) {
	needOstree(t)
	if testing.Short() {
		t.Skip("exports several commits at once (about 10 s)")
	}
	ctx := context.Background()
	dir := t.TempDir()
	src, err := ostree.Open(ctx, filepath.Join(dir, "src"), ostree.ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	var commits []string
	for i := 0; i < n; i++ {
		files := map[string]string{"usr/lib/modules/6.1.0-test/vmlinuz": "kernel", "usr/lib/modules/6.1.0-test/initramfs.img": "initramfs"}
		for j := 0; j < 1500; j++ {
			// Most files are the same in every commit, as between builds.
			v := fmt.Sprint(j)
			if j%5 == 0 {
				v = fmt.Sprint(i, "-", j)
			}
			files[fmt.Sprintf("usr/share/d%d/f%d", j%40, j)] = v
		}
		root := filepath.Join(dir, fmt.Sprint("root", i))
		testutil.WriteTree(t, root, files)
		st, err := src.CommitDir(ctx, root, ostree.CommitOptions{Consume: true})
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, st.Commit)
	}
	cache := filepath.Join(dir, "cache", "ostree-archive")
	os.MkdirAll(filepath.Dir(cache), 0o755)
	errs := make([]error, n)
	arts := make([]*build.Artifact, n)
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 3 {
				arts[i], _, errs[i] = exportArchive(ctx, src, commits[i], "x/y", cache, filepath.Join(dir, fmt.Sprint("out", i, ".tar")))
			}
		}()
	}
	wg.Wait()
	for i, c := range commits {
		if errs[i] != nil {
			t.Errorf("export %d: %v", i, errs[i])
			continue
		}
		// The sum taken while writing is the file's.
		sum, size, err := fileutil.SHA256File(filepath.Join(dir, fmt.Sprint("out", i, ".tar")))
		if err != nil || sum != arts[i].Sha256 || size != arts[i].Size || arts[i].Path != fmt.Sprint("out", i, ".tar") {
			t.Errorf("export %d: artifact %+v; file sha256 %s size %d, %v", i, arts[i], sum, size, err)
		}
		un := filepath.Join(dir, fmt.Sprint("un", i))
		os.MkdirAll(un, 0o755)
		if out, err := exec.Command("tar", "-xf", filepath.Join(dir, fmt.Sprint("out", i, ".tar")), "-C", un).CombinedOutput(); err != nil {
			t.Fatalf("tar: %v: %s", err, out)
		}
		if out, err := exec.Command("ostree", "fsck", "--repo="+un).CombinedOutput(); err != nil {
			t.Errorf("export %d: fsck: %v\n%s", i, err, out)
		}
		if got, err := (&ostree.Repo{Path: un}).RevParse(ctx, "x/y"); err != nil || got != c {
			t.Errorf("export %d: ref %s, %v; want %s", i, got, err, c)
		}
	}
}
