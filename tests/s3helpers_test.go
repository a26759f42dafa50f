package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/remote"
)

// Throwaway credentials for the local gateway; they only ever travel to
// 127.0.0.1 and are never printed.
const (
	s3TestAccessKey = "cosatestaccess"
	s3TestSecretKey = "cosatestsecret-not-a-real-key"
	s3TestArch      = "x86_64"
)

// versitygwBin finds the versitygw binary that .ci/install-versitygw
// installs, failing the test with instructions if it is missing.
func versitygwBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test; skipped with -short")
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, "go", "bin", "versitygw")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Fatalf("versitygw is not installed; run .ci/install-versitygw")
	return ""
}

// gateway is a real versitygw (posix backend) on a loopback port.
type gateway struct {
	t       *testing.T
	bin     string
	dataDir string
	addr    string // 127.0.0.1:PORT
	logPath string // S3 access log
	cmd     *exec.Cmd
	exited  chan struct{}
	out     bytes.Buffer
}

func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// startGateway starts versitygw serving dataDir; each subdirectory is a
// bucket.
func startGateway(t *testing.T, bin string) *gateway {
	t.Helper()
	dir := t.TempDir()
	g := &gateway{t: t, bin: bin, dataDir: filepath.Join(dir, "data"), addr: freeLoopbackPort(t), logPath: filepath.Join(dir, "access.log")}
	if err := os.MkdirAll(g.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	g.start()
	t.Cleanup(g.kill)
	return g
}

func (g *gateway) url() string { return "http://" + g.addr }

// start runs the gateway and waits until it accepts connections.
func (g *gateway) start() {
	t := g.t
	t.Helper()
	cmd := exec.Command(g.bin, "--port", g.addr, "--access-log", g.logPath, "posix", g.dataDir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s3TestAccessKey, "ROOT_SECRET_ACCESS_KEY="+s3TestSecretKey)
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: &g.out}, &lockedWriter{w: &g.out}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting versitygw: %v", err)
	}
	g.cmd = cmd
	g.exited = make(chan struct{})
	go func() { cmd.Wait(); close(g.exited) }()
	// Readiness: a TCP connect succeeds. Bounded by a deadline; each
	// failed dial is itself the wait.
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", g.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-g.exited:
			t.Fatalf("versitygw exited at start:\n%s", g.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not start listening on %s: %v\n%s", g.addr, err, g.out.String())
		}
	}
}

// kill stops the gateway with SIGKILL (by PID) and reaps it.
func (g *gateway) kill() {
	if g.cmd == nil || g.cmd.Process == nil {
		return
	}
	select {
	case <-g.exited:
	default:
		g.cmd.Process.Kill()
		<-g.exited
	}
	g.cmd = nil
}

// puts counts the PUT operations (whole objects and multipart parts) in
// the gateway's own access log.
func (g *gateway) puts() int {
	g.t.Helper()
	data, err := os.ReadFile(g.logPath)
	if err != nil {
		g.t.Fatal(err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		for _, op := range f {
			if op == "s3_PutObject" || op == "s3_UploadPart" || op == "s3_CopyObject" {
				n++
				break
			}
		}
	}
	return n
}

// statusCount counts access-log lines with the given operation and status.
func (g *gateway) statusCount(op, status string) int {
	data, _ := os.ReadFile(g.logPath)
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		for i, x := range f {
			if x == op && i+3 < len(f) && f[i+3] == status {
				n++
			}
		}
	}
	return n
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// s3Env points the AWS SDK (in this process and in the cosa it runs) at
// the throwaway credentials and away from any real AWS configuration.
func s3Env(t *testing.T) {
	testutil.IsolateAWS(t, s3TestAccessKey, s3TestSecretKey, "us-east-1")
}

func s3Client(t *testing.T, endpoint string) *s3.Client {
	t.Helper()
	c, err := remote.NewS3Client(context.Background(), remote.S3Config{EndpointURL: endpoint, MaxAttempts: 2,
		Credentials: credentials.NewStaticCredentialsProvider(s3TestAccessKey, s3TestSecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func s3Get(t *testing.T, c *s3.Client, bucket, key string) ([]byte, error) {
	t.Helper()
	return testutil.S3Get(context.Background(), c, bucket, key)
}

// s3FakeBuild writes a finished-looking build (no OS build needed) into
// workdir: random artifacts of the given sizes, commitmeta.json,
// pkglist.json, a schema-valid meta.json, builds.json and latest.
func s3FakeBuild(t *testing.T, workdir, id string, sizes map[string]int64) {
	t.Helper()
	d := &build.Dir{Root: filepath.Join(workdir, "builds"), LockTimeout: time.Minute}
	dir := d.BuildDir(id, s3TestArch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seed := sha256.Sum256([]byte(id))
	rng := rand.NewChaCha8(seed)
	images := map[string]build.Artifact{}
	for name, size := range sizes {
		file := fmt.Sprintf("fcos-%s-%s.%s", id, name, map[bool]string{true: "ociarchive", false: "qcow2"}[name == "ostree"])
		f, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.CopyN(io.MultiWriter(f, h), rng, size); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		images[name] = build.Artifact{Path: file, Sha256: hex.EncodeToString(h.Sum(nil)), Size: size}
	}
	writeFile(t, filepath.Join(dir, "commitmeta.json"), fmt.Sprintf("{\"ostree-commit\": %q}\n", hex.EncodeToString(seed[:])), 0o644)
	writeFile(t, filepath.Join(dir, "pkglist.json"), "[{\"name\": \"bash\", \"version\": \"5.2\"}]\n", 0o644)
	m := &build.Meta{BuildID: id, Name: "fcos", OSTreeCommit: hex.EncodeToString(seed[:]), OSTreeTimestamp: "2026-11-22T00:00:00Z",
		OSTreeVersion: id, BaseArch: s3TestArch, Images: images}
	testutil.PublishBuild(t, d, id, s3TestArch, m, true)
}

// s3SameFiles asserts that every file of build id in a is byte-identical
// in b.
func s3SameFiles(t *testing.T, a, b, id string) {
	t.Helper()
	root := filepath.Join(a, "builds", id)
	n := 0
	filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		x, _ := os.ReadFile(p)
		y, err := os.ReadFile(filepath.Join(b, rel))
		if err != nil || !bytes.Equal(x, y) {
			t.Errorf("%s: not byte-identical after fetch (%v)", rel, err)
		}
		n++
		return nil
	})
	if n < 5 {
		t.Errorf("only %d files compared under %s", n, root)
	}
}

// s3CheckListedComplete asserts the invariant that the bucket's
// builds.json never lists a build whose meta.json or artifacts are
// missing (or differ from meta.json).
func s3CheckListedComplete(t *testing.T, c *s3.Client, bucket, prefix string) []string {
	t.Helper()
	data, err := s3Get(t, c, bucket, prefix+"/builds.json")
	if err != nil {
		t.Logf("no builds.json yet: %v", err)
		return nil
	}
	idx := &build.BuildsIndex{}
	if err := json.Unmarshal(data, idx); err != nil {
		t.Fatal(err)
	}
	for _, e := range idx.Builds {
		for _, arch := range e.Arches {
			base := prefix + "/" + e.ID + "/" + arch + "/"
			md, err := s3Get(t, c, bucket, base+"meta.json")
			if err != nil {
				t.Errorf("builds.json lists %s/%s but its meta.json is missing: %v", e.ID, arch, err)
				continue
			}
			m := &build.Meta{}
			if err := json.Unmarshal(md, m); err != nil {
				t.Fatal(err)
			}
			for name, a := range m.Images {
				h, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(base + a.Path)})
				if err != nil {
					t.Errorf("builds.json lists %s/%s but artifact %s is missing: %v", e.ID, arch, name, err)
					continue
				}
				if aws.ToInt64(h.ContentLength) != a.Size || h.Metadata["sha256"] != a.Sha256 {
					t.Errorf("builds.json lists %s/%s but artifact %s is incomplete (size %d of %d)", e.ID, arch, name, aws.ToInt64(h.ContentLength), a.Size)
				}
			}
		}
	}
	return idx.IDs()
}

// hookProxy is a loopback reverse proxy in front of the gateway that
// calls hook (which may block) before forwarding each request, so a test
// can act at a precise point of an upload.
func newHookProxy(t *testing.T, target string, hook func(*http.Request)) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0) // refused dials while the gateway is down are expected
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hook(r)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// firstPartSignal returns a hook closing the channel at the first
// multipart part PUT for a key ending in suffix.
func firstPartSignal(suffix string) (func(*http.Request), <-chan struct{}) {
	ch := make(chan struct{})
	var once sync.Once
	return func(r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Query().Get("partNumber") != "" && strings.HasSuffix(r.URL.Path, suffix) {
			once.Do(func() { close(ch) })
		}
	}, ch
}

// indexReadBarrier returns a hook that holds the first GET of builds.json
// until a second one arrives, so two uploaders merge the same state and
// race their conditional writes.
func indexReadBarrier() func(*http.Request) {
	var mu sync.Mutex
	n := 0
	both := make(chan struct{})
	return func(r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/builds.json") {
			return
		}
		mu.Lock()
		n++
		k := n
		mu.Unlock()
		switch k {
		case 1:
			select {
			case <-both:
			case <-time.After(30 * time.Second): // never hang the suite
			}
		case 2:
			close(both)
		}
	}
}
