package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/remote"
)

// cosaRemote runs the CLI as cosa() does (main.go registers every command).
func cosaRemote(t *testing.T, args ...string) result {
	t.Helper()
	return cosa(t, args...)
}

// fakeS3 serves gofakes3 on loopback with bucket "bkt" and points the SDK's
// default credential chain at throwaway keys.
func fakeS3(t *testing.T) string {
	t.Helper()
	testutil.IsolateAWS(t, "TESTKEY", "TESTSECRET", "us-east-1")
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	c, err := remote.NewS3Client(context.Background(), remote.S3Config{EndpointURL: srv.URL,
		Credentials: credentials.NewStaticCredentialsProvider("TESTKEY", "TESTSECRET", "")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("bkt")}); err != nil {
		t.Fatal(err)
	}
	return srv.URL
}

// remoteWorkdir makes a workdir with one finished-looking build.
func remoteWorkdir(t *testing.T, id string) string {
	t.Helper()
	wd := t.TempDir()
	cosa(t, "init", "-C", wd).wantCode(t, 0)
	d := &build.Dir{Root: filepath.Join(wd, "builds")}
	dir := d.BuildDir(id, arch)
	os.MkdirAll(dir, 0o755)
	data := []byte(strings.Repeat("ostree-bits ", 1000))
	if err := os.WriteFile(filepath.Join(dir, "img.ociarchive"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "commitmeta.json"), []byte("{}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "pkglist.json"), []byte("[]\n"), 0o644)
	sum := fileutil.SHA256Hex(data)
	m := &build.Meta{BuildID: id, Name: "fcos", OSTreeCommit: sum, OSTreeTimestamp: "2026-11-22T00:00:00Z", OSTreeVersion: id,
		Images: map[string]build.Artifact{"ostree": {Path: "img.ociarchive", Sha256: sum, Size: int64(len(data))}}}
	testutil.PublishBuild(t, d, id, arch, m, true)
	return wd
}

func TestRemoteUsageErrors(t *testing.T) {
	wd := t.TempDir()
	for _, args := range [][]string{
		{"buildupload"},
		{"buildupload", "s3"},
		{"buildupload", "--all", "--build", "x", "s3", "b/p"},
		{"buildupload", "s3", "--acl", "world-writable", "b/p"},
		{"buildupload", "s3", "b/p", "extra"},
		{"buildupload", "s3", "b/../x/.."},
		{"buildfetch"},
		{"buildfetch", "--url", "ftp://x/y"},
		{"buildfetch", "--url", "/x", "--build", "../etc"},
		{"buildfetch", "--url", "/x", "positional"},
	} {
		r := cosaRemote(t, append([]string{"-C", wd}, args...)...)
		if r.code != exitBadInput {
			t.Errorf("cosa %s: exit %d, want 2\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

func TestRemoteUploadFetchCLI(t *testing.T) {
	endpoint := fakeS3(t)
	const id = "42.20261122.dev.0"
	wd := remoteWorkdir(t, id)
	r := cosaRemote(t, "-C", wd, "buildupload", "s3", "--endpoint-url", endpoint, "bkt/fcos")
	r.wantCode(t, 0)
	if !strings.Contains(r.stdout, "5 objects uploaded") || !strings.Contains(r.stderr, "MB/s") {
		t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, "TESTSECRET") {
		t.Error("secret printed")
	}
	// --json: one event per line, ending with the result.
	r = cosaRemote(t, "-C", wd, "--json", "buildupload", "s3", "--endpoint-url", endpoint, "bkt/fcos").wantCode(t, 0)
	last := resultOf(t, "buildupload s3", r.stdout)
	if last["uploaded"] != float64(0) || last["skipped"] != float64(4) || last["destination"] != "s3://bkt/fcos" {
		t.Errorf("json result %v", last)
	}

	dst := t.TempDir()
	cosa(t, "init", "-C", dst).wantCode(t, 0)
	r = cosaRemote(t, "-C", dst, "buildfetch", "--url", "s3://bkt/fcos", "--endpoint-url", endpoint, "--artifact", "all").wantCode(t, 0)
	for _, f := range []string{"meta.json", "commitmeta.json", "pkglist.json", "img.ociarchive"} {
		a, _ := os.ReadFile(filepath.Join(wd, "builds", id, arch, f))
		b, err := os.ReadFile(filepath.Join(dst, "builds", id, arch, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs after fetch: %v", f, err)
		}
	}
	// cosa meta / list see the fetched build as the latest.
	cosa(t, "-C", dst, "meta", "--get", "buildid").wantCode(t, 0).wantStdout(t, id+"\n")
	// Fetching the same build from the local path form works too.
	dst2 := t.TempDir()
	cosa(t, "init", "-C", dst2).wantCode(t, 0)
	cosaRemote(t, "-C", dst2, "buildfetch", "--url", filepath.Join(wd, "builds")).wantCode(t, 0)
	// A differing local build is refused (exit 1) unless --force.
	r = cosaRemote(t, "-C", wd, "buildfetch", "--url", "file://"+filepath.Join(dst2, "builds"))
	r.wantCode(t, 0) // identical meta.json: fine
	mp := filepath.Join(dst2, "builds", id, arch, "meta.json")
	m, _ := os.ReadFile(mp)
	os.WriteFile(mp, bytes.Replace(m, []byte(`"fcos"`), []byte(`"other"`), 1), 0o644)
	r = cosaRemote(t, "-C", wd, "buildfetch", "--url", filepath.Join(dst2, "builds"))
	if r.code != exitFailure || !strings.Contains(r.stderr, "--force") {
		t.Errorf("differing build: exit %d %s", r.code, r.stderr)
	}
}
