package imagebuild

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/cosa-build/cosa/internal/ec2double"
	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/blueprint"
	"github.com/cosa-build/cosa/pkg/composer"
	"github.com/cosa-build/cosa/pkg/weldr"
)

// The profile's credentials: none of them may show up in a reply, a log or
// the compose record once the upload has ended.
const (
	testKeyID  = "AKIDSERVEUPLOADTEST"
	testSecret = "serve-upload-secret-not-real"
	testToken  = "serve-upload-session-token-not-real"
)

// fakeVMDKRunner stands in for a real cosa build: it writes a small vmdk
// (the ami type's image) and a meta.json into the image build's outputs.
type fakeVMDKRunner struct{ vmdk []byte }

func (f *fakeVMDKRunner) Run(ctx context.Context, job composer.Job) (composer.Result, error) {
	if err := os.WriteFile(filepath.Join(job.OutputDir, "disk.vmdk"), f.vmdk, 0o644); err != nil {
		return composer.Result{}, err
	}
	if err := os.WriteFile(filepath.Join(job.OutputDir, "meta.json"), []byte(`{"buildid":"1.0"}`), 0o644); err != nil {
		return composer.Result{}, err
	}
	return composer.Result{BuildID: "42.20261201.0", Artifacts: []composer.Artifact{{Name: "disk.vmdk"}, {Name: "meta.json"}}}, nil
}

// streamOptimizedVMDK is the start of a streamOptimized vmdk (magic and
// descriptor), padded; without the createType line EC2 (and its test
// double) refuses the import.
func streamOptimizedVMDK(streamOptimized bool) []byte {
	b := append([]byte("KDMV\x03\x00\x00\x00"), make([]byte, 504)...)
	desc := "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
	if streamOptimized {
		desc += "createType=\"streamOptimized\"\n"
	}
	b = append(b, desc...)
	return append(b, make([]byte, 64<<10)...)
}

// uploadFixture is the Weldr API over the real compose queue (state in a
// temp dir) whose Runner makes a fake vmdk, and whose uploads go through
// AWSUploader to an in-process S3 (gofakes3) and the EC2 TEST DOUBLE
// (internal/ec2double: there is no EC2 emulator to run here).
type uploadFixture struct {
	h      http.Handler
	q      *composer.Queue
	s3     *s3mem.Backend
	ec2    *ec2double.Double
	state  string
	logf   string
	bodies bytes.Buffer // every reply body

	mu     sync.Mutex
	keyIDs map[string]bool // access key ids EC2 requests were signed with
}

var credentialRE = regexp.MustCompile(`Credential=([^/,]+)/`)

func newUploadFixture(t *testing.T, vmdk []byte) *uploadFixture {
	t.Helper()
	// No credentials from the environment or files: only the profile's.
	testutil.IsolateAWS(t, "", "", "")

	f := &uploadFixture{keyIDs: map[string]bool{}}
	f.s3 = s3mem.New()
	if err := f.s3.CreateBucket("images"); err != nil {
		t.Fatal(err)
	}
	s3srv := httptest.NewServer(gofakes3.New(f.s3).Server())
	t.Cleanup(s3srv.Close)
	f.ec2 = ec2double.New(ec2double.FromS3mem(f.s3))
	ec2srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
			f.mu.Lock()
			f.keyIDs[m[1]] = true
			f.mu.Unlock()
		}
		f.ec2.ServeHTTP(w, r)
	}))
	t.Cleanup(ec2srv.Close)

	ctx := context.Background()
	dir := t.TempDir()
	f.state = filepath.Join(dir, "state")
	f.logf = filepath.Join(dir, "service.log")
	logw, err := os.OpenFile(f.logf, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logw.Close() })
	q, err := composer.New(ctx, composer.Options{
		StateDir: f.state, Runner: &fakeVMDKRunner{vmdk: vmdk},
		Types:        []composer.ImageType{{Name: "ami", Enabled: true}, {Name: "qcow2", Enabled: true}},
		Uploader:     &AWSUploader{S3Endpoint: s3srv.URL, EC2Endpoint: ec2srv.URL, WaitTimeout: 10 * time.Second, PollInterval: time.Millisecond},
		Logger:       slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug})),
		PollInterval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close(context.Background()) })
	f.q = q
	store, err := blueprint.Open(ctx, filepath.Join(dir, "bp"))
	if err != nil {
		t.Fatal(err)
	}
	f.h = weldr.New(weldr.Options{Blueprints: store, Composer: q, Log: log.New(logw, "", 0), Supported: Supported})
	f.do(t, "POST", "/api/v1/blueprints/new", "text/x-toml", "name = \"kiosk\"\ndescription = \"Kiosk\"\nversion = \"0.0.1\"\n", 200)
	return f
}

// do sends one request to the handler and returns the body, asserting the
// status.
func (f *uploadFixture) do(t *testing.T, method, route, ctype, body string, status int) []byte {
	t.Helper()
	req := httptest.NewRequest(method, "http://localhost"+route, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	f.bodies.Write(rec.Body.Bytes())
	if rec.Code != status {
		t.Fatalf("%s %s: status %d, want %d: %s", method, route, rec.Code, status, rec.Body.String())
	}
	return rec.Body.Bytes()
}

const profile = `{"provider":"aws","image_name":"kiosk-ami","settings":{"accessKeyID":"` + testKeyID +
	`","bucket":"images/uploads","key":"kiosk.vmdk","region":"eu-west-1","secretAccessKey":"` + testSecret +
	`","sessionToken":"` + testToken + `"}}`

// start starts an ami compose with the profile and waits until it ends.
func (f *uploadFixture) start(t *testing.T) (id string, info map[string]any) {
	t.Helper()
	body := f.do(t, "POST", "/api/v1/compose", "application/json",
		`{"blueprint_name":"kiosk","compose_type":"ami","branch":"master","size":0,"upload":`+profile+`}`, 200)
	var started struct {
		ID string `json:"build_id"`
	}
	if err := json.Unmarshal(body, &started); err != nil || started.ID == "" {
		t.Fatalf("compose start: %s (%v)", body, err)
	}
	deadline := time.After(30 * time.Second)
	for {
		changed := f.q.Changed()
		info = map[string]any{}
		if err := json.Unmarshal(f.do(t, "GET", "/api/v1/compose/info/"+started.ID, "", "", 200), &info); err != nil {
			t.Fatal(err)
		}
		if st := info["queue_status"]; st == "FINISHED" || st == "FAILED" {
			return started.ID, info
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("compose %s did not end: %v", started.ID, info)
		}
	}
}

// upload0 is the one upload of a compose info reply.
func upload0(t *testing.T, info map[string]any) map[string]any {
	t.Helper()
	ups, ok := info["uploads"].([]any)
	if !ok || len(ups) != 1 {
		t.Fatalf("uploads: %v", info["uploads"])
	}
	return ups[0].(map[string]any)
}

// noSecrets asserts that no credential is in any reply, in the service's
// log, in the build log or in the compose record, and that the record is
// private.
func (f *uploadFixture) noSecrets(t *testing.T, id string) {
	t.Helper()
	rec := filepath.Join(f.state, "composes", id+".json")
	fi, err := os.Stat(rec)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("compose record mode %v, want 0600", fi.Mode().Perm())
	}
	texts := map[string][]byte{"replies": f.bodies.Bytes()}
	for name, path := range map[string]string{"service log": f.logf, "compose record": rec} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		texts[name] = data
	}
	c, err := f.q.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(f.state, "outputs", id, c.Builds[0].ID, "log"))
	if err != nil {
		t.Fatal(err)
	}
	texts["build log"] = data
	for name, text := range texts {
		for _, s := range []string{testKeyID, testSecret, testToken} {
			if bytes.Contains(text, []byte(s)) {
				t.Errorf("%s contains the credential %q", name, s)
			}
		}
	}
	if !bytes.Contains(texts["compose record"], []byte(`"region": "eu-west-1"`)) {
		t.Errorf("the record lost the public settings:\n%s", texts["compose record"])
	}
}

func TestComposeUploadAWS(t *testing.T) {
	f := newUploadFixture(t, streamOptimizedVMDK(true))
	id, info := f.start(t)
	if info["queue_status"] != "FINISHED" {
		t.Fatalf("compose info: %v", info)
	}
	up := upload0(t, info)
	ims := f.ec2.RegionImages("eu-west-1")
	if len(ims) != 1 || ims[0].Name != "kiosk-ami" || ims[0].Tags["cosa-build-id"] != "42.20261201.0" {
		t.Fatalf("eu-west-1 images: %+v", ims)
	}
	if up["status"] != "FINISHED" || up["provider_name"] != "aws" || up["image_name"] != "kiosk-ami" {
		t.Errorf("upload: %v", up)
	}
	if res, _ := up["result"].(map[string]any); len(res) != 1 || res["eu-west-1"] != ims[0].ID {
		t.Errorf("upload result %v, want eu-west-1: %s", up["result"], ims[0].ID)
	}
	if st, _ := up["settings"].(map[string]any); st["region"] != "eu-west-1" || st["bucket"] != "images/uploads" || len(st) != 3 {
		t.Errorf("upload settings %v", up["settings"])
	}
	// The vmdk is in S3 under the profile's bucket prefix and key, and
	// EC2 was called with the profile's credentials.
	obj, err := f.s3.GetObject("images", "uploads/kiosk.vmdk", nil)
	if err != nil {
		t.Fatal(err)
	}
	obj.Contents.Close()
	if len(f.keyIDs) != 1 || !f.keyIDs[testKeyID] {
		t.Errorf("EC2 requests signed with %v, want only the profile's key", f.keyIDs)
	}

	// The upload routes show the same, by upload id.
	uid := up["uuid"].(string)
	var ui struct {
		Upload map[string]any `json:"upload"`
	}
	if err := json.Unmarshal(f.do(t, "GET", "/api/v1/upload/info/"+uid, "", "", 200), &ui); err != nil {
		t.Fatal(err)
	}
	if ui.Upload["status"] != "FINISHED" || ui.Upload["uuid"] != uid {
		t.Errorf("upload info %v", ui.Upload)
	}
	var ul struct {
		Log string `json:"log"`
	}
	if err := json.Unmarshal(f.do(t, "GET", "/api/v1/upload/log/"+uid, "", "", 200), &ul); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ul.Log, "Registered "+ims[0].ID) || !strings.Contains(ul.Log, "is FINISHED") {
		t.Errorf("upload log:\n%s", ul.Log)
	}
	f.do(t, "GET", "/api/v1/upload/info/0d6f0000-0000-4000-8000-000000000000", "", "", 400)
	// The image itself is still the compose's to download.
	if img := f.do(t, "GET", "/api/v1/compose/image/"+id, "", "", 200); len(img) != len(streamOptimizedVMDK(true)) {
		t.Errorf("image is %d bytes", len(img))
	}
	f.do(t, "GET", "/api/v1/compose/log/"+id, "", "", 200)
	f.noSecrets(t, id)
}

func TestComposeUploadAWSImportFails(t *testing.T) {
	// A vmdk EC2 refuses at import (not streamOptimized).
	f := newUploadFixture(t, streamOptimizedVMDK(false))
	id, info := f.start(t)
	if info["queue_status"] != "FAILED" {
		t.Fatalf("compose info: %v", info)
	}
	up := upload0(t, info)
	msg, _ := up["error"].(string)
	if up["status"] != "FAILED" || !strings.Contains(msg, "Disk validation failed") {
		t.Errorf("upload: %v", up)
	}
	if e, _ := info["error"].(string); !strings.Contains(e, "Disk validation failed") {
		t.Errorf("compose error %q does not say why", e)
	}
	c, err := f.q.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Builds[0]; b.State != composer.Finished || len(b.Artifacts) != 2 {
		t.Errorf("image build %s %v, want FINISHED with its artifacts", b.State, b.Artifacts)
	}
	// The image is there to download all the same.
	if img := f.do(t, "GET", "/api/v1/compose/image/"+id, "", "", 200); len(img) != len(streamOptimizedVMDK(false)) {
		t.Errorf("image is %d bytes", len(img))
	}
	if ims := f.ec2.RegionImages("eu-west-1"); len(ims) != 0 {
		t.Errorf("images registered: %+v", ims)
	}
	f.noSecrets(t, id)
}

func TestComposeUploadRefused(t *testing.T) {
	f := newUploadFixture(t, streamOptimizedVMDK(true))
	for _, c := range []struct{ typ, upload, want string }{
		{"ami", `{"provider":"aws","image_name":"x-ami","settings":{"region":"eu-west-1","bucket":"b","accessKeyID":"` + testKeyID + `"}}`, "accessKeyID and secretAccessKey go together"},
		{"ami", `{"provider":"aws","image_name":"x-ami","settings":{"region":"eu-west-1","bucket":"b","password":"` + testSecret + `"}}`, "unknown aws setting(s) password"},
		{"ami", `{"provider":"aws","image_name":"x-ami","settings":{"bucket":"b"}}`, "region is missing"},
		{"ami", `{"provider":"aws","image_name":"x-ami","settings":{"region":"Europe","bucket":"b"}}`, `aws setting region \"Europe\" is not a region name`},
		{"qcow2", `{"provider":"aws","image_name":"x-ami","settings":{"region":"eu-west-1","bucket":"b"}}`, "not qcow2"},
	} {
		body := f.do(t, "POST", "/api/v1/compose", "application/json",
			`{"blueprint_name":"kiosk","compose_type":"`+c.typ+`","branch":"master","size":0,"upload":`+c.upload+`}`, 400)
		if !bytes.Contains(body, []byte(`"ComposeError"`)) || !bytes.Contains(body, []byte(c.want)) {
			t.Errorf("%s: %s, want ComposeError with %q", c.upload, body, c.want)
		}
	}
	if bytes.Contains(f.bodies.Bytes(), []byte(testSecret)) || bytes.Contains(f.bodies.Bytes(), []byte(testKeyID)) {
		t.Errorf("a reply echoes a credential: %s", f.bodies.String())
	}
	all, err := f.q.List(context.Background())
	if err != nil || len(all) != 0 {
		t.Errorf("composes queued: %v %v", all, err)
	}
}

func TestRedactor(t *testing.T) {
	var out bytes.Buffer
	w := &redactor{w: &out, secrets: secrets(map[string]string{"accessKeyID": testKeyID, "secretAccessKey": testSecret, "region": "eu-west-1"})}
	line := "InvalidAccessKeyId: " + testKeyID + " signed with " + testSecret + " in eu-west-1\n"
	if n, err := w.Write([]byte(line)); err != nil || n != len(line) {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if got := out.String(); strings.Contains(got, testKeyID) || strings.Contains(got, testSecret) || !strings.Contains(got, "[redacted] signed with [redacted] in eu-west-1") {
		t.Errorf("redacted line %q", got)
	}
}
