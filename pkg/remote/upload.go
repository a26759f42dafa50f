package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/fileutil"
)

// CannedACLs are the values --acl accepts.
var CannedACLs = []string{"private", "public-read", "public-read-write", "authenticated-read",
	"aws-exec-read", "bucket-owner-read", "bucket-owner-full-control"}

// Upload defaults: 16 MiB parts, 4 in flight (the machines are small).
const (
	DefaultPartSize    = 16 << 20
	DefaultConcurrency = 4
	// indexAttempts bounds the read-merge-conditional-write loop on builds.json.
	indexAttempts = 10
)

// UploadOptions describes one buildupload run.
type UploadOptions struct {
	Client *s3.Client
	Dest   S3Location
	Dir    *build.Dir
	// Builds to upload, each with every arch the local builds.json lists
	// for it and that is on disk.
	Builds []string
	// Artifacts limits the images uploaded (names of images.* entries);
	// empty means all.
	Artifacts []string
	Force     bool
	DryRun    bool
	// SkipIndex leaves the bucket's builds.json alone.
	SkipIndex bool
	// ACL is a canned ACL; "" or "private" sends none (private is S3's
	// default, and buckets with ACLs disabled reject any other).
	ACL         string
	PartSize    int64
	Concurrency int
	Events      events.Sink // progress; nil: none
}

// UploadResult counts what an upload did.
type UploadResult struct {
	Uploaded, Skipped int
	Bytes             int64
	Elapsed           time.Duration
	// Indexed are the builds added to (or confirmed in) builds.json.
	Indexed []string
	// IndexWritten is true if builds.json was (or, dry-run, would be) written.
	IndexWritten bool
}

type uploader struct {
	o   UploadOptions
	up  *manager.Uploader
	res UploadResult
	// transfer is the time spent in actual uploads, for the MB/s summary.
	transfer time.Duration
}

func (u *uploader) emit(e events.Event) { events.Emit(u.o.Events, e) }

// Upload uploads builds to S3. It does not take the builds/ lock: uploads
// can be long, and everything it reads is written once by a finished build.
// What can change under it (cosa compress rewriting meta.json) is caught:
// the meta.json bytes it parsed are the ones it uploads, and an artifact
// that vanished meanwhile fails the upload.
func Upload(ctx context.Context, o UploadOptions) (*UploadResult, error) {
	if o.Client == nil || o.Dir == nil {
		return nil, fmt.Errorf("remote.Upload: Client and Dir are required")
	}
	if o.ACL != "" && !slices.Contains(CannedACLs, o.ACL) {
		return nil, fmt.Errorf("invalid ACL %q: want one of %s", o.ACL, strings.Join(CannedACLs, ", "))
	}
	if o.PartSize <= 0 {
		o.PartSize = DefaultPartSize
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	u := &uploader{o: o}
	u.up = manager.NewUploader(o.Client, func(m *manager.Uploader) {
		m.PartSize = o.PartSize
		m.Concurrency = o.Concurrency
	})
	start := time.Now()
	idx, err := o.Dir.ReadIndex()
	if err != nil {
		return nil, err
	}
	var complete []build.BuildEntry
	for _, id := range o.Builds {
		e := idx.Find(id)
		if e == nil {
			return nil, fmt.Errorf("build %s is not in %s/builds.json", id, o.Dir.Root)
		}
		done := build.BuildEntry{ID: id}
		for _, arch := range e.Arches {
			if _, err := os.Stat(o.Dir.MetaPath(id, arch)); err != nil {
				u.emit(events.Event{Type: events.Warning, Message: fmt.Sprintf("build %s/%s: no meta.json on disk; skipping that arch", id, arch)})
				continue
			}
			ok, err := u.uploadBuildArch(ctx, id, arch)
			if err != nil {
				return nil, err
			}
			if ok {
				done.Arches = append(done.Arches, arch)
			}
		}
		if len(done.Arches) > 0 {
			complete = append(complete, done)
		}
	}
	if len(complete) == 0 && len(o.Builds) > 0 && !o.SkipIndex {
		return nil, fmt.Errorf("nothing uploaded completely enough to list in builds.json")
	}
	if !o.SkipIndex && len(complete) > 0 {
		var tags []build.Tag
		for _, t := range idx.Tags {
			if slices.ContainsFunc(complete, func(e build.BuildEntry) bool { return e.ID == t.Target }) {
				tags = append(tags, t)
			}
		}
		if err := u.updateIndex(ctx, complete, tags); err != nil {
			return nil, err
		}
	}
	u.res.Elapsed = time.Since(start)
	return &u.res, nil
}

// Transfer returns the aggregate upload rate in MB/s (0 if nothing moved).
func (r *UploadResult) Rate() float64 {
	if r.Elapsed <= 0 || r.Bytes == 0 {
		return 0
	}
	return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds()
}

// uploadBuildArch uploads one builds/<id>/<arch> and reports whether every
// image meta.json lists is now in the bucket (so the build may be listed).
func (u *uploader) uploadBuildArch(ctx context.Context, id, arch string) (bool, error) {
	// meta.json is read once, and these very bytes are what goes up: a
	// `cosa compress` rewriting it meanwhile must not get a meta.json
	// published that names objects this upload never sent.
	metaPath := u.o.Dir.MetaPath(id, arch)
	metaData, err := os.ReadFile(metaPath)
	if err != nil {
		return false, err
	}
	// Validated like every other meta.json cosa reads: a build that fails
	// the schema is not published.
	m, err := build.ParseMeta(metaPath, metaData)
	if err != nil {
		return false, err
	}
	if m.BuildID != id {
		return false, fmt.Errorf("%s: buildid %q does not match build %s", metaPath, m.BuildID, id)
	}
	// changed turns a failure to read an artifact into the real reason
	// when meta.json was rewritten under us.
	changed := func(err error) error {
		if now, rerr := os.ReadFile(metaPath); rerr == nil && bytes.Equal(now, metaData) {
			return err
		}
		return fmt.Errorf("build %s/%s changed while uploading (its meta.json was rewritten, e.g. by cosa compress); run buildupload again", id, arch)
	}
	archDir := u.o.Dir.BuildDir(id, arch)
	names := make([]string, 0, len(m.Images))
	for n := range m.Images {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, want := range u.o.Artifacts {
		if _, ok := m.Images[want]; !ok {
			return false, fmt.Errorf("build %s/%s has no artifact %q (has: %s)", id, arch, want, strings.Join(names, ", "))
		}
	}
	complete := true
	for _, name := range names {
		a := m.Images[name]
		rel, err := cleanRel(a.Path)
		if err != nil {
			return false, fmt.Errorf("build %s/%s image %s: %w", id, arch, name, err)
		}
		key := u.o.Dest.Key(id + "/" + arch + "/" + rel)
		if len(u.o.Artifacts) > 0 && !slices.Contains(u.o.Artifacts, name) {
			// Not selected: the build may only be listed if it is
			// already in the bucket.
			present, err := u.present(ctx, key, a.Sha256, a.Size)
			if err != nil {
				return false, err
			}
			if !present {
				complete = false
			}
			continue
		}
		err = u.putFile(ctx, key, filepath.Join(archDir, filepath.FromSlash(rel)), a.Sha256, a.Size, CacheControlArtifact,
			fmt.Sprintf("artifact %s of build %s/%s", name, id, arch))
		if err != nil {
			return false, changed(err)
		}
	}
	for _, f := range []string{CommitMetaFile, PkgListFile, build.MetaFile} {
		data := metaData
		if f != build.MetaFile {
			data, err = os.ReadFile(filepath.Join(archDir, f))
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				return false, err
			}
		}
		if err := u.putBytes(ctx, u.o.Dest.Key(id+"/"+arch+"/"+f), f, data); err != nil {
			return false, err
		}
	}
	if !complete {
		u.emit(events.Event{Type: events.Warning, Message: fmt.Sprintf(
			"build %s/%s: not adding it to builds.json, since some of its artifacts are not in the bucket; upload them too (drop --artifact)", id, arch)})
	}
	return complete, nil
}

// present reports whether key exists with the given sha256 and size.
func (u *uploader) present(ctx context.Context, key, sum string, size int64) (bool, error) {
	h, err := u.o.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(u.o.Dest.Bucket), Key: aws.String(key)})
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking s3://%s/%s: %w", u.o.Dest.Bucket, key, err)
	}
	return h.Metadata[ShaMetaKey] == sum && aws.ToInt64(h.ContentLength) == size, nil
}

// putFile uploads local file p as key unless the bucket already has it
// with the same sha256 (or --force). what names the file in errors.
func (u *uploader) putFile(ctx context.Context, key, p, sum string, size int64, cacheControl, what string) error {
	if skip, err := u.skip(ctx, key, sum, size); err != nil || skip {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != size {
		return fmt.Errorf("%s: %s is %d bytes, meta.json says %d", what, p, fi.Size(), size)
	}
	// Never publish a file that does not match its meta.json. The open
	// file is hashed, not the path, so that a file replaced meanwhile
	// cannot go up unchecked.
	got, _, err := fileutil.SHA256Reader(f)
	if err != nil {
		return fmt.Errorf("%s: reading %s: %w", what, p, err)
	}
	if got != sum {
		return fmt.Errorf("%s: %s has sha256 %s, meta.json says %s; refusing to upload a corrupt file", what, p, got, sum)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	// f is seekable: plain-http endpoints sign the payload hash.
	return u.put(ctx, key, f, p, sum, size, cacheControl, what)
}

// putBytes uploads data (a JSON file of the build) as key unless the
// bucket already has it.
func (u *uploader) putBytes(ctx context.Context, key, name string, data []byte) error {
	sum, size := fileutil.SHA256Hex(data), int64(len(data))
	if skip, err := u.skip(ctx, key, sum, size); err != nil || skip {
		return err
	}
	return u.put(ctx, key, bytes.NewReader(data), name, sum, size, CacheControlJSON, name)
}

// skip reports (and counts) an object the bucket already has, unless
// --force.
func (u *uploader) skip(ctx context.Context, key, sum string, size int64) (bool, error) {
	if u.o.Force {
		return false, nil
	}
	ok, err := u.present(ctx, key, sum, size)
	if err != nil || !ok {
		return false, err
	}
	u.res.Skipped++
	u.emit(events.Event{Type: events.Object, Action: "skipped", Object: "s3://" + u.o.Dest.Bucket + "/" + key, Bytes: size, Message: "unchanged"})
	return true, nil
}

// put uploads body, already checked against sum and size, as key; name
// picks the Content-Type.
func (u *uploader) put(ctx context.Context, key string, body io.Reader, name, sum string, size int64, cacheControl, what string) error {
	obj := "s3://" + u.o.Dest.Bucket + "/" + key
	if u.o.DryRun {
		u.emit(events.Event{Type: events.Object, Action: "would-upload", Object: obj, Bytes: size})
		return nil
	}
	in := &s3.PutObjectInput{
		Bucket:       aws.String(u.o.Dest.Bucket),
		Key:          aws.String(key),
		Body:         body,
		ContentType:  aws.String(ContentType(name)),
		CacheControl: aws.String(cacheControl),
		Metadata:     map[string]string{ShaMetaKey: sum},
	}
	if u.o.ACL != "" && u.o.ACL != "private" {
		in.ACL = types.ObjectCannedACL(u.o.ACL)
	}
	t0 := time.Now()
	if _, err := u.up.Upload(ctx, in); err != nil {
		return fmt.Errorf("uploading %s to %s: %w", what, obj, err)
	}
	d := time.Since(t0)
	u.transfer += d
	u.res.Uploaded++
	u.res.Bytes += size
	u.emit(transferEvent("uploaded", obj, size, d))
	return nil
}

// readIndex reads the bucket's builds.json; etag is "" if there is none.
func readIndex(ctx context.Context, c *s3.Client, loc S3Location) (*build.BuildsIndex, string, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String(loc.Key(build.IndexFile))})
	if isNotFound(err) {
		return build.NewIndex(), "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", loc.URL(build.IndexFile), err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, build.MaxIndexBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", loc.URL(build.IndexFile), err)
	}
	idx, err := parseIndex(loc.URL(build.IndexFile), data)
	if err != nil {
		return nil, "", err
	}
	etag := aws.ToString(out.ETag)
	if etag == "" {
		return nil, "", fmt.Errorf("reading %s: the server sent no ETag, so builds.json cannot be updated safely", loc.URL(build.IndexFile))
	}
	return idx, etag, nil
}

func parseIndex(src string, data []byte) (*build.BuildsIndex, error) {
	if len(data) > build.MaxIndexBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes; cosa accepts at most that", src, build.MaxIndexBytes)
	}
	idx := &build.BuildsIndex{}
	if err := json.Unmarshal(data, idx); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if idx.SchemaVersion == "" {
		idx.SchemaVersion = build.IndexSchemaVersion
	}
	if idx.Builds == nil {
		idx.Builds = []build.BuildEntry{}
	}
	if err := idx.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return idx, nil
}

// updateIndex merges add into the bucket's builds.json with a conditional
// write (If-Match on the ETag read, If-None-Match: * if there was none),
// re-reading and re-merging when another writer got there first.
func (u *uploader) updateIndex(ctx context.Context, add []build.BuildEntry, tags []build.Tag) error {
	loc := u.o.Dest
	obj := loc.URL(build.IndexFile)
	for _, e := range add {
		u.res.Indexed = append(u.res.Indexed, e.ID)
	}
	conditional := true
	for attempt := 1; attempt <= indexAttempts; attempt++ {
		idx, etag, err := readIndex(ctx, u.o.Client, loc)
		if err != nil {
			return err
		}
		if !MergeIndex(idx, add, tags, true) {
			u.emit(events.Event{Type: events.Index, Action: "unchanged", Object: obj, Message: "already lists these builds"})
			return nil
		}
		if u.o.DryRun {
			u.res.IndexWritten = true
			u.emit(events.Event{Type: events.Index, Action: "would-upload", Object: obj, Message: "would add " + entriesString(add)})
			return nil
		}
		idx.Timestamp = time.Now().UTC().Format(time.RFC3339)
		if err := idx.Validate(); err != nil {
			return fmt.Errorf("refusing to write %s: %w", obj, err)
		}
		data, err := json.MarshalIndent(idx, "", "  ")
		if err != nil {
			return err
		}
		data = append(data, '\n')
		in := &s3.PutObjectInput{
			Bucket:       aws.String(loc.Bucket),
			Key:          aws.String(loc.Key(build.IndexFile)),
			Body:         bytes.NewReader(data),
			ContentType:  aws.String("application/json"),
			CacheControl: aws.String(CacheControlJSON),
			Metadata:     map[string]string{ShaMetaKey: fileutil.SHA256Hex(data)},
		}
		if u.o.ACL != "" && u.o.ACL != "private" {
			in.ACL = types.ObjectCannedACL(u.o.ACL)
		}
		if conditional {
			if etag != "" {
				in.IfMatch = aws.String(etag)
			} else {
				in.IfNoneMatch = aws.String("*")
			}
		}
		t0 := time.Now()
		_, err = u.o.Client.PutObject(ctx, in)
		switch {
		case err != nil && isConflict(err):
			u.emit(events.Event{Type: events.Info, Message: fmt.Sprintf("%s changed while merging (attempt %d); re-reading", obj, attempt)})
			if err := backoff(ctx, attempt); err != nil {
				return err
			}
			continue
		case err != nil && conditional && isUnsupported(err):
			u.emit(events.Event{Type: events.Warning, Message: "the server does not support conditional writes; " +
				"writing builds.json unconditionally and verifying it afterwards (concurrent uploads may race)"})
			conditional = false
			attempt--
			continue
		case err != nil:
			return fmt.Errorf("writing %s: %w", obj, err)
		}
		d := time.Since(t0)
		// Read back: a server that silently ignores If-Match/If-None-Match
		// lets a concurrent writer drop our entries; catch that here.
		check, _, err := readIndex(ctx, u.o.Client, loc)
		if err != nil {
			return err
		}
		if missing := missingEntries(check, add); len(missing) > 0 {
			u.emit(events.Event{Type: events.Warning, Message: fmt.Sprintf(
				"%s lost %s right after our write: the server seems to ignore conditional writes; retrying", obj, strings.Join(missing, ", "))})
			if err := backoff(ctx, attempt); err != nil {
				return err
			}
			continue
		}
		u.res.IndexWritten = true
		u.res.Uploaded++
		ev := transferEvent("uploaded", obj, int64(len(data)), d)
		ev.Type = events.Index
		u.emit(ev)
		return nil
	}
	return fmt.Errorf("writing %s: gave up after %d attempts, other writers kept changing it", obj, indexAttempts)
}

func missingEntries(idx *build.BuildsIndex, want []build.BuildEntry) []string {
	var missing []string
	for _, e := range want {
		have := idx.Find(e.ID)
		for _, a := range e.Arches {
			if have == nil || !slices.Contains(have.Arches, a) {
				missing = append(missing, e.ID+"/"+a)
			}
		}
	}
	return missing
}

func entriesString(es []build.BuildEntry) string {
	var s []string
	for _, e := range es {
		s = append(s, e.ID+" ("+strings.Join(e.Arches, ",")+")")
	}
	return strings.Join(s, ", ")
}

// backoff waits a jittered, growing delay between builds.json attempts so
// that competing writers spread out.
func backoff(ctx context.Context, attempt int) error {
	base := time.Duration(min(attempt, 6)) * 100 * time.Millisecond
	d := base/2 + rand.N(base)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
