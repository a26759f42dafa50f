package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/build"
)

const testArch = "x86_64"

// fakeServer is gofakes3 behind a handler that counts requests and lets
// a test intercept them.
type fakeServer struct {
	URL    string
	Client *s3.Client
	mu     sync.Mutex
	puts   []string // PUT paths (objects and parts)
	status map[int]int
	// hook, if set, runs before each request; it may block.
	hook func(r *http.Request)
	// condMu makes a conditional PUT's check and write one step, as S3
	// guarantees: gofakes3 checks If-Match/If-None-Match and then writes,
	// so two racing writers could both pass the check (a flake in about
	// 1 of 100 runs of TestConcurrentUploadsMergeIndex).
	condMu sync.Mutex
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if f.hook != nil {
		f.hook(r)
	}
	rec := &statusRecorder{ResponseWriter: w, code: 200}
	if r.Method == http.MethodPut && (r.Header.Get("If-Match") != "" || r.Header.Get("If-None-Match") != "") {
		f.condMu.Lock()
		next.ServeHTTP(rec, r)
		f.condMu.Unlock()
	} else {
		next.ServeHTTP(rec, r)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method == http.MethodPut && rec.code < 300 {
		f.puts = append(f.puts, r.URL.Path)
	}
	f.status[rec.code]++
}

func (f *fakeServer) putCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.puts)
}

func (f *fakeServer) resetPuts() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.puts = nil
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(c int) {
	s.code = c
	s.ResponseWriter.WriteHeader(c)
}

func testCreds() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider("TESTKEY", "TESTSECRET", "")
}

// newFakeS3 starts gofakes3 on loopback with bucket "bkt".
func newFakeS3(t *testing.T) *fakeServer {
	t.Helper()
	testutil.IsolateAWS(t, "", "", "")
	f := &fakeServer{status: map[int]int{}}
	faker := gofakes3.New(s3mem.New()).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.ServeHTTP(w, r, faker) }))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	c, err := NewS3Client(context.Background(), S3Config{EndpointURL: srv.URL, Credentials: testCreds(), MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	f.Client = c
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("bkt")}); err != nil {
		t.Fatal(err)
	}
	f.resetPuts()
	return f
}

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// makeBuild writes a finished-looking build into d: two images, commitmeta,
// pkglist, meta.json, and an entry in builds.json.
func makeBuild(t *testing.T, d *build.Dir, id string, qemuSize int) {
	t.Helper()
	dir := d.BuildDir(id, testArch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	images := map[string]build.Artifact{}
	for name, size := range map[string]int{"ostree": 3000, "qemu": qemuSize} {
		file := fmt.Sprintf("fcos-%s-%s.%s", id, name, map[string]string{"ostree": "ociarchive", "qemu": "qcow2"}[name])
		data := randBytes(t, size)
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		images[name] = build.Artifact{Path: file, Sha256: hex.EncodeToString(s[:]), Size: int64(size)}
	}
	for _, f := range []string{CommitMetaFile, PkgListFile} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(fmt.Sprintf("{\"build\": %q, \"file\": %q}\n", id, f)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256([]byte(id))
	m := &build.Meta{
		BuildID: id, Name: "fcos", OSTreeCommit: hex.EncodeToString(sum[:]),
		OSTreeTimestamp: "2026-11-22T00:00:00Z", OSTreeVersion: id, BaseArch: testArch, Images: images,
	}
	testutil.PublishBuild(t, d, id, testArch, m, false)
}

func newDir(t *testing.T) *build.Dir {
	t.Helper()
	d, err := build.Open(filepath.Join(t.TempDir(), "builds"))
	if err != nil {
		t.Fatal(err)
	}
	d.LockTimeout = time.Minute
	return d
}

func getObject(t *testing.T, c *s3.Client, key string) []byte {
	t.Helper()
	b, err := testutil.S3Get(context.Background(), c, "bkt", key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return b
}

func putObject(t *testing.T, c *s3.Client, key string, data []byte, meta map[string]string) {
	t.Helper()
	_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("bkt"), Key: aws.String(key), Body: bytes.NewReader(data), Metadata: meta})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// sameTree asserts every regular file under src/<id> exists byte-identical
// under dst/<id>.
func sameTree(t *testing.T, src, dst *build.Dir, id string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(src.Root, id), func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src.Root, p)
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(dst.Root, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs after the round trip", rel)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no files under %s", id)
	}
}

// noTemps asserts that no temporary download file is left under dir.
func noTemps(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err == nil && strings.Contains(de.Name(), tempMarker) {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

func readRemoteIndex(t *testing.T, c *s3.Client, prefix string) *build.BuildsIndex {
	t.Helper()
	idx, _, err := readIndex(context.Background(), c, S3Location{Bucket: "bkt", Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return idx
}
