package composer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// testUploader blocks each upload until its context ends, unless finish
// is set; then it returns a result naming the image build.
type testUploader struct {
	finish  bool
	started chan string // image build ids
	jobs    chan UploadJob
}

func newUploader(finish bool) *testUploader {
	return &testUploader{finish: finish, started: make(chan string, 10), jobs: make(chan UploadJob, 10)}
}

func (u *testUploader) Check(up Upload, imageType string) error {
	if up.Settings["region"] == "" {
		return errors.New("region is missing")
	}
	return nil
}

func (u *testUploader) Upload(ctx context.Context, job UploadJob) (map[string]string, error) {
	fmt.Fprintf(job.Log, "uploading %s\n", job.Artifacts[0].Name)
	u.jobs <- job
	u.started <- job.ImageBuildID
	if !u.finish {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return map[string]string{"eu-west-1": "ami-" + job.ImageBuildID[:8]}, nil
}

var testUpload = &Upload{Provider: "aws", ImageName: "img",
	Settings: map[string]string{"region": "eu-west-1", "bucket": "b", "accessKeyID": "AKIDQUEUE", "secretAccessKey": "queue-secret"}}

func openWithUploader(t *testing.T, dir string, r Runner, u Uploader) *Queue {
	t.Helper()
	return openWith(t, Options{StateDir: dir, Runner: r, Uploader: u})
}

func startUpload(t *testing.T, q *Queue, typ string) *Compose {
	t.Helper()
	c, err := q.Start(context.Background(), Request{Blueprint: []byte(testBlueprint), Types: []string{typ}, Upload: testUpload})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// secretsInRecord says whether the compose record holds the credentials.
func secretsInRecord(t *testing.T, q *Queue, id string) bool {
	t.Helper()
	data, err := os.ReadFile(q.recordPath(id))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(data), "queue-secret") || strings.Contains(string(data), "AKIDQUEUE")
}

func TestUploadStoppedAndResumed(t *testing.T) {
	dir := t.TempDir()
	r, u := newRunner(true), newUploader(false)
	q := openWithUploader(t, dir, r, u)
	c := startUpload(t, q, "ok")
	if c.Builds[0].Upload == nil || c.Builds[0].Upload.State != Waiting || c.Builds[0].Upload.Settings["accessKeyID"] != "" {
		t.Fatalf("upload at start: %+v", c.Builds[0].Upload)
	}
	recv(t, u.started)
	job := <-u.jobs
	if job.Upload.Settings["secretAccessKey"] != "queue-secret" || job.Artifacts[0].Name != "disk.img" || job.BuildID != "1.0-ok" {
		t.Errorf("upload job: %+v", job)
	}
	got, err := q.Get(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b := got.Builds[0]; b.State != Finished || b.Upload.State != Running || got.State() != Running {
		t.Fatalf("while uploading: build %s, upload %s, compose %s", b.State, b.Upload.State, got.State())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q.Close(ctx)
	// Stopped mid-upload: the image stays, the upload waits for the next
	// start and still has its credentials.
	rec, err := q.readRecord(c.ID)
	if err != nil || rec.Builds[0].State != Finished || rec.Builds[0].Upload.State != Waiting || !secretsInRecord(t, q, c.ID) {
		t.Fatalf("record after the stop: %+v, %v", rec, err)
	}

	r2, u2 := newRunner(true), newUploader(true)
	q2 := openWithUploader(t, dir, r2, u2)
	done := waitState(t, q2, c.ID, Finished)
	up := done.Builds[0].Upload
	if up.State != Finished || up.Result["eu-west-1"] != "ami-"+done.Builds[0].ID[:8] {
		t.Errorf("upload after the restart: %+v", up)
	}
	select {
	case id := <-r2.started:
		t.Errorf("the image build %s ran again; only its upload should have", id)
	default:
	}
	if secretsInRecord(t, q2, c.ID) {
		t.Error("the credentials stay in the record after the upload")
	}
}

func TestUploadCancelled(t *testing.T) {
	r, u := newRunner(true), newUploader(false)
	q := openWithUploader(t, t.TempDir(), r, u)
	c := startUpload(t, q, "ok")
	recv(t, u.started)
	if err := q.Cancel(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, q, c.ID, Failed)
	if b := got.Builds[0]; b.State != Finished || b.Upload.State != Failed || b.Upload.Error != ReasonCancelled {
		t.Errorf("after cancel: build %s, upload %+v", b.State, b.Upload)
	}
	if secretsInRecord(t, q, c.ID) {
		t.Error("the credentials stay in the record after the cancel")
	}
}

func TestUploadOfFailedBuild(t *testing.T) {
	r, u := newRunner(true), newUploader(true)
	q := openWithUploader(t, t.TempDir(), r, u)
	c := startUpload(t, q, "fail")
	got := waitState(t, q, c.ID, Failed)
	if up := got.Builds[0].Upload; up.State != Failed || !strings.Contains(up.Error, "image build failed") {
		t.Errorf("upload of a failed build: %+v", up)
	}
	if secretsInRecord(t, q, c.ID) {
		t.Error("the credentials stay in the record")
	}
	select {
	case id := <-u.started:
		t.Errorf("uploaded %s", id)
	default:
	}
}

func TestUploadRefused(t *testing.T) {
	q := openWithUploader(t, t.TempDir(), newRunner(true), newUploader(true))
	_, err := q.Start(context.Background(), Request{Blueprint: []byte(testBlueprint), Types: []string{"ok"},
		Upload: &Upload{Provider: "aws", Settings: map[string]string{}}})
	if err == nil || !strings.Contains(err.Error(), "region is missing") {
		t.Errorf("start with a bad profile: %v", err)
	}
	q2 := open(t, t.TempDir(), newRunner(true))
	if _, err := q2.Start(context.Background(), Request{Blueprint: []byte(testBlueprint), Types: []string{"ok"}, Upload: testUpload}); err == nil {
		t.Error("a queue without an uploader took an upload")
	}
}

func TestKilledMidUpload(t *testing.T) {
	t.Setenv("COSA_COMPOSER_TEST_UPLOAD", "1")
	dir := t.TempDir()
	id := runAndKill(t, dir, "")
	// What a kill leaves: the build FINISHED, its upload RUNNING.
	rec, err := (&Queue{stateDir: dir}).readRecord(id)
	if err != nil || rec.Builds[0].State != Finished || rec.Builds[0].Upload.State != Running {
		t.Fatalf("record after the kill: %+v, %v", rec, err)
	}
	r, u := newRunner(true), newUploader(true)
	q := openWithUploader(t, dir, r, u)
	c := waitState(t, q, id, Finished)
	if up := c.Builds[0].Upload; up.State != Finished || len(up.Result) != 1 {
		t.Errorf("upload after the restart: %+v", up)
	}
	select {
	case b := <-r.started:
		t.Errorf("the image build %s ran again; only its upload should have", b)
	default:
	}
	if secretsInRecord(t, q, id) {
		t.Error("the credentials stay in the record after the upload")
	}
}

func TestRedact(t *testing.T) {
	got := redact("403: key AKIDQUEUE, secret queue-secret, region eu-west-1", testUpload.Settings)
	if strings.Contains(got, "AKIDQUEUE") || strings.Contains(got, "queue-secret") || !strings.Contains(got, "region eu-west-1") {
		t.Errorf("redact: %q", got)
	}
}
