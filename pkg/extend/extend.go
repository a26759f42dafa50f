package extend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compress"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/images"
	"github.com/cosa-build/cosa/pkg/ostree"
	"github.com/cosa-build/cosa/pkg/platform"
	"github.com/cosa-build/cosa/pkg/workdir"
)

// Engine returns the pipeline engine for a workdir: objects in
// cache/objects (capped by image.yaml cache-size), scratch in tmp/.
func Engine(w *workdir.Workdir, cfg *config.Config, ev events.Sink, log io.Writer) *images.Engine {
	return &images.Engine{
		Store:   &images.Store{Dir: filepath.Join(w.CacheDir(), "objects"), MaxSize: int64(cfg.Image.CacheSize) << 30},
		Scratch: filepath.Join(w.TmpDir(), "pipeline"),
		Sources: images.Sources{OSTreeRepo: w.RepoDir()},
		Events:  ev,
		Log:     log,
	}
}

// Spec builds the image spec for a commit: kernel arguments are the ones
// the build was made with (commit metadata) plus image.yaml's extra-kargs.
func Spec(ctx context.Context, repo *ostree.Repo, cfg *config.Config, p platform.Platform, commit, ref string) (images.ImageSpec, error) {
	kargs, err := repo.MetadataString(ctx, commit, "cosa.kernel-args")
	if err != nil {
		return images.ImageSpec{}, fmt.Errorf("commit %s: %w", commit[:12], err)
	}
	po := cfg.Image.ForPlatform(p.Name)
	size := cfg.Image.Size
	if po.Size > 0 {
		size = po.Size
	}
	extra := cfg.Image.ExtraKargs
	if po.ExtraKargs != nil {
		extra = po.ExtraKargs
	}
	return images.ImageSpec{
		Commit: commit, Ref: ref, OSName: osName(cfg.Manifest.Name),
		KernelArgs: append(strings.Fields(kargs), extra...), SizeGiB: size, Rootfs: cfg.Image.Rootfs,
		Qcow2Compression: cfg.Image.Qcow2Compression,
	}, nil
}

// osName is the OSTree stateroot: the config name.
func osName(name string) string { return name }

// ArtifactName is <name>-<id>-<platform>.<arch>.<ext> (docs/architecture.md#artifact-names).
func ArtifactName(name, id string, p platform.Platform, arch string) string {
	return fmt.Sprintf("%s-%s-%s.%s.%s", name, id, p.Name, arch, p.Extension)
}

// MakeImage runs the platform's manifest and writes the image into dir
// (temp name, then rename), with its manifest next to it. It returns the
// artifact for meta.json and the engine's result.
func MakeImage(ctx context.Context, en *images.Engine, spec images.ImageSpec, p platform.Platform, dir, name, id, arch string) (*build.Artifact, *images.Result, error) {
	art, res, finish, err := StartImage(ctx, en, spec, p, dir, name, id, arch)
	finish()
	return art, res, err
}

// StartImage is MakeImage, but the raw disk's checksum (see below) may
// still be computing when it returns: finish stops it.
func StartImage(ctx context.Context, en *images.Engine, spec images.ImageSpec, p platform.Platform, dir, name, id, arch string) (_ *build.Artifact, _ *images.Result, finish func(), _ error) {
	m, export, file, err := spec.Manifest(p)
	if err != nil {
		return nil, nil, func() {}, err
	}
	// Every platform is made from the raw disk of the image pipeline, and
	// metal ships that disk as is. Its checksum is worth having before
	// anyone asks, but not worth waiting for: 10 GiB of sha256 for the
	// default image, nearly all of it over holes (6 to 8 s of a core),
	// for an artifact most builds never make. So it is hashed beside the
	// rest of the run, and finish stops it where it got to and keeps that
	// state beside the object: a later buildextend-metal hashes only the
	// rest. (At nice 19 it got 5.6 to 7.4 of the 10.7 GB by the end of a
	// rebuild, at the normal priority 7.6 to 10.2 GB, and the rebuilds
	// took no longer, within the noise of 12 to 16 s.) It reads through a
	// descriptor opened at once, so the object may even be evicted
	// meanwhile, and what it got is recorded only if the object is still
	// the one hashed.
	var hashing sync.WaitGroup
	hctx, stop := context.WithCancel(ctx)
	finish = func() {
		stop()
		hashing.Wait()
	}
	rawPipe := images.DiskPipeline(p)
	prev := en.PipelineDone
	en.PipelineDone = func(pipeline, objID, objDir string) {
		if prev != nil {
			prev(pipeline, objID, objDir)
		}
		if pipeline != rawPipe || pipeline == export {
			return
		}
		known, ok := en.Store.Sum(objID, rawDisk)
		if ok {
			return
		}
		path := filepath.Join(objDir, rawDisk)
		f, st, err := fileutil.OpenStat(path)
		if err != nil {
			return
		}
		hashing.Add(1)
		go func() {
			defer hashing.Done()
			defer f.Close()
			sum, part, err := hashSparseFrom(hctx, f, st.Size(), known.Partial)
			if now, serr := os.Stat(path); err != nil || serr != nil || !os.SameFile(now, st) {
				return
			}
			en.Store.SetSum(objID, rawDisk, images.FileSum{Sha256: sum, Size: st.Size(), Partial: part})
		}()
	}
	defer func() { en.PipelineDone = prev }()
	art, res, err := finishImage(ctx, en, m, export, file, p, dir, name, id, arch)
	return art, res, finish, err
}

func finishImage(ctx context.Context, en *images.Engine, m *images.Manifest, export, file string, p platform.Platform, dir, name, id, arch string) (*build.Artifact, *images.Result, error) {
	res, err := en.Run(ctx, m, []string{export})
	if err != nil {
		return nil, nil, err
	}
	defer res.Close()
	art := ArtifactName(name, id, p, arch)
	mdata, err := m.Marshal()
	if err != nil {
		return nil, nil, err
	}
	// A run killed while writing these leaves temps with random names that
	// no later write would reuse. The artifact's own temp has a fixed name
	// for the same reason: this run is the one writer of this platform's
	// files in this build (another buildextend of the same platform and
	// build would race on them anyway), so both are cleared here.
	manifest := filepath.Join(dir, strings.TrimSuffix(art, "."+p.Extension)+".manifest.json")
	if err := fileutil.RemoveTemps(manifest); err != nil {
		return nil, nil, err
	}
	if err := fileutil.WriteFileAtomic(manifest, mdata, 0o644); err != nil {
		return nil, nil, err
	}
	tmp := filepath.Join(dir, "."+art+".tmp")
	src := filepath.Join(res.Exports[export], file)
	objID := filepath.Base(res.Exports[export])
	var sum string
	var size int64
	os.Remove(tmp)
	if err = os.Link(src, tmp); err == nil {
		// The artifact shares the store object's blocks: objects are
		// written once and never changed (a new image is a new object, and
		// eviction only unlinks), so neither side can alter the other, and
		// a build costs one copy of its image on disk, not two.
		if err = os.Chmod(tmp, 0o644); err == nil {
			sum, size, err = storedSum(en.Store, objID, file, tmp)
		}
	} else if known, ok := en.Store.Sum(objID, file); ok {
		sum, size = known.Sha256, known.Size
		_, err = copySparseChecked(src, tmp, size)
	} else {
		sum, size, err = copySparseHash(src, tmp)
		if err == nil {
			en.Store.SetSum(objID, file, images.FileSum{Sha256: sum, Size: size})
		}
	}
	if err != nil {
		os.Remove(tmp)
		return nil, nil, fmt.Errorf("copying %s: %w", src, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, art)); err != nil {
		return nil, nil, err
	}
	// rename(2) does nothing when both names are links to one inode (a
	// --force rebuild that hit the same cache object): drop the temp name.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	// Lets cosa compress take the sum instead of reading the image again
	// (best effort: without the stamp it hashes).
	compress.StampSum(filepath.Join(dir, art), sum, size)
	a := &build.Artifact{Path: art, Sha256: sum, Size: size}
	// e.g. streamOptimized vmdk (and the ova holding one) is compressed
	// already, and clouds import it as is.
	a.SkipCompression = p.Compressed
	return a, res, nil
}

// storedSum returns the checksum the store keeps for objID's file, or
// hashes path (a link to it), going on from where a stopped hash of it
// got to, and records the result.
func storedSum(st *images.Store, objID, file, path string) (string, int64, error) {
	known, ok := st.Sum(objID, file)
	if ok {
		return known.Sha256, known.Size, nil
	}
	sum, size, err := hashSparse(path, known.Partial)
	if err == nil {
		st.SetSum(objID, file, images.FileSum{Sha256: sum, Size: size})
	}
	return sum, size, err
}

// rawDisk is the file the image pipelines write.
const rawDisk = "disk.raw"

// copySparseChecked copies a file whose checksum the store already holds.
// The size is checked against the record; the content is trusted the way
// the store is trusted (objects are written once, by rename).
func copySparseChecked(src, dst string, want int64) (int64, error) {
	_, n, err := copySparse(src, dst, false)
	if err == nil && n != want {
		err = fmt.Errorf("size %d, the store recorded %d", n, want)
	}
	return n, err
}

// Options configure BuildExtend.
type Options struct {
	Workdir  *workdir.Workdir
	Config   *config.Config
	Dir      *build.Dir
	BuildID  string
	Arch     string
	Platform platform.Platform
	Force    bool
	Events   events.Sink // the pipeline engine's progress
	Log      io.Writer
	Out      io.Writer // the one-line summary
}

// ExtendResult says what BuildExtend did.
type ExtendResult struct {
	// Artifact is the platform's image as meta.json now records it.
	Artifact build.Artifact
	// Added is false when the build already had the image (no --force).
	Added       bool
	Ran, Cached int // stages run, pipelines served from the cache
}

// BuildExtend adds one platform's image to an existing build.
func BuildExtend(ctx context.Context, o Options) (*ExtendResult, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	meta, err := o.Dir.ReadMeta(o.BuildID, o.Arch)
	if err != nil {
		return nil, err
	}
	if a, ok := meta.Images[o.Platform.Name]; ok && !o.Force {
		if _, err := os.Stat(filepath.Join(o.Dir.BuildDir(o.BuildID, o.Arch), a.Path)); err == nil {
			fmt.Fprintf(o.Out, "%s already has a %s image (%s); use --force to rebuild it\n", o.BuildID, o.Platform, a.Path)
			return &ExtendResult{Artifact: a}, nil
		}
	}
	repo, cleanup, err := sourceRepo(ctx, o.Workdir, o.Dir, o.BuildID, o.Arch, meta)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	spec, err := Spec(ctx, repo, o.Config, o.Platform, meta.OSTreeCommit, meta.Ref)
	if err != nil {
		return nil, err
	}
	en := Engine(o.Workdir, o.Config, o.Events, o.Log)
	en.Sources.OSTreeRepo = repo.Path
	t0 := time.Now()
	art, res, err := MakeImage(ctx, en, spec, o.Platform, o.Dir.BuildDir(o.BuildID, o.Arch), meta.Name, o.BuildID, o.Arch)
	if err != nil {
		return nil, err
	}
	var replaced string
	if err := o.Dir.UpdateMeta(ctx, o.BuildID, o.Arch, func(m *build.Meta) error {
		if m.Images == nil {
			m.Images = map[string]build.Artifact{}
		}
		if old, ok := m.Images[o.Platform.Name]; ok && old.Path != art.Path {
			replaced = old.Path
		}
		m.Images[o.Platform.Name] = *art
		return nil
	}); err != nil {
		return nil, err
	}
	// The image replaced one under another name (e.g. --force on a build
	// whose image was compressed): meta.json no longer names the old
	// file, so it goes, now that meta.json is written.
	if replaced != "" && filepath.Base(replaced) == replaced {
		if err := os.Remove(filepath.Join(o.Dir.BuildDir(o.BuildID, o.Arch), replaced)); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	fmt.Fprintf(o.Out, "Added %s to %s (%d stages run, %d pipelines cached, %s)\n", art.Path, o.BuildID, res.Ran, res.Cached, time.Since(t0).Round(100*time.Millisecond))
	return &ExtendResult{Artifact: *art, Added: true, Ran: res.Ran, Cached: res.Cached}, nil
}

// sourceRepo is the workdir repo if it still has the commit, else the
// build's own exported archive repo, unpacked to a temp dir.
func sourceRepo(ctx context.Context, w *workdir.Workdir, d *build.Dir, id, arch string, meta *build.Meta) (*ostree.Repo, func(), error) {
	repo := &ostree.Repo{Path: w.RepoDir()}
	if _, err := repo.Show(ctx, meta.OSTreeCommit); err == nil {
		return repo, func() {}, nil
	}
	a, ok := meta.Images["ostree"]
	if !ok {
		// %.12s, not [:12]: a short commit must be an error, not a panic.
		return nil, nil, fmt.Errorf("build %s: commit %.12s is not in %s and the build has no ostree artifact", id, meta.OSTreeCommit, w.RepoDir())
	}
	// The archive of a fetched build is unpacked only if it is the one
	// meta.json describes.
	archive, err := d.VerifyArtifact(ctx, id, arch, "ostree", a)
	if err != nil {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp(w.TmpDir(), "ostree-import-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	if err := hostcmd.Run(ctx, "tar", untarSafe("-xf", archive, "-C", tmp)...); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("unpacking %s: %w", a.Path, err)
	}
	return &ostree.Repo{Path: tmp}, cleanup, nil
}

// untarSafe prefixes tar arguments for unpacking an archive that may have
// come from a bucket: an archive repo needs no owners or special modes
// (its objects carry their own metadata), so none are taken from it, and
// GNU tar already refuses members that climb out through ".." or links.
func untarSafe(args ...string) []string {
	return append([]string{"--no-same-owner", "--no-same-permissions"}, args...)
}
