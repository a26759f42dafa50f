package tests

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// TestS3 runs buildupload and buildfetch against a real S3 server
// (versitygw with its posix backend on loopback): skip-unchanged, byte
// identical round trip, corrupt objects, concurrent uploaders and a server
// killed in the middle of a multipart upload.
func TestS3(t *testing.T) {
	bin := versitygwBin(t)
	s3Env(t)
	gw := startGateway(t, bin)
	const bucket, prefix = "cosa", "fcos/dev"
	if err := os.MkdirAll(filepath.Join(gw.dataDir, bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	client := s3Client(t, gw.url())
	dest := bucket + "/" + prefix
	s3url := "s3://" + dest
	up := func(w string, extra ...string) result {
		return cosa(t, w, append(append([]string{"buildupload"}, extra...), "s3", "--endpoint-url", gw.url(), dest)...)
	}

	newWorkdir := func() string {
		w := t.TempDir()
		mustCosa(t, w, "init")
		return w
	}
	const id0, id1, id2, id3, id4 = "42.20261122.dev.0", "42.20261122.dev.1", "42.20261122.dev.2", "42.20261122.dev.3", "42.20261122.dev.4"

	w1 := newWorkdir()
	s3FakeBuild(t, w1, id0, map[string]int64{"ostree": 300_000, "qemu": 3_000_000})

	t.Run("upload", func(t *testing.T) {
		before := gw.puts()
		r := up(w1)
		if r.Code != 0 {
			t.Fatalf("buildupload: exit %d\n%s", r.Code, r.Stderr)
		}
		// ostree, qemu, commitmeta, pkglist, meta, builds.json.
		if n := gw.puts() - before; n != 6 {
			t.Errorf("first upload: %d PUTs in the access log, want 6", n)
		}
		if !strings.Contains(r.Stderr, "MB/s") {
			t.Errorf("no per-object progress with MB/s:\n%s", r.Stderr)
		}
		if ids := s3CheckListedComplete(t, client, bucket, prefix); !slices.Equal(ids, []string{id0}) {
			t.Errorf("builds.json lists %v", ids)
		}
	})

	t.Run("upload-again-uploads-nothing", func(t *testing.T) {
		before := gw.puts()
		r := mustCosa(t, w1, "buildupload", "--json", "s3", "--endpoint-url", gw.url(), dest)
		if n := gw.puts() - before; n != 0 {
			t.Errorf("second upload: %d PUTs, want 0", n)
		}
		last := resultOf(t, r, "buildupload s3")
		if last["uploaded"] != float64(0) || last["skipped"] != float64(5) || len(last["objects"].([]any)) != 0 {
			t.Errorf("result event %v", last)
		}
	})

	t.Run("dry-run", func(t *testing.T) {
		before := gw.puts()
		r := mustCosa(t, w1, "buildupload", "--dry-run", "--force", "s3", "--endpoint-url", gw.url(), dest)
		if n := gw.puts() - before; n != 0 {
			t.Errorf("dry run: %d PUTs", n)
		}
		if strings.Count(r.Stderr, "would upload") != 5 {
			t.Errorf("dry run should list 5 objects:\n%s", r.Stderr)
		}
	})

	t.Run("fetch-byte-identical", func(t *testing.T) {
		w2 := newWorkdir()
		rf := mustCosa(t, w2, "--json", "buildfetch", "--url", s3url, "--endpoint-url", gw.url(), "--artifact", "all")
		s3SameFiles(t, w1, w2, id0)
		if res := resultOf(t, rf, "buildfetch"); res["build"] != id0 || res["fetched"] != float64(len(res["objects"].([]any))) || res["fetched"].(float64) < 5 {
			t.Errorf("buildfetch --json result %v", res)
		}
		if l := latest(t, w2); l != id0 {
			t.Errorf("latest = %s", l)
		}
		// Metadata only by default; the build is listed and on disk.
		w3 := newWorkdir()
		mustCosa(t, w3, "buildfetch", "--url", s3url, "--endpoint-url", gw.url())
		m, _ := readMeta(t, w3, id0)
		for _, f := range []string{"commitmeta.json", "pkglist.json"} {
			if _, err := os.Stat(filepath.Join(w3, "builds", id0, s3TestArch, f)); err != nil {
				t.Error(err)
			}
		}
		if _, err := os.Stat(filepath.Join(w3, "builds", id0, s3TestArch, m.Images["qemu"].Path)); !os.IsNotExist(err) {
			t.Errorf("qemu fetched without --artifact: %v", err)
		}
		r := mustCosa(t, w3, "list")
		if !strings.Contains(r.Stdout, id0) {
			t.Errorf("cosa list after buildfetch:\n%s", r.Stdout)
		}
	})

	t.Run("corrupt-object", func(t *testing.T) {
		m, _ := readMeta(t, w1, id0)
		obj := filepath.Join(gw.dataDir, bucket, prefix, id0, s3TestArch, m.Images["qemu"].Path)
		data, err := os.ReadFile(obj)
		if err != nil {
			t.Fatal(err)
		}
		data[12345] ^= 0x55
		if err := os.WriteFile(obj, data, 0o644); err != nil {
			t.Fatal(err)
		}
		w4 := newWorkdir()
		r := cosa(t, w4, "buildfetch", "--url", s3url, "--endpoint-url", gw.url(), "--artifact", "qemu")
		if r.Code != 1 || !strings.Contains(r.Stderr, "artifact qemu") || !strings.Contains(r.Stderr, m.Images["qemu"].Path) {
			t.Errorf("want exit 1 naming the artifact, got %d:\n%s", r.Code, r.Stderr)
		}
		// Nothing of the build is left: no partial or temporary file.
		filepath.WalkDir(filepath.Join(w4, "builds", id0), func(p string, de os.DirEntry, err error) error {
			if err == nil && !de.IsDir() {
				t.Errorf("left behind after a failed fetch: %s", p)
			}
			return nil
		})
		// The bucket's copy still claims the right sha256, so only
		// --force repairs it.
		mustCosa(t, w1, "buildupload", "--force", "s3", "--endpoint-url", gw.url(), dest)
		mustCosa(t, w4, "buildfetch", "--url", s3url, "--endpoint-url", gw.url(), "--artifact", "qemu")
	})

	t.Run("concurrent-uploads", func(t *testing.T) {
		wa, wb := newWorkdir(), newWorkdir()
		s3FakeBuild(t, wa, id1, map[string]int64{"ostree": 1000, "qemu": 2_000_000})
		s3FakeBuild(t, wb, id2, map[string]int64{"ostree": 1000, "qemu": 2_000_000})
		// Through a proxy that makes both read builds.json before either
		// writes it, so one conditional write must fail and be retried.
		endpoint := newHookProxy(t, gw.url(), indexReadBarrier())
		rejected := gw.statusCount("s3_PutObject", "412")
		var cmds []*exec.Cmd
		var outs []*strings.Builder
		for _, w := range []string{wa, wb} {
			cmd := exec.Command(cosaBin, "buildupload", "s3", "--endpoint-url", endpoint, dest)
			cmd.Dir = w
			out := &strings.Builder{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds, outs = append(cmds, cmd), append(outs, out)
		}
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Errorf("concurrent buildupload %d: %v\n%s", i, err, outs[i])
			}
			t.Logf("concurrent buildupload %d:\n%s", i, outs[i])
		}
		ids := s3CheckListedComplete(t, client, bucket, prefix)
		for _, id := range []string{id0, id1, id2} {
			if !slices.Contains(ids, id) {
				t.Errorf("builds.json lost %s: %v", id, ids)
			}
		}
		if n := gw.statusCount("s3_PutObject", "412") - rejected; n < 1 {
			t.Errorf("versitygw rejected %d conditional builds.json writes, want at least 1", n)
		} else {
			t.Logf("versitygw rejected %d stale conditional write(s) of builds.json with 412; the loser re-merged", n)
		}
	})

	t.Run("conditional-writes-honoured", func(t *testing.T) {
		ctx := context.Background()
		key := prefix + "/probe"
		put := func(ifMatch, ifNoneMatch *string) error {
			_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
				Body: strings.NewReader(time.Now().String()), IfMatch: ifMatch, IfNoneMatch: ifNoneMatch})
			return err
		}
		is412 := func(err error) bool {
			var ae smithy.APIError
			return errors.As(err, &ae) && ae.ErrorCode() == "PreconditionFailed"
		}
		if err := put(nil, aws.String("*")); err != nil {
			t.Fatal(err)
		}
		if err := put(nil, aws.String("*")); !is412(err) {
			t.Errorf("versitygw: If-None-Match: * on an existing key gave %v, want PreconditionFailed", err)
		}
		if err := put(aws.String(`"00000000000000000000000000000000"`), nil); !is412(err) {
			t.Errorf("versitygw: stale If-Match gave %v, want PreconditionFailed", err)
		}
		h, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		if err := put(h.ETag, nil); err != nil {
			t.Errorf("current If-Match: %v", err)
		}
		client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	})

	// killMidMultipart starts an upload of a 200 MB artifact, SIGKILLs the
	// gateway while its parts are in flight, and restarts it on the same
	// port and data. With crashUploader, cosa is killed too while the
	// gateway is down (an abandoned multipart upload); otherwise cosa's
	// retries carry on against the restarted gateway. Either way a rerun
	// must finish, and builds.json must never list an incomplete build.
	killMidMultipart := func(t *testing.T, id string, crashUploader bool) {
		w := newWorkdir()
		s3FakeBuild(t, w, id, map[string]int64{"ostree": 1000, "qemu": 200_000_000})
		m, _ := readMeta(t, w, id)
		hook, firstPart := firstPartSignal(m.Images["qemu"].Path)
		endpoint := newHookProxy(t, gw.url(), hook)
		cmd := exec.Command(cosaBin, "buildupload", "s3", "--endpoint-url", endpoint, dest)
		cmd.Dir = w
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = &lockedWriter{w: out}, &lockedWriter{w: out}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-firstPart:
		case err := <-done:
			t.Fatalf("buildupload ended before its multipart upload began: %v\n%s", err, out)
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			t.Fatalf("no multipart upload seen")
		}
		gw.kill() // SIGKILL by PID while parts are in flight
		// The server is gone: look at its data directly.
		if data, err := os.ReadFile(filepath.Join(gw.dataDir, bucket, prefix, "builds.json")); err == nil && strings.Contains(string(data), id) {
			t.Errorf("builds.json lists %s while its upload was cut short", id)
		}
		var firstErr error
		if crashUploader {
			cmd.Process.Kill() // by PID
			firstErr = <-done
			gw.start()
		} else {
			gw.start() // same port, same data
			select {
			case firstErr = <-done:
			case <-time.After(5 * time.Minute):
				cmd.Process.Kill()
				firstErr = <-done
			}
		}
		t.Logf("interrupted buildupload ended with %v\n%s", firstErr, tail(out.String(), 20))
		ids := s3CheckListedComplete(t, client, bucket, prefix)
		if firstErr != nil && slices.Contains(ids, id) {
			t.Errorf("failed upload left %s listed", id)
		}
		t0 := time.Now()
		r := mustCosa(t, w, "buildupload", "s3", "--endpoint-url", gw.url(), dest)
		t.Logf("rerun took %s: %s", time.Since(t0).Round(time.Millisecond), strings.TrimSpace(r.Stdout))
		if ids := s3CheckListedComplete(t, client, bucket, prefix); !slices.Contains(ids, id) {
			t.Errorf("after the rerun builds.json lists %v, want %s", ids, id)
		}
		w5 := newWorkdir()
		mustCosa(t, w5, "buildfetch", "--url", s3url, "--endpoint-url", gw.url(), "--build", id, "--artifact", "qemu")
	}
	t.Run("server-killed-mid-multipart-retried", func(t *testing.T) { killMidMultipart(t, id3, false) })
	t.Run("server-and-uploader-killed-mid-multipart", func(t *testing.T) { killMidMultipart(t, id4, true) })

	t.Run("fetch-merges-builds-json", func(t *testing.T) {
		w := newWorkdir()
		mustCosa(t, w, "buildfetch", "--url", s3url, "--endpoint-url", gw.url(), "--build", id1)
		// Every remote build stays listed; only id1 is on disk.
		if got := readIndex(t, w).IDs(); !slices.Equal(got, []string{id4, id3, id2, id1, id0}) {
			t.Errorf("fetched builds.json ids %v", got)
		}
		r := mustCosa(t, w, "list")
		if strings.Count(r.Stdout, "(not on disk)") != 4 {
			t.Errorf("cosa list should show 4 builds not on disk:\n%s", r.Stdout)
		}
	})

	t.Run("throughput", func(t *testing.T) {
		// A fresh prefix so everything is uploaded; reports MB/s to the
		// local server for the 200 MB artifact.
		w := t.TempDir()
		mustCosa(t, w, "init")
		s3FakeBuild(t, w, id3, map[string]int64{"ostree": 1000, "qemu": 200_000_000})
		r := mustCosa(t, w, "buildupload", "s3", "--endpoint-url", gw.url(), bucket+"/throughput")
		for _, line := range strings.Split(r.Stderr, "\n") {
			if strings.Contains(line, "qemu") {
				t.Logf("throughput: %s", line)
			}
		}
		t.Logf("throughput summary: %s", strings.TrimSpace(r.Stdout))
	})
}
