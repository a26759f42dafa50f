package assemble

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/internal/version"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/extend"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/fsattr"
	"github.com/cosa-build/cosa/pkg/images"
	"github.com/cosa-build/cosa/pkg/ostree"
	"github.com/cosa-build/cosa/pkg/platform"
	"github.com/cosa-build/cosa/pkg/progress"
	"github.com/cosa-build/cosa/pkg/prune"
	"github.com/cosa-build/cosa/pkg/workdir"
)

// DefaultKeep is how many builds auto-prune keeps.
const DefaultKeep = 3

// Options configure Build.
type Options struct {
	Workdir   *workdir.Workdir
	Config    *config.Config
	Arch      string
	Force     bool   // build even if inputs are unchanged
	Version   string // build id; empty = next <prefix>.<date>.<stream>.<n>
	SkipPrune bool
	// Images are the platforms built with the commit (default: qemu, as
	// coreos-assembler's classic build did); empty with SkipImages.
	Images      []platform.Platform
	Events      events.Sink
	LockTimeout time.Duration
	Progress    *progress.Reporter
	Out         io.Writer // user-facing lines
	LockWait    io.Writer // where "waiting for lock" goes
	Log         io.Writer // full tool output
	Now         func() time.Time

	// prehash is the compose's read-ahead of a freshly installed root for
	// the commit (set by composeRoot, used by commitRoot, stopped by Build).
	prehash *ostree.Prehash
}

// Result says what Build did.
type Result struct {
	BuildID   string // the new build, or the unchanged latest one
	Unchanged bool
	Commit    string
	Pruned    []string
}

// ErrNoFetch means the package cache is missing or stale.
var ErrNoFetch = errors.New("no package cache")

// BuildRef is the OSTree ref that keeps a build's commit alive until the
// build is pruned.
func BuildRef(id, arch string) string { return "cosa/builds/" + id + "/" + arch }

// Build runs one build: the phases below, in order. The inputs are
// checked before the builds/ lock is taken; everything from the decision
// to build on happens under it.
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	w, m := o.Workdir, &o.Config.Manifest
	dir, err := build.Open(w.BuildsDir())
	if err != nil {
		return nil, err
	}
	in, err := readInputs(&o)
	if err != nil {
		return nil, err
	}

	release, err := dir.Lock(ctx, o.LockTimeout, "cosa build", o.LockWait)
	if err != nil {
		return nil, err
	}
	defer release()
	cleanStaging(w.BuildsDir())
	cleanScratch(w.TmpDir(), o.Out)

	pl, err := planBuild(dir, &o, in.hash)
	if err != nil {
		return nil, err
	}
	if pl.unchanged {
		fmt.Fprintln(o.Out, "No changes in build inputs.")
		return &Result{BuildID: pl.id, Unchanged: true, Commit: pl.prevCommit}, nil
	}
	id := pl.id
	o.Progress.Infof("Building %s %s for %s (input hash %s)", m.Name, id, o.Arch, in.hash[:12])
	start := time.Now()

	scratch, removeScratch, err := newScratch(w.TmpDir(), id)
	if err != nil {
		return nil, err
	}
	defer removeScratch(o.Out)
	defer func() {
		if o.prehash != nil {
			o.prehash.Stop()
		}
	}()
	res, err := composeFn(ctx, &o, in.lock, scratch)
	if err != nil {
		return nil, err
	}
	c, err := commitRoot(ctx, &o, pl, id, in.hash, res)
	if err != nil {
		return nil, err
	}
	// What the commit left of the root (all of it but the changed paths,
	// after a commit over the previous one) goes while the export and the
	// images run: deleting a 1 GB tree is seconds of mostly waiting on the
	// file system's journal. Waited for before the scratch dir goes.
	rootGone := make(chan error, 1)
	go func() { rootGone <- compose.RemoveTree(res.Root) }()
	defer func() {
		if err := <-rootGone; err != nil {
			fmt.Fprintf(o.Out, "warning: %v\n", err)
		}
	}()
	if !o.Force && !NoSkip() {
		same, err := sameTreeAsPrevious(ctx, &o, pl, id, c)
		if err != nil {
			return nil, err
		}
		if same {
			fmt.Fprintf(o.Out, "No changes in the tree since build %s (the inputs changed, the commit would not); --force makes a new build.\n", pl.prevID)
			return &Result{BuildID: pl.prevID, Unchanged: true, Commit: pl.prev.OSTreeCommit}, nil
		}
	}
	st, err := stageBuild(ctx, &o, pl, in.hash, c, res)
	if err != nil {
		return nil, err
	}
	defer st.finish()
	defer os.RemoveAll(st.dir)
	if err := publish(ctx, dir, pl.idx, st.dir, id, o.Arch, c.repo.Path, filepath.Join(w.CacheDir(), "ostree-archive")); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "Built %s: commit %s, %d packages, %s, in %s\n", id, c.stats.Commit[:12], len(res.Packages),
		fileutil.HumanBytes(st.ostree.Size), time.Since(start).Round(time.Second))

	result := &Result{BuildID: id, Commit: c.stats.Commit}
	var gone map[string]bool
	if !o.SkipPrune {
		pruned, objs, err := autoPrune(ctx, dir, pl.idx, c.repo)
		if err != nil {
			return nil, err
		}
		if len(pruned) > 0 {
			fmt.Fprintf(o.Out, "Pruned %s (keeping the last %d builds; --skip-prune to keep all)\n", strings.Join(pruned, ", "), DefaultKeep)
			result.Pruned = pruned
		}
		gone = objs
	}
	evictSuperseded(dir, w, gone, &o)
	return result, nil
}

// evictSuperseded drops the pipeline objects that only superseded builds
// used (prune.EvictCache), now that this build is the newest. The build
// is complete whatever happens here, so trouble is a warning.
func evictSuperseded(dir *build.Dir, w *workdir.Workdir, gone map[string]bool, o *Options) {
	evicted, busy, err := prune.EvictCache(dir, &images.Store{Dir: w.ObjectsDir()}, gone)
	switch {
	case err != nil:
		fmt.Fprintf(o.Out, "warning: %v\n", err)
	case busy:
		o.Progress.Infof("    cache: another image run is using cache/objects; objects of superseded builds stay until the next build")
	case len(evicted) > 0:
		o.Progress.Infof("    cache: evicted %d pipeline objects of superseded builds", len(evicted))
	}
}

// inputs are what the commit is made from: the fetched package set and
// the hash of everything the commit depends on.
type inputs struct {
	lock *compose.Lockfile
	hash string
}

// readInputs is the inputs phase: the package cache must exist and match
// the config's package set (else ErrNoFetch).
func readInputs(o *Options) (*inputs, error) {
	lockPath := compose.LockPath(o.Workdir.CacheDir(), o.Arch)
	lock, err := compose.ReadLock(lockPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is missing; run `cosa fetch` first (or `cosa build --fetch`)", ErrNoFetch, lockPath)
	}
	if err != nil {
		return nil, err
	}
	if lock.PackageInputs != compose.PackageInputs(&o.Config.Manifest, o.Arch) {
		return nil, fmt.Errorf("%w: the package set in the config changed since the last fetch; run `cosa fetch` (or `cosa build --fetch`)", ErrNoFetch)
	}
	hash, err := compose.InputHash(o.Config, lock)
	if err != nil {
		return nil, err
	}
	return &inputs{lock: lock, hash: hash}, nil
}

// plan is what is decided under the lock: whether to build, and which id.
type plan struct {
	idx         *build.BuildsIndex
	prevPkgList string // of the newest build on disk, for the pkgdiff
	unchanged   bool   // that build's inputs are these: nothing to do
	id          string // the new build's, or (unchanged) that build's
	prevCommit  string // that build's commit, when unchanged
	prevID      string // the newest build on disk, if any
	prev        *build.Meta
}

// planBuild decides, under the builds/ lock, whether a build is needed and
// under which id, clearing the leftover directory of an interrupted build
// of that id.
func planBuild(dir *build.Dir, o *Options, inputHash string) (*plan, error) {
	idx, err := dir.ReadIndex()
	if err != nil {
		return nil, err
	}
	pl := &plan{idx: idx}
	prevID, prevMeta := latestOnDisk(dir, idx, o.Arch)
	pl.prevID, pl.prev = prevID, prevMeta
	if prevID != "" {
		pl.prevPkgList = filepath.Join(dir.BuildDir(prevID, o.Arch), PkgListFile)
	}
	if !o.Force && prevMeta != nil && prevMeta.RpmOstreeInputHash == inputHash {
		pl.unchanged, pl.id, pl.prevCommit = true, prevID, prevMeta.OSTreeCommit
		return pl, nil
	}
	m := &o.Config.Manifest
	id := o.Version
	if id == "" {
		id = build.NextBuildID(m.VersionPrefix, m.Stream, o.Now(), idx.IDs())
	}
	if err := build.ValidBuildID(id); err != nil {
		return nil, err
	}
	if idx.Find(id) != nil {
		return nil, fmt.Errorf("build %s already exists; pick another --version or prune it", id)
	}
	leftover := filepath.Join(o.Workdir.BuildsDir(), id)
	if _, err := os.Lstat(leftover); err == nil {
		// A directory not in builds.json is the leftover of an interrupted
		// build (we hold the lock, so nobody is writing it): clear it.
		if err := compose.RemoveTree(leftover); err != nil {
			return nil, err
		}
	}
	pl.id = id
	return pl, nil
}

// newScratch makes the build's private scratch dir under tmp/; remove
// warns rather than fails, the build being done by then.
func newScratch(tmpDir, id string) (string, func(out io.Writer), error) {
	scratch := filepath.Join(tmpDir, "build-"+id+"-"+randHex(4))
	// Spread (fsattr): this tree is made and deleted on every build.
	if err := fsattr.MkdirSpread(scratch, 0o755); err != nil {
		return "", nil, err
	}
	return scratch, func(out io.Writer) {
		if err := compose.RemoveTree(scratch); err != nil {
			fmt.Fprintf(out, "warning: %v\n", err)
		}
	}, nil
}

// NoSkipEnv, set to 1, makes a build run every step even when its inputs
// provably did not change: what a skipped step's output is compared with.
const NoSkipEnv = "COSA_NO_SKIP"

// NoSkip reports whether NoSkipEnv asks for every step to run.
func NoSkip() bool { return os.Getenv(NoSkipEnv) == "1" }

// composeFn is the compose phase; Build's tests put a small root in its
// place, since a real one needs a fetched package cache.
var composeFn = composeRoot

// composeRoot is the compose phase: the root filesystem, in OSTree
// layout, under scratch.
func composeRoot(ctx context.Context, o *Options, lock *compose.Lockfile, scratch string) (*compose.Result, error) {
	return compose.Compose(ctx, compose.ComposeOptions{
		Config: o.Config, Lock: lock, CacheDir: o.Workdir.CacheDir(), WorkDir: scratch, Progress: o.Progress, Log: o.Log,
		NoSkip: NoSkip(),
		// A freshly installed root is committed whole (CommitDir): its
		// files are read for the commit and the export while the compose
		// still runs on the other core (see ostree.Prehash).
		Installed: func(root string) {
			p, err := ostree.StartPrehash(ctx, root, filepath.Join(o.Workdir.CacheDir(), "ostree-archive"))
			if err != nil {
				o.Progress.Infof("warning: reading the tree ahead of the commit: %v", err)
				return
			}
			o.prehash = p
		},
	})
}

// committed is what the commit phase made.
type committed struct {
	// imageInputs is the hash of what decides the build's images besides
	// the commit (meta.json's coreos-assembler.image-input-checksum).
	imageInputs string
	repo        *ostree.Repo
	stats       *ostree.CommitStats
	info        *ostree.CommitInfo
	metadata    map[string]string
	git         workdir.GitInfo
}

// commitRoot is the commit phase: the composed root (consumed) becomes a
// commit on the config's ref in the workdir repo, and the build's own ref
// keeps it alive until the build is pruned. When the newest build's tree
// came from the same base tree, only what differs from it is hashed (see
// compose.TreeState and ostree.CommitOver).
func commitRoot(ctx context.Context, o *Options, pl *plan, id, inputHash string, res *compose.Result) (*committed, error) {
	m := &o.Config.Manifest
	root := res.Root
	repo, err := ostree.Open(ctx, o.Workdir.RepoDir(), ostree.ModeBareUser)
	if err != nil {
		return nil, err
	}
	if err := noObjectFsync(ctx, repo); err != nil {
		return nil, err
	}
	c := &committed{repo: repo, git: o.Workdir.ConfigGit(ctx)}
	if c.imageInputs, err = imageInputHash(o); err != nil {
		return nil, err
	}
	c.metadata = map[string]string{
		"version":           id,
		"cosa.input-hash":   inputHash,
		"cosa.name":         m.Name,
		"cosa.kernel-args":  strings.Join(m.KernelArgs, " "),
		"cosa.distro-suite": m.Distro.Suite,
	}
	if c.git.Rev != "" {
		c.metadata["cosa.config-gitrev"] = c.git.Rev
	}
	opts := ostree.CommitOptions{
		Branch: m.Ref, Subject: m.Name + " " + id, Metadata: c.metadata, Bootable: true, Consume: true,
		Parallel: runtime.NumCPU(),
	}
	if parent, changed := commitParent(ctx, o, pl, repo, res.State); parent != "" {
		step := o.Progress.Start(fmt.Sprintf("commit: ostree commit to %s, over build %s (%d of %d paths changed)", m.Ref, pl.prevID, len(changed), len(res.State.Entries)))
		c.stats, err = repo.CommitOver(ctx, root, parent, changed, opts)
		err = step.Done(err)
	} else {
		step := o.Progress.Start("commit: ostree commit to " + m.Ref)
		opts.Prehash = o.prehash
		c.stats, err = repo.CommitDir(ctx, root, opts)
		err = step.Done(err)
	}
	if err != nil {
		return nil, err
	}
	if res.State != nil {
		if err := compose.SaveTreeState(o.Workdir.CacheDir(), c.stats.Commit, res.State); err != nil {
			o.Progress.Infof("warning: tree state: %v", err)
		}
	}
	if n := c.stats.Prelinked; n > 0 {
		o.Progress.Infof("    commit: %d files hashed on %d cores first (%d of them during the compose, %d compressed for the export then), %d by ostree",
			n, runtime.NumCPU(), c.stats.Prehashed, c.stats.PrehashCompressed, c.stats.ContentTotal)
	}
	if err := repo.SetRef(ctx, BuildRef(id, o.Arch), c.stats.Commit); err != nil {
		return nil, err
	}
	if c.info, err = repo.Show(ctx, c.stats.Commit); err != nil {
		return nil, err
	}
	return c, nil
}

// commitParent picks the commit a build's tree can be committed over: the
// newest build's, when its tree state is stored and this tree differs from
// it only by changed paths (compose.TreeState.ChangedSince). "" when the
// whole tree is to be hashed; COSA_NO_SKIP=1 always hashes it.
func commitParent(ctx context.Context, o *Options, pl *plan, repo *ostree.Repo, state *compose.TreeState) (string, []string) {
	if state == nil || pl.prev == nil || pl.prev.OSTreeCommit == "" || NoSkip() {
		return "", nil
	}
	prev := compose.LoadTreeState(o.Workdir.CacheDir(), pl.prev.OSTreeCommit)
	if prev == nil {
		return "", nil
	}
	changed, ok, why := state.ChangedSince(prev)
	if !ok {
		o.Progress.Infof("    commit: the whole tree, not over build %s: %s", pl.prevID, why)
		return "", nil
	}
	if got, err := repo.RevParse(ctx, pl.prev.OSTreeCommit); err != nil || got != pl.prev.OSTreeCommit {
		return "", nil
	}
	return pl.prev.OSTreeCommit, changed
}

// imageInputHash hashes image.yaml (normalized, as in the input hash) and
// the platforms the build makes images for.
func imageInputHash(o *Options) (string, error) {
	norm, err := o.Config.Normalized()
	if err != nil {
		return "", err
	}
	var doc struct {
		Image json.RawMessage `json:"image"`
	}
	if err := json.Unmarshal(norm, &doc); err != nil {
		return "", err
	}
	var names []string
	for _, p := range o.Images {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	h := sha256.New()
	fmt.Fprintf(h, "cosa image inputs 1\n%s\n%s\n", doc.Image, strings.Join(names, ","))
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sameTreeAsPrevious reports whether the commit just made holds what the
// newest build's commit holds: the same content checksum (every file's
// content, mode, owner and xattrs) and the same commit metadata apart from
// the labels that name a build (version, input hash, config revision),
// made for the same image inputs (imageInputHash). Then, as
// coreos-assembler does, there is no new build: a new id for the
// same tree would only make the same images again under another version.
// The config's ref goes back to that build's commit and the new commit's
// build ref is dropped, so the repo is as before but for one unreferenced
// commit object that the next prune removes.
func sameTreeAsPrevious(ctx context.Context, o *Options, pl *plan, id string, c *committed) (bool, error) {
	prev := pl.prev
	if prev == nil || prev.OSTreeContentChecksum == "" || prev.OSTreeContentChecksum != c.info.ContentChecksum || prev.OSTreeCommit == c.stats.Commit {
		return false, nil
	}
	// New image settings (image.yaml, the platforms made) want new images
	// of the same tree: a new build, as coreos-assembler makes one when
	// its image inputs changed.
	if prev.ImageInputChecksum == "" || prev.ImageInputChecksum != c.imageInputs {
		return false, nil
	}
	old, err := c.repo.Show(ctx, prev.OSTreeCommit)
	if err != nil || old.ContentChecksum != c.info.ContentChecksum {
		return false, nil // pruned from the repo, or not what meta.json says
	}
	labels := map[string]bool{"version": true, "cosa.input-hash": true, "cosa.config-gitrev": true}
	for k, v := range c.metadata {
		if labels[k] {
			continue
		}
		if ov, err := c.repo.MetadataString(ctx, old.Checksum, k); err != nil || ov != v {
			return false, nil
		}
	}
	if err := c.repo.SetRef(ctx, o.Config.Manifest.Ref, old.Checksum); err != nil {
		return false, err
	}
	if err := c.repo.DeleteRef(ctx, BuildRef(id, o.Arch)); err != nil {
		return false, err
	}
	return true, nil
}

// staged is a complete build in its staging dir.
type staged struct {
	dir    string // builds/.staging-<id>-<random>, holding <arch>/
	ostree *build.Artifact
	finish func() // waits for what the image runs left computing
}

// stageBuild is the stage phase: everything of the build is written into
// builds/.staging-<id>-*/<arch>/ (the ostree archive, the images,
// pkglist.json, commitmeta.json and, last, a validated meta.json), so that
// publish only renames. On error the staging dir is gone.
func stageBuild(ctx context.Context, o *Options, pl *plan, inputHash string, c *committed, res *compose.Result) (_ *staged, err error) {
	w, m, id := o.Workdir, &o.Config.Manifest, pl.id
	staging := filepath.Join(w.BuildsDir(), ".staging-"+id+"-"+randHex(4))
	archDir := filepath.Join(staging, o.Arch)
	if err := os.MkdirAll(archDir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	commit := c.stats.Commit

	tarName := fmt.Sprintf("%s-%s-ostree.%s.tar", m.Name, id, o.Arch)
	// The export and the image pipeline (pull-local, deploy, mkfs) both
	// only read the commit: run them side by side so both cores work. Neither returns before the other is done, since
	// both write into the staging dir that an error removes.
	exportCtx, cancelExport := context.WithCancel(ctx)
	defer cancelExport()
	exported := make(chan error, 1)
	var ostreeArt *build.Artifact
	go func() {
		step := o.Progress.Start("export: " + tarName)
		var st *ostree.ArchiveStats
		var err error
		ostreeArt, st, err = exportArchive(exportCtx, c.repo, commit, m.Ref, filepath.Join(w.CacheDir(), "ostree-archive"), filepath.Join(archDir, tarName))
		if err == nil {
			o.Progress.Infof("    export: %d objects, %d compressed (%.0f MB), %d from the cache", st.Objects, st.Compressed, float64(st.Bytes)/1e6, st.Reused)
		}
		exported <- step.Done(err)
	}()
	imageArts, finish, err := makeImages(ctx, o, c, archDir, id)
	if err != nil {
		cancelExport()
		<-exported
		finish()
		return nil, err
	}
	defer func() {
		if err != nil {
			finish()
		}
	}()
	if err := <-exported; err != nil {
		return nil, err
	}
	imageArts["ostree"] = *ostreeArt

	pkgJSON, err := json.MarshalIndent(res.Packages, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := fileutil.WriteFileAtomic(filepath.Join(archDir, PkgListFile), append(pkgJSON, '\n'), 0o644); err != nil {
		return nil, err
	}
	var diff []build.PkgDiffEntry
	if pl.prevPkgList != "" {
		if prev, err := readPkgList(pl.prevPkgList); err == nil {
			diff = PkgDiff(prev, res.Packages)
		}
	}

	commitMeta := map[string]any{
		"ostree-commit":   commit,
		"metadata":        c.metadata,
		"kernels":         res.Kernels,
		"cosa.packages":   res.Packages,
		"ostree.bootable": true,
	}
	cm, err := json.MarshalIndent(commitMeta, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := fileutil.WriteFileAtomic(filepath.Join(archDir, "commitmeta.json"), append(cm, '\n'), 0o644); err != nil {
		return nil, err
	}

	stats := c.stats
	meta := &build.Meta{
		BuildID:                   id,
		Name:                      m.Name,
		Ref:                       m.Ref,
		Summary:                   fmt.Sprintf("%s %s (Debian %s)", m.Name, id, m.Distro.Suite),
		OSTreeCommit:              commit,
		OSTreeContentChecksum:     c.info.ContentChecksum,
		OSTreeTimestamp:           c.info.Timestamp.UTC().Format(time.RFC3339),
		OSTreeVersion:             id,
		OSTreeNMetadataTotal:      build.Int64(stats.MetadataTotal),
		OSTreeNMetadataWritten:    build.Int64(stats.MetadataWritten),
		OSTreeNContentTotal:       build.Int64(stats.ContentTotal),
		OSTreeNContentWritten:     build.Int64(stats.ContentWritten),
		OSTreeNCacheHits:          build.Int64(stats.ContentCacheHits),
		OSTreeContentBytesWritten: build.Int64(stats.ContentBytesWritten),
		BaseArch:                  o.Arch,
		BuildTimestamp:            o.Now().UTC().Format(time.RFC3339),
		ConfigGitRev:              c.git.Rev,
		RpmOstreeInputHash:        inputHash,
		ImageInputChecksum:        c.imageInputs,
		PkgDiff:                   diff,
		Images:                    imageArts,
		CosaSource:                version.Get().String(),
		CosaGit:                   version.Get().MetaGit(),
	}
	if c.git.Rev != "" {
		meta.ConfigDirty = fmt.Sprint(c.git.Dirty)
	}
	data, err := meta.Dump()
	if err != nil {
		return nil, err
	}
	if err := build.ValidateMeta(data); err != nil {
		return nil, err
	}
	if err := fileutil.WriteFileAtomic(filepath.Join(archDir, build.MetaFile), data, 0o644); err != nil {
		return nil, err
	}
	return &staged{dir: staging, ostree: ostreeArt, finish: finish}, nil
}

// makeImages runs the pipeline of each platform the build makes and
// links its image into archDir.
// What is still computing when it returns (the raw disks' checksums, see
// extend.StartImage) is waited for by finish.
func makeImages(ctx context.Context, o *Options, c *committed, archDir, id string) (_ map[string]build.Artifact, finish func(), _ error) {
	w, cfg, m := o.Workdir, o.Config, &o.Config.Manifest
	arts := map[string]build.Artifact{}
	var pending []func()
	finish = func() {
		for _, f := range pending {
			f()
		}
	}
	for _, p := range o.Images {
		spec, err := extend.Spec(ctx, c.repo, cfg, p, c.stats.Commit, m.Ref)
		if err != nil {
			return nil, finish, err
		}
		t0 := time.Now()
		o.Progress.Infof("==> image: %s", p)
		art, _, wait, err := extend.StartImage(ctx, extend.Engine(w, cfg, o.Events, o.Log), spec, p, archDir, m.Name, id, o.Arch)
		pending = append(pending, wait)
		if err != nil {
			return nil, finish, fmt.Errorf("%s image: %w", p, err)
		}
		arts[p.Name] = *art
		o.Progress.Infof("    image %s: %s in %s", p, art.Path, time.Since(t0).Round(100*time.Millisecond))
	}
	return arts, finish, nil
}

// publish is the publish phase: the staged build is synced and renamed
// to builds/<id>, and only then listed in builds.json and made latest, so
// no reader sees a build that is not complete.
func publish(ctx context.Context, dir *build.Dir, idx *build.BuildsIndex, staging, id, arch string, repos ...string) error {
	// The repos were written without per-object fsync (noObjectFsync): one
	// syncfs of each file system makes their objects and refs durable
	// before builds.json can name the build.
	if err := syncTree(ctx, append([]string{staging}, repos...)...); err != nil {
		return err
	}
	if err := os.Rename(staging, filepath.Join(dir.Root, id)); err != nil {
		return err
	}
	idx.Insert(id, arch)
	if err := dir.WriteIndex(idx); err != nil {
		return err
	}
	return dir.SetLatest(id)
}

// autoPrune is the prune phase: builds beyond the newest DefaultKeep go,
// with their refs, and then the commits only they held.
// It also returns the pipeline objects the pruned builds named, read
// before they went, for evictSuperseded.
func autoPrune(ctx context.Context, dir *build.Dir, idx *build.BuildsIndex, repo *ostree.Repo) ([]string, map[string]bool, error) {
	remove, _, err := prune.Plan(idx, dir.HasBuild, prune.Options{KeepLastN: DefaultKeep})
	if err != nil || len(remove) == 0 {
		return nil, nil, err
	}
	objs := prune.ObjectsOf(dir, remove)
	if err := prune.Execute(ctx, dir, remove, RefRemover(ctx, repo)); err != nil {
		return nil, nil, fmt.Errorf("auto-prune: %w", err)
	}
	if err := repo.PruneRefsOnly(ctx); err != nil {
		return nil, nil, err
	}
	return remove, objs, nil
}

// RefRemover deletes every OSTree ref of a build (one per arch). It reads
// the refs when called, so it sees the repo as it is under the caller's lock.
func RefRemover(ctx context.Context, repo *ostree.Repo) func(string) error {
	return func(id string) error {
		refs, err := repo.Refs(ctx)
		if err != nil {
			return err
		}
		for _, r := range refs {
			if strings.HasPrefix(r, "cosa/builds/"+id+"/") {
				if err := repo.DeleteRef(ctx, r); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// latestOnDisk returns the newest build of arch present on disk and its meta.
func latestOnDisk(dir *build.Dir, idx *build.BuildsIndex, arch string) (string, *build.Meta) {
	for _, b := range idx.Builds {
		if !dir.HasBuild(b.ID) {
			continue
		}
		m, err := dir.ReadMeta(b.ID, arch)
		if err != nil {
			continue
		}
		return b.ID, m
	}
	return "", nil
}

// cleanStaging removes staging dirs of interrupted builds (caller holds the lock).
func cleanStaging(buildsDir string) {
	old, _ := filepath.Glob(filepath.Join(buildsDir, ".staging-*"))
	for _, d := range old {
		os.RemoveAll(d)
	}
}

// cleanScratch removes the scratch dirs of interrupted builds (caller holds
// the lock). RemoveTree refuses any dir that still has something mounted.
func cleanScratch(tmpDir string, out io.Writer) {
	old, _ := filepath.Glob(filepath.Join(tmpDir, "build-*"))
	for _, d := range old {
		if err := compose.RemoveTree(d); err != nil {
			fmt.Fprintf(out, "warning: leftover of an interrupted build: %v\n", err)
		}
	}
}

// exportArchive writes commit as a tarball of an archive-mode repo holding
// just that commit under ref (see ostree.WriteArchiveTar). cacheRepo keeps
// the compressed objects of the last export, so a rebuild compresses only
// the objects that changed.
//
// One export at a time uses the cache, to the end of the tar: a
// concurrent build's export would prune this commit's objects from it
// between their compression and the tar.
// The tar is hashed as it is written, for its meta.json entry.
func exportArchive(ctx context.Context, src *ostree.Repo, commit, ref, cacheRepo, out string) (*build.Artifact, *ostree.ArchiveStats, error) {
	// publish syncs it, so it exists even when nothing was big enough to cache.
	if err := os.MkdirAll(cacheRepo, 0o755); err != nil {
		return nil, nil, err
	}
	unlock, err := lockFile(ctx, cacheRepo+".lock")
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	tmp := out + ".partial"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, nil, err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	st, err := src.WriteArchiveTar(ctx, commit, ref, cacheRepo, cw)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644) // the umask may have taken bits off
	}
	if err == nil {
		fileutil.StartWriteback(tmp) // publish syncs it; the disk can start now
		err = os.Rename(tmp, out)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, nil, err
	}
	return &build.Artifact{Path: filepath.Base(out), Sha256: hex.EncodeToString(h.Sum(nil)), Size: cw.n}, st, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// lockFile takes an exclusive flock on path (created if missing), waiting
// as long as ctx allows.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := fileutil.Flock(ctx, f, syscall.LOCK_EX, 10*time.Millisecond, 500*time.Millisecond, nil); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// syncTree flushes the file systems holding dirs (syncfs, one per path;
// a file system already flushed costs next to nothing).
func syncTree(ctx context.Context, dirs ...string) error {
	return hostcmd.Run(ctx, "sync", append([]string{"-f", "--"}, dirs...)...)
}

// noObjectFsync turns off ostree's fsync of every object it writes
// (core.fsync=false, as coreos-assembler does for its build repo). On a
// busy disk those fsyncs were about a quarter of the commit's wall time
// (bare-user commit of the default root: 59-70 s with, 44-51 s without,
// back to back at load 12-16 on 2 cores); publish syncs the repos' file
// systems once instead, before a build that needs their objects is listed.
// What this gives up: a power loss (not a killed cosa: the page cache
// survives that) between the write and that sync can leave truncated
// objects in tmp/repo or the export cache that a later build would reuse
// as present; `ostree fsck` finds them, and `cosa clean` starts over.
func noObjectFsync(ctx context.Context, r *ostree.Repo) error {
	return r.SetConfig(ctx, "core.fsync", "false")
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
