package compress

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/fileutil"
)

// Options configure Compress and Decompress.
type Options struct {
	// Algorithm is the format Compress writes; Decompress ignores it
	// (each file's suffix says what it is).
	Algorithm Algorithm
	// Fast selects the fastest compression level.
	Fast bool
	// Threads for compression and decompression; 0 means one per CPU.
	Threads int
	// Artifacts restricts the run to these images keys (e.g. "qemu").
	// Empty means every artifact, except that Compress leaves the
	// "ostree" artifact alone unless it is named here.
	Artifacts []string
	// Report, if set, is called once per artifact considered, as soon as
	// it is done with.
	Report func(Result)
}

// Actions in a Result.
const (
	ActionCompressed   = "compressed"
	ActionDecompressed = "decompressed"
	ActionSkipped      = "skipped"
)

// Result describes what happened to one artifact.
type Result struct {
	Artifact string  `json:"artifact"`          // images key
	Action   string  `json:"action"`            // compressed, decompressed, skipped
	Reason   string  `json:"reason,omitempty"`  // why it was skipped
	From     string  `json:"from,omitempty"`    // path before, relative to the build's arch dir
	To       string  `json:"to,omitempty"`      // path after
	Resumed  bool    `json:"resumed,omitempty"` // a complete file left by an interrupted run was verified and used
	Size     int64   `json:"size,omitempty"`    // uncompressed bytes
	CompSize int64   `json:"compressed_size,omitempty"`
	Seconds  float64 `json:"seconds,omitempty"`

	hashedInput bool // Compress read the input to check meta.json's sha256 (no valid stamp)
}

// MBps is the throughput in uncompressed megabytes (10^6 bytes) per second.
func (r Result) MBps() float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return float64(r.Size) / 1e6 / r.Seconds
}

// UnknownArtifactError is returned when Options.Artifacts names an
// artifact the build does not have.
type UnknownArtifactError struct {
	BuildID string
	Names   []string // the unknown names
	Known   []string // the build's images keys
}

func (e *UnknownArtifactError) Error() string {
	return fmt.Sprintf("build %s has no artifact %s (it has: %s)", e.BuildID,
		strings.Join(e.Names, ", "), strings.Join(e.Known, ", "))
}

// ErrBusy is returned when another compress or decompress is working on
// the same build.
var ErrBusy = errors.New("another cosa compress or decompress is running on this build")

// op is one run of Compress or Decompress on a build.
type op struct {
	d        *build.Dir
	id, arch string
	dir      string // builds/<id>/<arch>
	o        Options
	so       StreamOptions
}

func newOp(d *build.Dir, id, arch string, o Options) *op {
	return &op{d: d, id: id, arch: arch, dir: d.BuildDir(id, arch), o: o,
		so: StreamOptions{Fast: o.Fast, Threads: o.Threads}}
}

// Compress compresses the artifacts of build id/arch with o.Algorithm.
//
// Every artifact is done on its own: the compressed file is written under
// a temporary name and renamed into place, then meta.json is updated (under
// the builds/ lock, re-reading it first) to point at it, and only then is
// the original removed. meta.json never names a missing file, and running
// Compress again after an interruption finishes the job: leftover
// temporary files are removed, a complete compressed file that meta.json
// does not point at yet is verified (by decompressing it and comparing with
// the original's sha256) and used, and originals left behind after
// meta.json was updated are removed.
//
// Skipped: artifacts with skip-compression, artifacts whose path already
// ends in .gz, .xz or .zst, and the "ostree" artifact unless it is named in
// o.Artifacts.
func Compress(ctx context.Context, d *build.Dir, id, arch string, o Options) ([]Result, error) {
	if _, err := ParseAlgorithm(string(o.Algorithm)); err != nil {
		return nil, err
	}
	if err := NeedTool(o.Algorithm); err != nil {
		return nil, err
	}
	p := newOp(d, id, arch, o)
	return p.run(ctx, true)
}

// Decompress reverses Compress for build id/arch: every artifact that
// Compress made (path ending in .gz, .xz or .zst and an
// uncompressed-sha256 recorded) is decompressed to its original name, runs
// of zeros becoming holes. The result must match uncompressed-sha256 and
// uncompressed-size, or Decompress fails, leaving the compressed file and
// meta.json as they were. It is resumable in the same way as Compress.
func Decompress(ctx context.Context, d *build.Dir, id, arch string, o Options) ([]Result, error) {
	p := newOp(d, id, arch, o)
	return p.run(ctx, false)
}

func (p *op) run(ctx context.Context, compress bool) ([]Result, error) {
	meta, err := p.d.ReadMeta(p.id, p.arch)
	if err != nil {
		return nil, err
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range meta.Images {
			if !yield(k) {
				return
			}
		}
	})
	var unknown []string
	for _, n := range p.o.Artifacts {
		if _, ok := meta.Images[n]; !ok && !slices.Contains(unknown, n) {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return nil, &UnknownArtifactError{BuildID: p.id, Names: unknown, Known: names}
	}
	selected := names
	if len(p.o.Artifacts) > 0 {
		selected = nil
		for _, n := range names {
			if slices.Contains(p.o.Artifacts, n) {
				selected = append(selected, n)
			}
		}
	}

	unlock, err := lockDir(p.dir)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", p.id, err)
	}
	defer unlock()

	var results []Result
	for _, name := range selected {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		// Re-read for every artifact: other processes (buildextend-*)
		// may update meta.json between our own updates.
		meta, err := p.d.ReadMeta(p.id, p.arch)
		if err != nil {
			return results, err
		}
		a, ok := meta.Images[name]
		if !ok {
			continue // removed meanwhile
		}
		if err := build.CheckArtifactPath(a.Path); err != nil {
			return results, fmt.Errorf("build %s: artifact %s: %w", p.id, name, err)
		}
		var r Result
		if compress {
			r, err = p.compressOne(ctx, meta, name, a)
		} else {
			r, err = p.decompressOne(ctx, meta, name, a)
		}
		if err != nil {
			return results, err
		}
		results = append(results, r)
		if p.o.Report != nil {
			p.o.Report(r)
		}
	}
	return results, nil
}

func skipped(name, path, reason string) Result {
	return Result{Artifact: name, Action: ActionSkipped, From: path, Reason: reason}
}

func (p *op) compressOne(ctx context.Context, meta *build.Meta, name string, a build.Artifact) (Result, error) {
	explicit := slices.Contains(p.o.Artifacts, name)
	switch {
	case a.SkipCompression:
		return skipped(name, a.Path, "skip-compression is set"), nil
	case IsCompressed(a.Path):
		// A crash after meta.json was updated leaves the original
		// (only for files we compressed: a natively compressed
		// artifact such as a .tar.gz has no uncompressed-sha256).
		if alg, _ := FromPath(a.Path); a.UncompressedSha256 != "" {
			if err := p.removeStale(meta, strings.TrimSuffix(a.Path, alg.Suffix())); err != nil {
				return Result{}, err
			}
		}
		return skipped(name, a.Path, "already compressed"), nil
	case name == "ostree" && !explicit:
		return skipped(name, a.Path, "the ostree artifact is only compressed when named with --artifact"), nil
	}

	t0 := time.Now()
	suffix := p.o.Algorithm.Suffix()
	srcRel, dstRel := a.Path, a.Path+suffix
	src, dst := p.abs(srcRel), p.abs(dstRel)
	if err := p.cleanup(meta, srcRel); err != nil {
		return Result{}, err
	}
	res := Result{Artifact: name, Action: ActionCompressed, From: srcRel, To: dstRel, Size: a.Size}

	var compSum string
	var compSize int64
	if sum, size, ok := p.adoptCompressed(ctx, dst, a); ok {
		compSum, compSize, res.Resumed = sum, size, true
	} else {
		if err := p.removeStale(meta, dstRel); err != nil {
			return Result{}, err
		}
		sum, size, hashed, err := p.compressFile(ctx, name, src, dst, a)
		if err != nil {
			return Result{}, err
		}
		compSum, compSize, res.hashedInput = sum, size, hashed
	}
	res.CompSize = compSize

	return p.switchTo(ctx, name, a, res, t0, func(cur *build.Artifact) {
		cur.Path = dstRel
		cur.Sha256 = compSum
		cur.Size = compSize
		cur.UncompressedSha256 = a.Sha256
		cur.UncompressedSize = a.Size
	})
}

func (p *op) decompressOne(ctx context.Context, meta *build.Meta, name string, a build.Artifact) (Result, error) {
	alg, ok := FromPath(a.Path)
	if a.SkipCompression || !ok || a.UncompressedSha256 == "" {
		// Clean up after a decompress that stopped between updating
		// meta.json and removing the compressed file.
		if !IsCompressed(a.Path) && !a.SkipCompression {
			if err := p.cleanup(meta, a.Path); err != nil {
				return Result{}, err
			}
		}
		reason := "not compressed"
		if ok {
			reason = "not made by cosa compress (no uncompressed-sha256)"
		}
		return skipped(name, a.Path, reason), nil
	}
	t0 := time.Now()
	srcRel := a.Path
	dstRel := strings.TrimSuffix(srcRel, alg.Suffix())
	src, dst := p.abs(srcRel), p.abs(dstRel)
	res := Result{Artifact: name, Action: ActionDecompressed, From: srcRel, To: dstRel, Size: a.UncompressedSize, CompSize: a.Size}
	if err := p.removeTemps(dstRel); err != nil {
		return Result{}, err
	}

	if p.adoptPlain(dst, a) {
		res.Resumed = true
	} else {
		if err := p.removeStale(meta, dstRel); err != nil {
			return Result{}, err
		}
		if err := p.decompressFile(ctx, name, alg, src, dst, a); err != nil {
			return Result{}, err
		}
	}
	return p.switchTo(ctx, name, a, res, t0, func(cur *build.Artifact) {
		cur.Path = dstRel
		cur.Sha256 = a.UncompressedSha256
		cur.Size = a.UncompressedSize
		cur.UncompressedSha256 = ""
		cur.UncompressedSize = 0
	})
}

// switchTo points images[name] at res.To (set fills in the entry), removes
// res.From, which the entry no longer names, and completes res.
func (p *op) switchTo(ctx context.Context, name string, a build.Artifact, res Result, t0 time.Time, set func(*build.Artifact)) (Result, error) {
	if err := p.updateMeta(ctx, name, a, res.To, set); err != nil {
		return Result{}, err
	}
	if err := p.removeStale(nil, res.From); err != nil {
		return Result{}, err
	}
	res.Seconds = time.Since(t0).Seconds()
	return res, nil
}

// errChanged says meta.json changed under us.
var errChanged = errors.New("changed in meta.json while we worked on it (another cosa process?); run again")

// updateMeta points images[name] at newRel via set, provided the entry is
// still the one we started from. If it is not, the file we just made is
// removed again (nothing refers to it) and an error returned.
func (p *op) updateMeta(ctx context.Context, name string, was build.Artifact, newRel string, set func(*build.Artifact)) error {
	err := p.d.UpdateMeta(ctx, p.id, p.arch, func(m *build.Meta) error {
		cur, ok := m.Images[name]
		if !ok || cur.Path != was.Path || cur.Sha256 != was.Sha256 {
			return fmt.Errorf("artifact %s %w", name, errChanged)
		}
		set(&cur)
		m.Images[name] = cur
		return nil
	})
	if errors.Is(err, errChanged) {
		if m, rerr := p.d.ReadMeta(p.id, p.arch); rerr == nil && !referenced(m, newRel) {
			os.Remove(p.abs(newRel))
		}
	}
	return err
}

// compressFile writes dst from src, checking that src is what meta.json
// says, and returns dst's sha256 and size. hashed reports whether src was
// read to check that, or trusted on a valid sum stamp (stamp.go).
func (p *op) compressFile(ctx context.Context, name, src, dst string, a build.Artifact) (sum string, size int64, hashed bool, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", 0, false, fmt.Errorf("compressing %s: %w", name, err)
	}
	defer in.Close()
	so := p.so
	so.InProcess = isSparse(in) || (p.o.Algorithm == Zstd && mostlyIncompressible(in))
	stamped, trusted := stampedSum(in, a.Sha256, a.Size)
	inHash := newHashCounter()
	outHash := newHashCounter()
	err = writeReplace(dst, func(f *os.File) error {
		if !usesTool(p.o.Algorithm, so) {
			out := teeWriter{&writebackWriter{f: f}, outHash}
			r := io.Reader(in)
			if !trusted {
				r = io.TeeReader(in, inHash)
			}
			return CompressStream(ctx, p.o.Algorithm, out, r, so)
		}
		// An external compressor reads the file itself: through a Go pipe
		// (with the input hashed on the way) zstd ran at 0.55x its own
		// speed on 2 CPUs. Unless a stamp vouches for it, the input is
		// hashed against meta.json on the side with positioned reads (the
		// tool's file offset is not moved). It writes the output file
		// itself too: copying and hashing its output through a pipe of
		// our own competed with zstd -T2 for the 2 CPUs (5.0 s against
		// 3.5 s for the default 876 MB qcow2). The output is hashed from
		// the page cache as it grows instead (followWrites).
		inDone := make(chan error, 1)
		if trusted {
			inDone <- nil
		} else {
			go func() {
				_, err := io.CopyBuffer(inHash, fileutil.ContextReader(ctx, io.NewSectionReader(in, 0, 1<<62)), make([]byte, 1<<20))
				inDone <- err
			}()
		}
		follow := followWrites(ctx, f, outHash)
		err := CompressStream(ctx, p.o.Algorithm, f, in, so)
		if herr := <-inDone; err == nil {
			err = herr
		}
		if ferr := follow.finish(); err == nil {
			err = ferr
		}
		return err
	}, func() error {
		if !trusted {
			return checkSum(filepath.Base(src), inHash, a.Sha256, a.Size, "sha256", "size")
		}
		// A write while it was being compressed moves the mtime (the
		// stamp is older than a clock tick).
		if ft, err := fstatTimes(in); err != nil || ft != stamped {
			return fmt.Errorf("%s was written to while it was compressed", filepath.Base(src))
		}
		return nil
	})
	if err != nil {
		return "", 0, false, fmt.Errorf("compressing %s (%s): %w", name, filepath.Base(src), err)
	}
	return outHash.sum(), outHash.n, !trusted, nil
}

// decompressFile writes dst from src, checking both against meta.json.
func (p *op) decompressFile(ctx context.Context, name string, alg Algorithm, src, dst string, a build.Artifact) error {
	if err := NeedTool(alg); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("decompressing %s: %w", name, err)
	}
	defer in.Close()
	inHash := newHashCounter()
	outHash := newHashCounter()
	var written int64 // dst's mtime after the last write
	err = writeReplace(dst, func(f *os.File) error {
		sw := &sparseWriter{f: f}
		tee := io.TeeReader(in, inHash)
		if err := DecompressStream(ctx, alg, io.MultiWriter(outHash, sw), tee, p.so); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, tee); err != nil { // hash all of it
			return err
		}
		if err := sw.Finish(); err != nil {
			return err
		}
		ft, err := fstatTimes(f)
		written = ft.mtimeNs
		return err
	}, func() error {
		if err := checkSum(filepath.Base(src), inHash, a.Sha256, a.Size, "sha256", "size"); err != nil {
			return err
		}
		return checkSum("its decompressed content", outHash, a.UncompressedSha256, a.UncompressedSize, "uncompressed-sha256", "uncompressed-size")
	})
	if err != nil {
		return fmt.Errorf("decompressing %s (%s): %w; %s and meta.json are unchanged", name, filepath.Base(src), err, filepath.Base(src))
	}
	// Its content was verified as it was written: a later compress can
	// take uncompressed-sha256 without reading it again. Best effort.
	stampSum(dst, a.UncompressedSha256, a.UncompressedSize, written)
	return nil
}

// isSparse reports whether less than half of f is allocated on disk.
func isSparse(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Size() > 0 && st.Blocks*512 < fi.Size()/2
}

// adoptCompressed checks a compressed file left by an interrupted run
// (meta.json still names the original): if it decompresses to exactly the
// original it is used, and its sha256 and size are returned.
func (p *op) adoptCompressed(ctx context.Context, dst string, a build.Artifact) (string, int64, bool) {
	f, err := os.Open(dst)
	if err != nil {
		return "", 0, false
	}
	defer f.Close()
	compHash, plainHash := newHashCounter(), newHashCounter()
	tee := io.TeeReader(f, compHash)
	if err := DecompressStream(ctx, p.o.Algorithm, plainHash, tee, p.so); err != nil {
		return "", 0, false
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return "", 0, false
	}
	if plainHash.sum() != a.Sha256 || plainHash.n != a.Size {
		return "", 0, false
	}
	return compHash.sum(), compHash.n, true
}

// adoptPlain checks a decompressed file left by an interrupted decompress
// (meta.json still names the compressed one).
func (p *op) adoptPlain(dst string, a build.Artifact) bool {
	f, err := os.Open(dst)
	if err != nil {
		return false
	}
	defer f.Close()
	h := newHashCounter()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	return h.sum() == a.UncompressedSha256 && h.n == a.UncompressedSize
}

// cleanup removes what an interrupted run may have left next to the
// uncompressed artifact rel, which meta.json names: temporary files, and
// compressed copies meta.json does not name (except the one for our own
// algorithm when compressing, which compressOne may verify and use).
func (p *op) cleanup(meta *build.Meta, rel string) error {
	if err := p.removeTemps(rel); err != nil {
		return err
	}
	for _, a := range Algorithms {
		if err := p.removeTemps(rel + a.Suffix()); err != nil {
			return err
		}
		if p.o.Algorithm == a {
			continue
		}
		if err := p.removeStale(meta, rel+a.Suffix()); err != nil {
			return err
		}
	}
	return nil
}

// removeStale removes the artifact file rel unless meta.json (re-read when
// meta is nil) names it.
func (p *op) removeStale(meta *build.Meta, rel string) error {
	if meta == nil {
		m, err := p.d.ReadMeta(p.id, p.arch)
		if err != nil {
			return err
		}
		meta = m
	}
	if referenced(meta, rel) {
		return nil
	}
	err := os.Remove(p.abs(rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return fileutil.SyncDir(filepath.Dir(p.abs(rel)))
}

// removeTemps removes our temporary files for rel (".NAME.tmp-*"). The
// directory lock makes sure no other compress/decompress is writing them.
func (p *op) removeTemps(rel string) error {
	return fileutil.RemoveTemps(p.abs(rel))
}

func referenced(m *build.Meta, rel string) bool {
	for _, a := range m.Images {
		if filepath.Clean(a.Path) == filepath.Clean(rel) {
			return true
		}
	}
	return false
}

func (p *op) abs(rel string) string { return filepath.Join(p.dir, rel) }

// writeReplace creates path through a temporary file in the same
// directory: fill writes it, check (run after fill succeeded) may veto it,
// then it is synced, made 0644 and renamed into place, and the directory
// synced. On any failure the temporary file is removed and path untouched.
func writeReplace(path string, fill func(*os.File) error, check func() error) error {
	return fileutil.WriteAtomic(path, 0o644, func(f *os.File) error {
		if err := fill(f); err != nil {
			return err
		}
		return check()
	})
}

// lockDir takes a non-blocking exclusive flock on the build's arch
// directory itself (no lock file to leave behind). It is separate from the
// builds/.lock that guards meta.json, which we only hold for moments.
func lockDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// hashCounter is a sha256 that also counts bytes.
type hashCounter struct {
	h hash.Hash
	n int64
}

func newHashCounter() *hashCounter { return &hashCounter{h: sha256.New()} }

func (c *hashCounter) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n += int64(len(p))
	return len(p), nil
}

func (c *hashCounter) sum() string { return hex.EncodeToString(c.h.Sum(nil)) }

func checkSum(what string, got *hashCounter, wantSum string, wantSize int64, sumKey, sizeKey string) error {
	if s := got.sum(); s != wantSum {
		return fmt.Errorf("%s has sha256 %s but meta.json %s is %s", what, s, sumKey, wantSum)
	}
	if got.n != wantSize {
		return fmt.Errorf("%s is %d bytes but meta.json %s is %d", what, got.n, sizeKey, wantSize)
	}
	return nil
}
