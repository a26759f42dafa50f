package remote

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/events"
)

func upload(t *testing.T, f *fakeServer, d *build.Dir, prefix string, ids ...string) *UploadResult {
	t.Helper()
	res, err := Upload(context.Background(), UploadOptions{
		Client: f.Client, Dest: S3Location{Bucket: "bkt", Prefix: prefix}, Dir: d, Builds: ids,
		PartSize: 5 << 20, Events: events.Func(func(e events.Event) { t.Log(e.Text()) }),
	})
	if err != nil {
		t.Fatalf("upload %v: %v", ids, err)
	}
	return res
}

func fetch(t *testing.T, src Source, d *build.Dir, id string, artifacts ...string) (*FetchResult, error) {
	t.Helper()
	return Fetch(context.Background(), FetchOptions{Source: src, Dir: d, Build: id, Arch: testArch, Artifacts: artifacts,
		Events: events.Func(func(e events.Event) { t.Log(e.Text()) })})
}

func TestUploadFetchRoundTrip(t *testing.T) {
	f := newFakeS3(t)
	src := newDir(t)
	makeBuild(t, src, "42.20261122.dev.0", 1000)
	makeBuild(t, src, "42.20261122.dev.1", 12<<20) // > part size: multipart
	// gofakes3 does not keep Cache-Control, so check what is sent.
	var mu sync.Mutex
	cacheControl := map[string]string{}
	f.hook = func(r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "" || r.Method == http.MethodPost && r.URL.Query().Has("uploads") {
			mu.Lock()
			cacheControl[r.URL.Path] = r.Header.Get("Cache-Control")
			mu.Unlock()
		}
	}
	upload(t, f, src, "fcos/dev", "42.20261122.dev.0", "42.20261122.dev.1")
	f.hook = nil
	// 2 builds x (2 images + commitmeta + pkglist + meta) + builds.json;
	// the 12 MiB image goes as 3 parts instead of 1 PUT.
	if n := f.putCount(); n != 2*5-1+3+1 {
		t.Errorf("first upload: %d PUTs, want %d", n, 2*5-1+3+1)
	}
	for p, want := range map[string]string{
		"/bkt/fcos/dev/builds.json":                                                       CacheControlJSON,
		"/bkt/fcos/dev/42.20261122.dev.1/x86_64/meta.json":                                CacheControlJSON,
		"/bkt/fcos/dev/42.20261122.dev.1/x86_64/fcos-42.20261122.dev.1-qemu.qcow2":        CacheControlArtifact,
		"/bkt/fcos/dev/42.20261122.dev.0/x86_64/fcos-42.20261122.dev.0-ostree.ociarchive": CacheControlArtifact,
	} {
		if cacheControl[p] != want {
			t.Errorf("%s: Cache-Control %q, want %q", p, cacheControl[p], want)
		}
	}
	idx := readRemoteIndex(t, f.Client, "fcos/dev")
	if got := idx.IDs(); !slices.Equal(got, []string{"42.20261122.dev.1", "42.20261122.dev.0"}) {
		t.Errorf("remote builds.json ids = %v", got)
	}
	// Object metadata and headers.
	h, err := f.Client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("bkt"),
		Key: aws.String("fcos/dev/42.20261122.dev.1/x86_64/fcos-42.20261122.dev.1-qemu.qcow2")})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := src.ReadMeta("42.20261122.dev.1", testArch)
	if h.Metadata[ShaMetaKey] != m.Images["qemu"].Sha256 || aws.ToString(h.ContentType) != "application/x-qemu-disk" {
		t.Errorf("qemu object: metadata %v content-type %q", h.Metadata, aws.ToString(h.ContentType))
	}
	h, err = f.Client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String("fcos/dev/builds.json")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(h.ContentType) != "application/json" {
		t.Errorf("builds.json: content-type %q", aws.ToString(h.ContentType))
	}

	// Again: nothing to do.
	f.resetPuts()
	res := upload(t, f, src, "fcos/dev", "42.20261122.dev.0", "42.20261122.dev.1")
	if n := f.putCount(); n != 0 || res.Uploaded != 0 || res.Skipped != 10 {
		t.Errorf("second upload: %d PUTs, result %+v; want nothing uploaded", n, res)
	}

	// Fetch everything into a fresh builds/.
	s3src := &S3Source{Client: f.Client, Loc: S3Location{Bucket: "bkt", Prefix: "fcos/dev"}}
	dst := newDir(t)
	for _, id := range []string{"42.20261122.dev.0", "42.20261122.dev.1"} {
		if _, err := fetch(t, s3src, dst, id, "all"); err != nil {
			t.Fatal(err)
		}
		sameTree(t, src, dst, id)
	}
	if l, _ := dst.Latest(); l != "42.20261122.dev.1" {
		t.Errorf("latest = %q", l)
	}
	// Fetching again keeps verified files.
	res2, err := fetch(t, s3src, dst, "latest", "all")
	if err != nil || res2.Kept != 2 || res2.BuildID != "42.20261122.dev.1" {
		t.Errorf("refetch: %+v, %v", res2, err)
	}
	noTemps(t, dst.Root)
}

func TestFetchMetadataOnlyAndMerge(t *testing.T) {
	f := newFakeS3(t)
	src := newDir(t)
	makeBuild(t, src, "42.20261122.dev.0", 100)
	makeBuild(t, src, "42.20261122.dev.1", 100)
	upload(t, f, src, "", "42.20261122.dev.0", "42.20261122.dev.1")
	dst := newDir(t)
	res, err := fetch(t, &S3Source{Client: f.Client, Loc: S3Location{Bucket: "bkt"}}, dst, "")
	if err != nil {
		t.Fatal(err)
	}
	if res.BuildID != "42.20261122.dev.1" {
		t.Errorf("default build = %s, want the newest", res.BuildID)
	}
	dir := dst.BuildDir(res.BuildID, testArch)
	for _, f := range []string{"meta.json", CommitMetaFile, PkgListFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "fcos-42.20261122.dev.1-qemu.qcow2")); !os.IsNotExist(err) {
		t.Errorf("artifact fetched without --artifact: %v", err)
	}
	idx, _ := dst.ReadIndex()
	if got := idx.IDs(); !slices.Equal(got, []string{"42.20261122.dev.1", "42.20261122.dev.0"}) {
		t.Errorf("local builds.json = %v (remote builds must stay listed)", got)
	}
	if dst.HasBuild("42.20261122.dev.0") {
		t.Error("dev.0 should not be on disk")
	}
}

func TestFetchCorruptArtifact(t *testing.T) {
	f := newFakeS3(t)
	src := newDir(t)
	makeBuild(t, src, "42.20261122.dev.0", 4096)
	upload(t, f, src, "p", "42.20261122.dev.0")
	key := "p/42.20261122.dev.0/x86_64/fcos-42.20261122.dev.0-qemu.qcow2"
	data := getObject(t, f.Client, key)
	data[100] ^= 0xff
	putObject(t, f.Client, key, data, nil)

	dst := newDir(t)
	_, err := fetch(t, &S3Source{Client: f.Client, Loc: S3Location{Bucket: "bkt", Prefix: "p"}}, dst, "42.20261122.dev.0", "qemu")
	if err == nil || !strings.Contains(err.Error(), "artifact qemu") || !strings.Contains(err.Error(), "fcos-42.20261122.dev.0-qemu.qcow2") ||
		!strings.Contains(err.Error(), "sha256") {
		t.Fatalf("want a sha256 error naming the artifact, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(dst.BuildDir("42.20261122.dev.0", testArch), "fcos-42.20261122.dev.0-qemu.qcow2")); !os.IsNotExist(err) {
		t.Errorf("corrupt artifact was left in place: %v", err)
	}
	noTemps(t, dst.Root)
	// A truncated object fails the same way.
	putObject(t, f.Client, key, data[:10], nil)
	if _, err := fetch(t, &S3Source{Client: f.Client, Loc: S3Location{Bucket: "bkt", Prefix: "p"}}, dst, "42.20261122.dev.0", "qemu"); err == nil ||
		!strings.Contains(err.Error(), "artifact qemu") {
		t.Fatalf("truncated: %v", err)
	}
	noTemps(t, dst.Root)
}

func TestFetchRefusesDifferentLocalBuild(t *testing.T) {
	f := newFakeS3(t)
	src := newDir(t)
	makeBuild(t, src, "42.20261122.dev.0", 100)
	upload(t, f, src, "p", "42.20261122.dev.0")
	dst := newDir(t)
	makeBuild(t, dst, "42.20261122.dev.0", 100) // same id, other content
	before, _ := os.ReadFile(dst.MetaPath("42.20261122.dev.0", testArch))
	s3src := &S3Source{Client: f.Client, Loc: S3Location{Bucket: "bkt", Prefix: "p"}}
	_, err := fetch(t, s3src, dst, "42.20261122.dev.0")
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("want refusal, got %v", err)
	}
	after, _ := os.ReadFile(dst.MetaPath("42.20261122.dev.0", testArch))
	if string(before) != string(after) {
		t.Error("local meta.json changed despite the refusal")
	}
	if _, err := Fetch(context.Background(), FetchOptions{Source: s3src, Dir: dst, Build: "42.20261122.dev.0", Arch: testArch, Force: true, Artifacts: []string{"all"}}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst, "42.20261122.dev.0")
}

func TestFetchHTTPAndFile(t *testing.T) {
	src := newDir(t)
	makeBuild(t, src, "42.20261122.dev.0", 5000)
	// The builds/ directory itself has the remote layout.
	hs := httptest.NewServer(http.FileServer(http.Dir(src.Root)))
	defer hs.Close()
	for _, u := range []string{hs.URL, "file://" + src.Root, src.Root} {
		s, err := NewSource(context.Background(), u, S3Config{})
		if err != nil {
			t.Fatal(err)
		}
		dst := newDir(t)
		if _, err := fetch(t, s, dst, "", "all"); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		sameTree(t, src, dst, "42.20261122.dev.0")
	}
	// A corrupt file over http is caught too.
	p := filepath.Join(src.BuildDir("42.20261122.dev.0", testArch), "fcos-42.20261122.dev.0-ostree.ociarchive")
	os.WriteFile(p, []byte("garbage"), 0o644)
	s, _ := NewSource(context.Background(), hs.URL+"/", S3Config{})
	dst := newDir(t)
	if _, err := fetch(t, s, dst, "", "ostree"); err == nil || !strings.Contains(err.Error(), "artifact ostree") {
		t.Fatalf("want error naming artifact ostree, got %v", err)
	}
	noTemps(t, dst.Root)
	if _, err := NewSource(context.Background(), "ftp://x/y", S3Config{}); err == nil {
		t.Error("ftp:// accepted")
	}
}

// TestConditionalWritesHonoured records that gofakes3 implements If-Match
// and If-None-Match on PutObject (so the concurrency test below exercises
// the real 412 path rather than a test double).
func TestConditionalWritesHonoured(t *testing.T) {
	f := newFakeS3(t)
	ctx := context.Background()
	put := func(ifMatch, ifNoneMatch *string) error {
		_, err := f.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k"),
			Body: strings.NewReader(time.Now().String()), IfMatch: ifMatch, IfNoneMatch: ifNoneMatch})
		return err
	}
	if err := put(nil, aws.String("*")); err != nil {
		t.Fatal(err)
	}
	if err := put(nil, aws.String("*")); !isConflict(err) {
		t.Fatalf("If-None-Match on an existing key: %v, want 412", err)
	}
	h, err := f.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	if err := put(aws.String(`"0123456789abcdef0123456789abcdef"`), nil); !isConflict(err) {
		t.Fatalf("stale If-Match: %v, want 412", err)
	}
	if err := put(h.ETag, nil); err != nil {
		t.Fatalf("current If-Match: %v", err)
	}
}

func TestConcurrentUploadsMergeIndex(t *testing.T) {
	f := newFakeS3(t)
	a, b := newDir(t), newDir(t)
	makeBuild(t, a, "42.20261122.dev.0", 100)
	makeBuild(t, b, "42.20261122.dev.1", 100)
	// Hold the first write of builds.json until the other uploader's
	// write arrives too: each has then merged what it read before either
	// wrote (the absent index), so the two writes race and one must be
	// refused. Later writes (the loser's retry) go through.
	var mu sync.Mutex
	writes := 0
	both := make(chan struct{})
	f.hook = func(r *http.Request) {
		if r.Method != http.MethodPut || !strings.HasSuffix(r.URL.Path, "/builds.json") {
			return
		}
		mu.Lock()
		writes++
		n := writes
		mu.Unlock()
		switch n {
		case 1:
			select {
			case <-both:
			case <-time.After(10 * time.Second): // don't hang if the code changes
			}
		case 2:
			close(both)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, d := range []*build.Dir{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := map[int]string{0: "42.20261122.dev.0", 1: "42.20261122.dev.1"}[i]
			_, errs[i] = Upload(context.Background(), UploadOptions{Client: f.Client, Dest: S3Location{Bucket: "bkt", Prefix: "x"}, Dir: d, Builds: []string{id}})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	f.hook = nil
	idx := readRemoteIndex(t, f.Client, "x")
	if got := idx.IDs(); !slices.Equal(got, []string{"42.20261122.dev.1", "42.20261122.dev.0"}) {
		t.Errorf("builds.json ids = %v, want both builds", got)
	}
	f.mu.Lock()
	conflicts := f.status[http.StatusPreconditionFailed]
	f.mu.Unlock()
	if conflicts == 0 {
		t.Errorf("expected one writer to hit 412 Precondition Failed and retry; statuses %v", f.status)
	}
}

func TestDryRunAndArtifactSubset(t *testing.T) {
	f := newFakeS3(t)
	d := newDir(t)
	makeBuild(t, d, "42.20261122.dev.0", 100)
	var got []events.Event
	res, err := Upload(context.Background(), UploadOptions{Client: f.Client, Dest: S3Location{Bucket: "bkt"}, Dir: d,
		Builds: []string{"42.20261122.dev.0"}, DryRun: true, Events: events.Func(func(e events.Event) { got = append(got, e) })})
	if err != nil {
		t.Fatal(err)
	}
	if f.putCount() != 0 || res.Uploaded != 0 {
		t.Errorf("dry run uploaded: %d PUTs", f.putCount())
	}
	would := 0
	for _, e := range got {
		if e.Action == "would-upload" {
			would++
		}
	}
	if would != 6 { // 2 images, 3 json, builds.json
		t.Errorf("dry run announced %d objects, want 6: %+v", would, got)
	}
	// Only the ostree image: meta.json goes up but the build must not be
	// listed, since its qemu image is not in the bucket.
	_, err = Upload(context.Background(), UploadOptions{Client: f.Client, Dest: S3Location{Bucket: "bkt"}, Dir: d,
		Builds: []string{"42.20261122.dev.0"}, Artifacts: []string{"ostree"}})
	if err == nil {
		t.Fatal("want an error: nothing complete to list")
	}
	if idx := readRemoteIndex(t, f.Client, ""); len(idx.Builds) != 0 {
		t.Errorf("incomplete build listed: %v", idx.IDs())
	}
	// Then the rest: now it is listed.
	if _, err := Upload(context.Background(), UploadOptions{Client: f.Client, Dest: S3Location{Bucket: "bkt"}, Dir: d,
		Builds: []string{"42.20261122.dev.0"}, Artifacts: []string{"qemu"}}); err != nil {
		t.Fatal(err)
	}
	if idx := readRemoteIndex(t, f.Client, ""); !slices.Equal(idx.IDs(), []string{"42.20261122.dev.0"}) {
		t.Errorf("builds.json = %v", idx.IDs())
	}
	if _, err := Upload(context.Background(), UploadOptions{Client: f.Client, Dest: S3Location{Bucket: "bkt"}, Dir: d,
		Builds: []string{"42.20261122.dev.0"}, Artifacts: []string{"nope"}}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown artifact: %v", err)
	}
}

func TestUploadRefusesCorruptLocalArtifact(t *testing.T) {
	f := newFakeS3(t)
	d := newDir(t)
	makeBuild(t, d, "42.20261122.dev.0", 100)
	p := filepath.Join(d.BuildDir("42.20261122.dev.0", testArch), "fcos-42.20261122.dev.0-qemu.qcow2")
	data, _ := os.ReadFile(p)
	data[0] ^= 1
	os.WriteFile(p, data, 0o644)
	_, err := Upload(context.Background(), UploadOptions{Client: f.Client, Dest: S3Location{Bucket: "bkt"}, Dir: d, Builds: []string{"42.20261122.dev.0"}})
	if err == nil || !strings.Contains(err.Error(), "artifact qemu") {
		t.Fatalf("want refusal naming qemu, got %v", err)
	}
	if _, _, err := readIndex(context.Background(), f.Client, S3Location{Bucket: "bkt"}); err != nil {
		t.Fatal(err)
	}
	if idx := readRemoteIndex(t, f.Client, ""); len(idx.Builds) != 0 {
		t.Errorf("build listed after a failed upload: %v", idx.IDs())
	}
}

func TestMergeIndex(t *testing.T) {
	idx := &build.BuildsIndex{Builds: []build.BuildEntry{
		{ID: "42.20261122.dev.5", Arches: []string{"x86_64"}},
		{ID: "42.20261122.dev.2", Arches: []string{"x86_64"}},
	}, Tags: []build.Tag{{Name: "stable", Target: "42.20261122.dev.2", Created: "a"}}}
	changed := MergeIndex(idx, []build.BuildEntry{
		{ID: "42.20261122.dev.10", Arches: []string{"x86_64"}},
		{ID: "42.20261122.dev.3", Arches: []string{"x86_64"}},
		{ID: "42.20261122.dev.1", Arches: []string{"x86_64"}},
		{ID: "42.20261122.dev.2", Arches: []string{"aarch64"}},
	}, []build.Tag{
		{Name: "stable", Target: "42.20261122.dev.3", Created: "b"},
		{Name: "gone", Target: "99", Created: "b"},
	}, true)
	if !changed {
		t.Error("not changed")
	}
	want := []string{"42.20261122.dev.10", "42.20261122.dev.5", "42.20261122.dev.3", "42.20261122.dev.2", "42.20261122.dev.1"}
	if got := idx.IDs(); !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if e := idx.Find("42.20261122.dev.2"); !slices.Equal(e.Arches, []string{"x86_64", "aarch64"}) {
		t.Errorf("arches %v", e.Arches)
	}
	if len(idx.Tags) != 1 || idx.Tags[0].Target != "42.20261122.dev.3" {
		t.Errorf("tags %+v", idx.Tags)
	}
	if MergeIndex(idx, []build.BuildEntry{{ID: "42.20261122.dev.3", Arches: []string{"x86_64"}}}, nil, true) {
		t.Error("no-op merge reported a change")
	}
	if MergeIndex(idx, nil, []build.Tag{{Name: "stable", Target: "42.20261122.dev.5"}}, false) {
		t.Error("tagsWin=false replaced a tag")
	}
}

func TestParseS3Location(t *testing.T) {
	for in, want := range map[string]S3Location{
		"b/p/q":      {"b", "p/q"},
		"s3://b/p/":  {"b", "p"},
		"b":          {"b", ""},
		"s3://b":     {"b", ""},
		"b/a/../../": {},
		// Another scheme is not a bucket called "https:".
		"https://b/p": {},
		"s3://":       {},
		"b:x/p":       {},
	} {
		got, err := ParseS3Location(in)
		if (want == S3Location{}) {
			if err == nil {
				t.Errorf("%q: accepted", in)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q: %+v, %v", in, got, err)
		}
	}
	if l := (S3Location{"b", "p"}); l.Key("builds.json") != "p/builds.json" || (S3Location{"b", ""}).Key("x") != "x" {
		t.Error("Key")
	}
	if !errors.Is(ErrNotFound, ErrNotFound) {
		t.Error("sanity")
	}
}
