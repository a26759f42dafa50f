package imagebuild

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/assemble"
	"github.com/cosa-build/cosa/pkg/blueprint"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/extend"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/ostree"
	"github.com/cosa-build/cosa/pkg/platform"
	"github.com/cosa-build/cosa/pkg/progress"
	"github.com/cosa-build/cosa/pkg/workdir"
)

// ImageType is one Weldr image type: the cosa platform that makes it (""
// for the types made from the commit itself) and the name of its artifact
// in the compose's results.
type ImageType struct {
	Name     string
	Platform string
	Artifact string
	MIME     string
}

// Kinds of image made without a disk image pipeline.
const (
	typeTar    = "tar"
	typeCommit = "edge-commit"
)

// types is the table of image types, in the order `compose types` lists
// them. ami is the vmdk AWS imports: the upload (S3, ImportSnapshot,
// RegisterImage) is the upload step's, after this build.
var types = []ImageType{
	{Name: "ami", Platform: platform.AWS, Artifact: "disk.vmdk", MIME: "application/x-vmdk"},
	{Name: "edge-commit", Artifact: "commit.tar", MIME: "application/x-tar"},
	{Name: "gce", Platform: "gcp", Artifact: "image.tar.gz", MIME: "application/gzip"},
	{Name: "openstack", Platform: "openstack", Artifact: "disk.qcow2", MIME: "application/x-qemu-disk"},
	{Name: "ova", Platform: "vmware", Artifact: "image.ova", MIME: "application/ovf"},
	{Name: "partitioned-disk", Platform: platform.Metal, Artifact: "disk.raw", MIME: "application/octet-stream"},
	{Name: "qcow2", Platform: platform.Qemu, Artifact: "disk.qcow2", MIME: "application/x-qemu-disk"},
	{Name: "raw", Platform: platform.Metal, Artifact: "disk.raw", MIME: "application/octet-stream"},
	{Name: "tar", Artifact: "root.tar", MIME: "application/x-tar"},
	{Name: "vhd", Platform: "azure", Artifact: "image.vhd", MIME: "application/x-vhd"},
	{Name: "vmdk", Platform: platform.AWS, Artifact: "disk.vmdk", MIME: "application/x-vmdk"},
}

// Types returns the image types Build makes, sorted by name.
func Types() []ImageType { return append([]ImageType(nil), types...) }

// LookupType finds an image type by its Weldr name.
func LookupType(name string) (ImageType, bool) {
	for _, t := range types {
		if t.Name == name {
			if t.Platform != "" {
				if _, ok := platform.Lookup(t.Platform); !ok {
					return ImageType{}, false
				}
			}
			return t, true
		}
	}
	return ImageType{}, false
}

// Buildable reports whether Build can make the type here: every type of
// the table whose platform cosa has. (ami needs no credentials to build:
// it is the vmdk, uploaded afterwards.)
func Buildable(name string) bool {
	_, ok := LookupType(name)
	return ok
}

// OSTree is the compose's OSTree settings (Weldr's ostree ref/parent/url).
type OSTree struct {
	// Ref is the branch to commit to; "" is the generated config's.
	Ref string
	// Parent is the commit the new one must follow. cosa commits on top
	// of the ref's head in the blueprint's workdir repo, so Parent must be
	// that head (or, the first time, there is none to follow: refused).
	Parent string
	// URL is a repository to take the parent from: not supported.
	URL string
}

// Spec is one image build.
type Spec struct {
	Blueprint *blueprint.Blueprint
	// Type is the Weldr image type (see Types).
	Type string
	// Size is the requested image size in bytes (0: the default).
	Size   uint64
	OSTree OSTree
	// WorkRoot holds one cosa workdir per blueprint, WorkRoot/<name>.
	WorkRoot string
	// OutDir receives the artifact, meta.json and the pipeline manifest.
	OutDir string
	// Arch is the basearch; "" is the host's.
	Arch string
	// Repos are extra apt repositories (see GenerateOptions.Repos).
	Repos []Repo
	// Groups are the packages of the blueprint's groups (see
	// GenerateOptions.Groups).
	Groups map[string][]string
	// Refetch resolves the packages afresh even when the package cache
	// matches the config (picking up archive updates). Without it a
	// matching cache is reused, so an unchanged blueprint needs no network
	// and makes no new build.
	Refetch bool
	// Log receives human-readable progress lines and cosa's summaries.
	Log io.Writer
	// ToolLog receives the full output of the tools run; nil is Log.
	ToolLog io.Writer
	// Events receives cosa's structured events (steps, pipeline stages).
	Events events.Sink
}

// Artifact is one file placed in OutDir.
type Artifact struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Sha256 string `json:"sha256"`
}

// Result says what Build made.
type Result struct {
	// Artifacts are the image files in OutDir (one for every type now).
	Artifacts []Artifact
	// Metadata are meta.json and the pipeline manifests in OutDir, for
	// the compose's metadata tar.
	Metadata []string
	// BuildID is the cosa build the image comes from; Commit its OSTree
	// commit and Ref the branch it is on.
	BuildID, Commit, Ref string
	// Reused is true when the build existed already (inputs unchanged).
	Reused bool
	// Workdir is the blueprint's cosa workdir.
	Workdir string
}

// MetaFile is the build's meta.json as placed in OutDir.
const MetaFile = "meta.json"

// PkgListFile is the build's installed package list (name, Debian
// version, arch) as placed in OutDir.
const PkgListFile = "pkglist.json"

// Build makes one image of spec.Type from spec.Blueprint: the generated
// config is written into the blueprint's workdir (created the first time),
// then fetch (unless the cache matches), build (a no-op when the inputs
// are unchanged) and the type's buildextend target run there, as `cosa
// fetch`, `cosa build` and `cosa buildextend-*` do, and the artifact is
// placed in OutDir. Builds of one blueprint are serialised by a lock on
// WorkRoot/<name>.lock, held from the config write to the placement, so
// the config a build reads is the one its job wrote.
func Build(ctx context.Context, s Spec) (*Result, error) {
	if s.Blueprint == nil {
		return nil, errors.New("imagebuild: no blueprint")
	}
	t, ok := LookupType(s.Type)
	if !ok {
		return nil, fmt.Errorf("image type %q cannot be built here", s.Type)
	}
	if s.WorkRoot == "" || s.OutDir == "" {
		return nil, errors.New("imagebuild: WorkRoot and OutDir are required")
	}
	if err := blueprint.ValidName(s.Blueprint.Name); err != nil {
		return nil, err
	}
	if s.OSTree.URL != "" {
		return nil, fmt.Errorf("ostree url %s: cosa builds on its own repository and cannot pull a parent from a URL", s.OSTree.URL)
	}
	if s.Arch == "" {
		s.Arch = compose.BaseArch()
	}
	if s.Log == nil {
		s.Log = io.Discard
	}
	// Step heartbeats, tool output and summaries are written from several
	// goroutines; the caller's writer need not be safe for that.
	s.Log = &syncWriter{w: s.Log}
	if s.ToolLog == nil {
		s.ToolLog = s.Log
	}
	files, err := Generate(s.Blueprint, GenerateOptions{Arch: s.Arch, Ref: s.OSTree.Ref, Size: s.Size, Repos: s.Repos, Groups: s.Groups})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.WorkRoot, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockFile(ctx, filepath.Join(s.WorkRoot, s.Blueprint.Name+".lock"), s.Log)
	if err != nil {
		return nil, err
	}
	defer unlock()

	sink := events.Sink(events.NewText(s.Log))
	if s.Events != nil {
		sink = tee{s.Events, sink}
	}
	prog := progress.New(sink)
	w, err := writeConfig(ctx, filepath.Join(s.WorkRoot, s.Blueprint.Name), files)
	if err != nil {
		return nil, err
	}
	cfg, err := w.LoadConfig()
	if err != nil {
		return nil, err
	}
	if err := checkParent(ctx, w, cfg, s.OSTree.Parent); err != nil {
		return nil, err
	}
	d, err := build.Open(w.BuildsDir())
	if err != nil {
		return nil, err
	}
	d.LockWait = s.Log
	lock, err := fetch(ctx, w, d, cfg, s, prog)
	if err != nil {
		return nil, err
	}
	resolved := map[string]string{}
	for n, p := range lock.Packages {
		resolved[n] = p.Version
	}
	if err := CheckVersions(s.Blueprint, resolved); err != nil {
		return nil, err
	}
	br, err := assemble.Build(ctx, assemble.Options{
		Workdir: w, Config: cfg, Arch: s.Arch, Images: []platform.Platform{}, Events: sink,
		Progress: prog, Out: s.Log, LockWait: s.Log, Log: s.ToolLog,
	})
	if err != nil {
		return nil, err
	}
	res := &Result{BuildID: br.BuildID, Commit: br.Commit, Ref: cfg.Manifest.Ref, Reused: br.Unchanged, Workdir: w.Root}
	if err := os.MkdirAll(s.OutDir, 0o755); err != nil {
		return nil, err
	}
	var art *Artifact
	var manifests []string
	switch {
	case t.Name == typeTar:
		art, err = exportTar(ctx, w, br.Commit, filepath.Join(s.OutDir, t.Artifact))
	case t.Name == typeCommit:
		var m *build.Meta
		if m, err = d.ReadMeta(br.BuildID, s.Arch); err == nil {
			a, ok := m.Images["ostree"]
			if !ok {
				return nil, fmt.Errorf("build %s has no ostree archive", br.BuildID)
			}
			art, err = place(ctx, filepath.Join(d.BuildDir(br.BuildID, s.Arch), a.Path), filepath.Join(s.OutDir, t.Artifact), a.Sha256, a.Size)
		}
	default:
		p := platform.Must(t.Platform)
		var er *extend.ExtendResult
		er, err = extend.BuildExtend(ctx, extend.Options{
			Workdir: w, Config: cfg, Dir: d, BuildID: br.BuildID, Arch: s.Arch, Platform: p,
			Events: sink, Log: s.ToolLog, Out: s.Log,
		})
		if err != nil {
			return nil, err
		}
		bdir := d.BuildDir(br.BuildID, s.Arch)
		art, err = place(ctx, filepath.Join(bdir, er.Artifact.Path), filepath.Join(s.OutDir, t.Artifact), er.Artifact.Sha256, er.Artifact.Size)
		name := extend.ArtifactName(cfg.Manifest.Name, br.BuildID, p, s.Arch)
		// The pipeline manifest MakeImage wrote next to the image.
		mf := filepath.Join(bdir, strings.TrimSuffix(name, "."+p.Extension)+".manifest.json")
		if _, serr := os.Stat(mf); serr == nil {
			manifests = append(manifests, mf)
		}
	}
	if err != nil {
		return nil, err
	}
	res.Artifacts = []Artifact{*art}
	// meta.json last: it then lists the image just added.
	for _, m := range manifests {
		name := t.Platform + ".manifest.json"
		if _, err := place(ctx, m, filepath.Join(s.OutDir, name), "", 0); err != nil {
			return nil, err
		}
		res.Metadata = append(res.Metadata, name)
	}
	// The installed packages, for compose info's dependencies.
	if _, err := place(ctx, filepath.Join(d.BuildDir(br.BuildID, s.Arch), assemble.PkgListFile), filepath.Join(s.OutDir, PkgListFile), "", 0); err != nil {
		return nil, err
	}
	res.Metadata = append(res.Metadata, PkgListFile)
	if _, err := place(ctx, d.MetaPath(br.BuildID, s.Arch), filepath.Join(s.OutDir, MetaFile), "", 0); err != nil {
		return nil, err
	}
	res.Metadata = append(res.Metadata, MetaFile)
	sort.Strings(res.Metadata)
	fmt.Fprintf(s.Log, "Image %s: %s (%s) from build %s, commit %.12s\n", t.Name, art.Name, fileutil.HumanBytes(art.Size), br.BuildID, br.Commit)
	return res, nil
}

// syncWriter serialises writes.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// tee sends events to two sinks.
type tee [2]events.Sink

func (t tee) Emit(e events.Event) {
	t[0].Emit(e)
	t[1].Emit(e)
}

// writeConfig makes dir a workdir holding files as its src/config: the
// first time it initialises it as `cosa init` does; later it replaces
// src/config by renames, so a reader sees the old config or the new one.
// Files that did not change keep their content, so cosa's input hash and
// the fetch's package inputs only change with the blueprint.
func writeConfig(ctx context.Context, dir string, files map[string][]byte) (*workdir.Workdir, error) {
	src, err := os.MkdirTemp("", "cosa-blueprint-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(src)
	if err := WriteFiles(src, files); err != nil {
		return nil, err
	}
	// Force: the workdir has cache/, tmp/ and builds/ after the first
	// compose; Init then replaces only src/config.
	return workdir.Init(ctx, dir, workdir.InitOptions{Source: src, Force: true})
}

// checkParent refuses an ostree parent other than the head cosa will
// commit on top of.
func checkParent(ctx context.Context, w *workdir.Workdir, cfg *config.Config, parent string) error {
	if parent == "" {
		return nil
	}
	repo := &ostree.Repo{Path: w.RepoDir()}
	head, err := repo.RevParse(ctx, cfg.Manifest.Ref)
	if err != nil || head != parent {
		return fmt.Errorf("ostree parent %s: cosa commits on top of the head of %s in the blueprint's repository, which is %s",
			parent, cfg.Manifest.Ref, orNone(head, err))
	}
	return nil
}

func orNone(head string, err error) string {
	if err != nil || head == "" {
		return "not there yet"
	}
	return head
}

// fetch is `cosa fetch` (under the builds/ lock, as the command takes it),
// skipped when the cache's lock file was made for this package set.
func fetch(ctx context.Context, w *workdir.Workdir, d *build.Dir, cfg *config.Config, s Spec, prog *progress.Reporter) (*compose.Lockfile, error) {
	lockPath := compose.LockPath(w.CacheDir(), s.Arch)
	if !s.Refetch {
		if l, err := compose.ReadLock(lockPath); err == nil && l.PackageInputs == compose.PackageInputs(&cfg.Manifest, s.Arch) {
			if err := l.VerifyCache(compose.DebsDir(w.CacheDir())); err == nil {
				fmt.Fprintf(s.Log, "Package cache matches the config (%d packages); not fetching\n", len(l.Packages))
				return l, nil
			}
		}
	}
	var lock *compose.Lockfile
	err := d.WithLock(ctx, "cosa fetch", func() error {
		if n := seedPackageCache(s.WorkRoot, w.CacheDir()); n > 0 {
			fmt.Fprintf(s.Log, "Package cache: %d files shared from other blueprints' workdirs\n", n)
		}
		var err error
		lock, err = compose.Fetch(ctx, compose.FetchOptions{Config: cfg, CacheDir: w.CacheDir(), Arch: s.Arch, Progress: prog})
		return err
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(s.Log, "Fetched %d packages\n", len(lock.Packages))
	return lock, nil
}

// place puts src at dst (temp name, then rename): a hard link when both
// are on one filesystem, else a sparse copy. The file is made 0644. sum
// and size are src's when known; otherwise they are computed.
func place(ctx context.Context, src, dst, sum string, size int64) (*Artifact, error) {
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
	os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		if err := hostcmd.Run(ctx, "cp", "--sparse=always", "--", src, tmp); err != nil {
			os.Remove(tmp)
			return nil, err
		}
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if sum == "" {
		var err error
		if sum, size, err = fileutil.SHA256File(tmp); err != nil {
			os.Remove(tmp)
			return nil, err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	// rename(2) leaves both names when they are links to one inode (a
	// second placement of the same file).
	os.Remove(tmp)
	return &Artifact{Name: filepath.Base(dst), Size: size, Sha256: sum}, nil
}

// exportTar writes the commit's root filesystem as a tar (ostree export
// keeps the owners and modes the commit records).
func exportTar(ctx context.Context, w *workdir.Workdir, commit, dst string) (*Artifact, error) {
	err := fileutil.WriteAtomic(dst, 0o644, func(f *os.File) error {
		c := hostcmd.Command("ostree", "export", "--repo="+w.RepoDir(), commit)
		c.Stdout = f
		return c.Run(ctx)
	})
	if err != nil {
		return nil, err
	}
	sum, size, err := fileutil.SHA256File(dst)
	if err != nil {
		return nil, err
	}
	return &Artifact{Name: filepath.Base(dst), Size: size, Sha256: sum}, nil
}

// lockFile takes an exclusive flock on path, waiting as long as ctx lets
// it, and says once on log that it waits.
func lockFile(ctx context.Context, path string, log io.Writer) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	err = fileutil.Flock(ctx, f, syscall.LOCK_EX, 10*time.Millisecond, time.Second, func(polls int) {
		if polls == 0 {
			fmt.Fprintf(log, "Waiting for another compose of this blueprint (%s)\n", path)
		}
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// seedPackageCache hard-links into cacheDir the .debs and apt lists other
// blueprints' workdirs under workRoot already hold, so a new blueprint
// downloads only what no compose fetched before: apt keeps an archive
// already in place when its size and hashes match the index, and updates
// lists conditionally. Links are safe to share: apt never writes a .deb or
// a list in place (it downloads into partial/ and renames), so one
// workdir's fetch cannot change another's files. Best effort: anything
// that cannot be linked is simply downloaded.
func seedPackageCache(workRoot, cacheDir string) int {
	others, _ := filepath.Glob(filepath.Join(workRoot, "*", "cache"))
	n := 0
	for _, sub := range []struct{ dir, glob string }{
		{compose.DebsDir(""), "*.deb"},
		{filepath.Join("apt", "var", "lib", "apt", "lists"), "*_*"},
	} {
		dst := filepath.Join(cacheDir, sub.dir)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return n
		}
		for _, o := range others {
			if filepath.Clean(o) == filepath.Clean(cacheDir) {
				continue
			}
			files, _ := filepath.Glob(filepath.Join(o, sub.dir, sub.glob))
			for _, f := range files {
				target := filepath.Join(dst, filepath.Base(f))
				if fi, err := os.Lstat(f); err != nil || !fi.Mode().IsRegular() {
					continue
				}
				if _, err := os.Lstat(target); err == nil {
					continue
				}
				if os.Link(f, target) == nil {
					n++
				}
			}
		}
	}
	return n
}
