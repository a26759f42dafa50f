package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/fileutil"
)

// ErrNotFound is returned (wrapped) by Source.Open for a missing object.
var ErrNotFound = errors.New("not found")

// Source is somewhere builds can be fetched from: a tree laid out like
// builds/ (builds.json, <id>/<arch>/<file>).
type Source interface {
	// Open returns the object at rel (slash-separated) and its size, or
	// -1 if unknown.
	Open(ctx context.Context, rel string) (io.ReadCloser, int64, error)
	// URL names rel for messages.
	URL(rel string) string
}

// NewSource parses s3://BUCKET/PREFIX, http(s)://..., file://... or a path.
// s3cfg is used only for s3:// URLs.
func NewSource(ctx context.Context, raw string, s3cfg S3Config) (Source, error) {
	switch {
	case strings.HasPrefix(raw, "s3://"):
		loc, err := ParseS3Location(raw)
		if err != nil {
			return nil, err
		}
		c, err := NewS3Client(ctx, s3cfg)
		if err != nil {
			return nil, err
		}
		return &S3Source{Client: c, Loc: loc}, nil
	case strings.HasPrefix(raw, "http://"), strings.HasPrefix(raw, "https://"):
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("invalid URL %q", RedactURL(raw))
		}
		return &HTTPSource{Base: strings.TrimRight(raw, "/")}, nil
	case strings.HasPrefix(raw, "file://"):
		u, err := url.Parse(raw)
		if err != nil || (u.Host != "" && u.Host != "localhost") || u.Path == "" {
			return nil, fmt.Errorf("invalid file URL %q: want file:///ABSOLUTE/PATH", raw)
		}
		return &FileSource{Root: filepath.Clean(u.Path)}, nil
	case strings.Contains(raw, "://"):
		return nil, fmt.Errorf("unsupported URL %q: want s3://, http(s)://, file:// or a path", RedactURL(raw))
	case raw == "":
		return nil, fmt.Errorf("no URL given")
	}
	return &FileSource{Root: filepath.Clean(raw)}, nil
}

// S3Source reads from a bucket.
type S3Source struct {
	Client *s3.Client
	Loc    S3Location
}

func (s *S3Source) URL(rel string) string { return s.Loc.URL(rel) }

func (s *S3Source) Open(ctx context.Context, rel string) (io.ReadCloser, int64, error) {
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Loc.Bucket), Key: aws.String(s.Loc.Key(rel))})
	if isNotFound(err) {
		return nil, 0, fmt.Errorf("%s: %w", s.URL(rel), ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", s.URL(rel), err)
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	return out.Body, size, nil
}

// HTTPSource reads over plain HTTP(S) GETs, e.g. from a bucket's public
// website or any static file server. A user:password in Base is sent as
// basic auth and never shown: URL gives the redacted form.
type HTTPSource struct {
	Base   string
	Client *http.Client // nil: http.DefaultClient
}

func (s *HTTPSource) URL(rel string) string { return RedactURL(s.Base) + "/" + rel }

func (s *HTTPSource) Open(ctx context.Context, rel string) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Base+"/"+rel, nil)
	if err != nil {
		// Its message quotes the URL, password and all.
		return nil, 0, fmt.Errorf("%s: invalid URL", s.URL(rel))
	}
	c := s.Client
	if c == nil {
		c = httpClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return resp.Body, resp.ContentLength, nil
	case resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusForbidden && strings.HasSuffix(rel, ".json"):
		// S3 answers 403 for missing keys when listing is not public.
		resp.Body.Close()
		return nil, 0, fmt.Errorf("%s: %w", s.URL(rel), ErrNotFound)
	}
	resp.Body.Close()
	return nil, 0, fmt.Errorf("GET %s: %s", s.URL(rel), resp.Status)
}

// ConnectTimeout bounds opening a connection (TCP and TLS) to an
// http(s):// source.
const ConnectTimeout = 30 * time.Second

// httpClient is HTTPSource's default. It has no overall timeout, which
// would cut off big artifacts on slow links; the idle timeout of a fetch
// catches a server that stops sending instead.
var httpClient = &http.Client{Transport: &http.Transport{
	Proxy:               http.ProxyFromEnvironment,
	DialContext:         (&net.Dialer{Timeout: ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout: ConnectTimeout,
	ForceAttemptHTTP2:   true,
	MaxIdleConns:        10,
	IdleConnTimeout:     90 * time.Second,
	// Artifacts are checked byte for byte against meta.json: a server
	// that sends a .gz with Content-Encoding: gzip must not have it
	// unpacked on the way.
	DisableCompression: true,
}}

// FileSource reads a local directory (another workdir's builds/, a mounted
// bucket, a copy on a share).
type FileSource struct{ Root string }

func (s *FileSource) URL(rel string) string { return filepath.Join(s.Root, filepath.FromSlash(rel)) }

func (s *FileSource) Open(ctx context.Context, rel string) (io.ReadCloser, int64, error) {
	f, fi, err := fileutil.OpenStat(s.URL(rel))
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, fmt.Errorf("%s: %w", s.URL(rel), ErrNotFound)
	}
	if err != nil {
		return nil, 0, err
	}
	if fi.IsDir() {
		f.Close()
		return nil, 0, fmt.Errorf("%s is a directory", s.URL(rel))
	}
	return f, fi.Size(), nil
}

// FetchOptions describes one buildfetch run.
type FetchOptions struct {
	Source Source
	Dir    *build.Dir
	// Build is the id to fetch; "" or "latest" is the newest build in the
	// source's builds.json.
	Build string
	Arch  string
	// Artifacts are images.* names to download besides the JSON files;
	// "all" means every image.
	Artifacts []string
	// Force overwrites a local build whose meta.json differs and
	// re-downloads artifacts already present.
	Force bool
	// IdleTimeout fails a download that receives nothing for that long,
	// from the request (connecting included) to the last byte, so that a
	// stalled server cannot hold the builds/ lock; 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	Events      events.Sink // progress; nil: none
}

// DefaultIdleTimeout is FetchOptions.IdleTimeout's default.
const DefaultIdleTimeout = 60 * time.Second

// FetchResult says what a fetch did.
type FetchResult struct {
	BuildID, Arch string
	Fetched       int
	Kept          int
	Bytes         int64
	Elapsed       time.Duration
}

const maxJSONSize = 64 << 20

// Fetch downloads a build's metadata (and chosen artifacts) into o.Dir and
// merges the source's builds.json into the local one, all under the
// builds/ lock. Artifacts are verified against meta.json's sha256 and size.
// The whole builds/<id>/<arch> is assembled in a hidden staging directory
// under builds/ and swapped in by renames only when everything is there,
// so a failed fetch leaves the local build as it was.
func Fetch(ctx context.Context, o FetchOptions) (*FetchResult, error) {
	var res *FetchResult
	err := o.Dir.WithLock(ctx, "buildfetch", func() error {
		var err error
		res, err = fetchLocked(ctx, o)
		return err
	})
	return res, err
}

func (o *FetchOptions) emit(e events.Event) { events.Emit(o.Events, e) }

func readAllFrom(ctx context.Context, src Source, rel string) ([]byte, error) {
	rc, size, err := src.Open(ctx, rel)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > maxJSONSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", src.URL(rel), maxJSONSize)
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxJSONSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", src.URL(rel), err)
	}
	if len(data) > maxJSONSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", src.URL(rel), maxJSONSize)
	}
	return data, nil
}

func fetchLocked(ctx context.Context, o FetchOptions) (_ *FetchResult, err error) {
	start := time.Now()
	ok := false
	idle := o.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	src := idleSource{o.Source, idle}
	recoverStaging(o.Dir)
	data, err := readAllFrom(ctx, src, build.IndexFile)
	if err != nil {
		return nil, err
	}
	remoteIdx, err := parseIndex(src.URL(build.IndexFile), data)
	if err != nil {
		return nil, err
	}
	id := o.Build
	if id == "" || id == "latest" {
		if len(remoteIdx.Builds) == 0 {
			return nil, fmt.Errorf("%s lists no builds", src.URL(build.IndexFile))
		}
		id = remoteIdx.Builds[0].ID
	} else if err := build.ValidBuildID(id); err != nil {
		return nil, err
	}
	entry := remoteIdx.Find(id)
	if entry == nil {
		return nil, fmt.Errorf("build %s is not in %s", id, src.URL(build.IndexFile))
	}
	if !slices.Contains(entry.Arches, o.Arch) {
		return nil, fmt.Errorf("build %s has no %s build at %s (arches: %s)", id, o.Arch, src.URL(build.IndexFile), strings.Join(entry.Arches, ", "))
	}
	res := &FetchResult{BuildID: id, Arch: o.Arch}
	base := id + "/" + o.Arch + "/"

	metaData, err := readAllFrom(ctx, src, base+build.MetaFile)
	if err != nil {
		return nil, err
	}
	// Validated before anything uses it: its paths, sums and commit come
	// from a source cosa may not have written.
	m, err := build.ParseMeta(src.URL(base+build.MetaFile), metaData)
	if err != nil {
		return nil, err
	}
	if m.BuildID != id {
		return nil, fmt.Errorf("%s: buildid %q does not match build %s", src.URL(base+build.MetaFile), m.BuildID, id)
	}
	if m.BaseArch != "" && m.BaseArch != o.Arch {
		return nil, fmt.Errorf("%s: coreos-assembler.basearch %q does not match arch %s", src.URL(base+build.MetaFile), m.BaseArch, o.Arch)
	}
	metaPath := o.Dir.MetaPath(id, o.Arch)
	sameBuild := false
	if local, err := os.ReadFile(metaPath); err == nil && !bytes.Equal(local, metaData) && !o.Force {
		return nil, fmt.Errorf("local build %s/%s differs from %s (its meta.json is not the same); use --force to overwrite it",
			id, o.Arch, src.URL(base+build.MetaFile))
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	} else {
		sameBuild = err == nil && bytes.Equal(local, metaData)
	}

	names := make([]string, 0, len(m.Images))
	for n := range m.Images {
		names = append(names, n)
	}
	sort.Strings(names)
	var want []string
	for _, a := range o.Artifacts {
		if a == "all" {
			want = names
			break
		}
		if _, ok := m.Images[a]; !ok {
			return nil, fmt.Errorf("build %s/%s has no artifact %q (has: %s)", id, o.Arch, a, strings.Join(names, ", "))
		}
		if !slices.Contains(want, a) {
			want = append(want, a)
		}
	}

	// Read before anything is downloaded: a local builds.json we could
	// not write back should fail the fetch while nothing has changed.
	localIdx, err := o.Dir.ReadIndex()
	if err != nil {
		return nil, err
	}

	archDir := o.Dir.BuildDir(id, o.Arch)
	st, err := newStaging(o.Dir, id, o.Arch)
	if err != nil {
		return nil, err
	}
	defer st.remove()
	if sameBuild {
		// Adding artifacts to the same build keeps everything it has.
		if err := linkTree(archDir, st.new); err != nil {
			return nil, err
		}
	}

	for _, name := range want {
		a := m.Images[name]
		rel, err := cleanRel(a.Path)
		if err != nil {
			return nil, fmt.Errorf("artifact %s: %w", name, err)
		}
		have := filepath.Join(archDir, filepath.FromSlash(rel))
		dst := filepath.Join(st.new, filepath.FromSlash(rel))
		if !o.Force {
			if sum, size, err := fileutil.SHA256File(have); err == nil && sum == a.Sha256 && size == a.Size {
				if !sameBuild {
					if err := linkFile(have, dst); err != nil {
						return nil, err
					}
				}
				res.Kept++
				o.emit(events.Event{Type: events.Object, Action: "kept", Object: have, Bytes: size, Message: "already present, sha256 matches"})
				continue
			}
		}
		n, d, err := downloadVerified(ctx, src, base+rel, dst, a.Sha256, a.Size, "artifact "+name)
		if err != nil {
			return nil, err
		}
		res.Fetched++
		res.Bytes += n
		o.emit(transferEvent("fetched", src.URL(base+rel), n, d))
	}
	for _, f := range []string{CommitMetaFile, PkgListFile} {
		t0 := time.Now()
		b, err := readAllFrom(ctx, src, base+f)
		if errors.Is(err, ErrNotFound) {
			o.emit(events.Event{Type: events.Warning, Message: fmt.Sprintf("%s does not exist; skipping it", src.URL(base+f))})
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := fileutil.WriteFileAtomic(filepath.Join(st.new, f), b, 0o644); err != nil {
			return nil, err
		}
		res.Fetched++
		res.Bytes += int64(len(b))
		o.emit(transferEvent("fetched", src.URL(base+f), int64(len(b)), time.Since(t0)))
	}
	if err := fileutil.WriteFileAtomic(filepath.Join(st.new, build.MetaFile), metaData, 0o644); err != nil {
		return nil, err
	}
	res.Fetched++
	res.Bytes += int64(len(metaData))
	o.emit(events.Event{Type: events.Object, Action: "fetched", Object: src.URL(base + build.MetaFile), Bytes: int64(len(metaData))})

	undo, err := st.swapIn(archDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if !ok {
			undo()
		}
	}()
	// The source's builds stay listed even if not on disk (`cosa list`
	// shows them so); local tags win over remote ones of the same name.
	if MergeIndex(localIdx, remoteIdx.Builds, remoteIdx.Tags, false) {
		if err := o.Dir.WriteIndex(localIdx); err != nil {
			return nil, err
		}
	}
	for _, b := range localIdx.Builds {
		if o.Dir.HasBuild(b.ID) {
			if b.ID == id {
				if err := o.Dir.SetLatest(id); err != nil {
					return nil, err
				}
			}
			break
		}
	}
	res.Elapsed = time.Since(start)
	ok = true
	return res, nil
}

const tempMarker = ".fetch-"

// staging is where a fetch assembles builds/<id>/<arch>: builds/.fetch-XXXX
// holding new/ (the build as it will be), old/ (the local build, moved
// aside during the swap) and target ("<id>/<arch>", for recoverStaging).
type staging struct{ dir, new, old string }

func newStaging(d *build.Dir, id, arch string) (*staging, error) {
	dir, err := os.MkdirTemp(d.Root, tempMarker)
	if err != nil {
		return nil, err
	}
	st := &staging{dir: dir, new: filepath.Join(dir, "new"), old: filepath.Join(dir, "old")}
	if err := os.WriteFile(filepath.Join(dir, "target"), []byte(id+"/"+arch), 0o644); err != nil {
		st.remove()
		return nil, err
	}
	if err := os.Mkdir(st.new, 0o755); err != nil {
		st.remove()
		return nil, err
	}
	return st, nil
}

func (st *staging) remove() { os.RemoveAll(st.dir) }

// swapIn moves the local build (if any) aside and the staged one into
// archDir, and returns how to put the local build back. Both renames stay
// inside builds/, so each is atomic; a crash between them is repaired by
// recoverStaging.
func (st *staging) swapIn(archDir string) (undo func(), err error) {
	buildDir := filepath.Dir(archDir)
	_, statErr := os.Stat(buildDir)
	newBuild := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(buildDir, 0o755); err != nil {
		return nil, err
	}
	hadOld := true
	if err := os.Rename(archDir, st.old); errors.Is(err, os.ErrNotExist) {
		hadOld = false
	} else if err != nil {
		return nil, fmt.Errorf("moving the local build aside: %w", err)
	}
	undo = func() {
		os.Rename(archDir, st.new)
		if hadOld {
			os.Rename(st.old, archDir)
		}
		if newBuild {
			os.Remove(buildDir)
		}
		fileutil.SyncDir(buildDir)
	}
	if err := os.Rename(st.new, archDir); err != nil {
		undo()
		return nil, fmt.Errorf("moving the fetched build into place: %w", err)
	}
	return undo, fileutil.SyncDir(buildDir)
}

// recoverStaging removes what interrupted fetches left under builds/ (we
// hold the lock, so none is in use), first putting back a local build
// that a swap had moved aside without moving the new one in.
func recoverStaging(d *build.Dir) {
	dirs, _ := filepath.Glob(filepath.Join(d.Root, tempMarker+"*"))
	for _, dir := range dirs {
		t, err := os.ReadFile(filepath.Join(dir, "target"))
		id, arch, _ := strings.Cut(string(t), "/")
		if err == nil && build.ValidBuildID(id) == nil && arch != "" && arch != "." && arch != ".." && !strings.Contains(arch, "/") {
			archDir := d.BuildDir(id, arch)
			if _, err := os.Lstat(archDir); errors.Is(err, os.ErrNotExist) {
				if os.MkdirAll(filepath.Dir(archDir), 0o755) == nil {
					os.Rename(filepath.Join(dir, "old"), archDir)
				}
			}
		}
		os.RemoveAll(dir)
	}
}

// linkTree hard-links every file under src into dst, so the staged build
// starts as a copy of the local one at no cost in space; the files are
// replaced in dst by rename, never written to, so src is never changed.
func linkTree(src, dst string) error {
	err := filepath.WalkDir(src, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case de.IsDir():
			return os.MkdirAll(target, 0o755)
		case strings.HasPrefix(de.Name(), ".") && strings.Contains(de.Name(), tempMarker):
			// A temporary file of an interrupted older cosa.
			return nil
		case de.Type()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case de.Type().IsRegular():
			return os.Link(p, target)
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("staging the local build: %w", err)
	}
	return nil
}

func linkFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.Link(src, dst)
}

// downloadVerified streams rel into a temporary file beside dst, checks
// size and sha256, then renames it to dst. On any failure the temporary
// file is removed and dst is left as it was.
func downloadVerified(ctx context.Context, src Source, rel, dst, wantSum string, wantSize int64, what string) (n int64, d time.Duration, err error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	rc, size, err := src.Open(ctx, rel)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", what, err)
	}
	defer rc.Close()
	// A server announcing another size is wrong whatever it then sends;
	// say so now rather than after (maybe) gigabytes.
	if size >= 0 && size != wantSize {
		return 0, 0, fmt.Errorf("%s: %s is corrupt: the server says %d bytes, meta.json says %d", what, src.URL(rel), size, wantSize)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+tempMarker+"*")
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	// Stop reading past the expected size: a bigger object is wrong anyway.
	n, err = io.Copy(io.MultiWriter(tmp, h), io.LimitReader(fileutil.ContextReader(ctx, rc), wantSize+1))
	if err != nil {
		return n, 0, fmt.Errorf("%s: downloading %s: %w", what, src.URL(rel), err)
	}
	if n != wantSize {
		return n, 0, fmt.Errorf("%s: %s is corrupt: size %d bytes, meta.json says %d", what, src.URL(rel), n, wantSize)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantSum {
		return n, 0, fmt.Errorf("%s: %s is corrupt: sha256 %s, meta.json says %s", what, src.URL(rel), got, wantSum)
	}
	if err = tmp.Sync(); err != nil {
		return n, 0, err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return n, 0, err
	}
	if err = tmp.Close(); err != nil {
		return n, 0, err
	}
	if err = os.Rename(tmp.Name(), dst); err != nil {
		return n, 0, err
	}
	return n, time.Since(t0), fileutil.SyncDir(filepath.Dir(dst))
}

// idleSource makes every object it opens fail once nothing has arrived
// for idle, by cancelling the request's context: that aborts a connect,
// the wait for a response and a blocked body read alike.
type idleSource struct {
	Source
	idle time.Duration
}

// stalledError is the cause of a download the idle timer cancelled.
type stalledError struct{ idle time.Duration }

func (e *stalledError) Error() string {
	return fmt.Sprintf("nothing received for %s; giving up (COSA_FETCH_IDLE_TIMEOUT sets how long to wait)", e.idle)
}

func (s idleSource) Open(ctx context.Context, rel string) (io.ReadCloser, int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	stalled := &stalledError{s.idle}
	t := time.AfterFunc(s.idle, func() { cancel(stalled) })
	rc, size, err := s.Source.Open(ctx, rel)
	if err != nil {
		t.Stop()
		if context.Cause(ctx) == error(stalled) {
			err = fmt.Errorf("%s: %w", s.URL(rel), stalled)
		}
		cancel(nil)
		return nil, 0, err
	}
	return &idleReader{rc: rc, ctx: ctx, cancel: cancel, timer: t, idle: s.idle}, size, nil
}

type idleReader struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	idle   time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if n > 0 {
		r.timer.Reset(r.idle)
	}
	if err != nil && err != io.EOF {
		// The transport reports "context canceled"; say why.
		var st *stalledError
		if c := context.Cause(r.ctx); errors.As(c, &st) {
			err = c
		}
	}
	return n, err
}

func (r *idleReader) Close() error {
	r.timer.Stop()
	r.cancel(nil)
	return r.rc.Close()
}
