package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cosa-build/cosa/pkg/build"
)

// compressQemu does what `cosa compress` does to the qemu image of a
// build: writes the compressed file, points meta.json at it and removes
// the original.
func compressQemu(t *testing.T, d *build.Dir, id string) {
	t.Helper()
	dir := d.BuildDir(id, testArch)
	gz := []byte("pretend this is gzip")
	sum := sha256.Sum256(gz)
	var old string
	err := d.UpdateMeta(context.Background(), id, testArch, func(m *build.Meta) error {
		a := m.Images["qemu"]
		old = a.Path
		a.Path += ".gz"
		if err := os.WriteFile(filepath.Join(dir, a.Path), gz, 0o644); err != nil {
			return err
		}
		a.Sha256, a.Size = hex.EncodeToString(sum[:]), int64(len(gz))
		m.Images["qemu"] = a
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, old)); err != nil {
		t.Fatal(err)
	}
}

// assertRemoteConsistent checks that every image the bucket's meta.json
// names is in the bucket with that size.
func assertRemoteConsistent(t *testing.T, f *fakeServer, id string) {
	t.Helper()
	m := &build.Meta{}
	if err := m.UnmarshalJSON(getObject(t, f.Client, id+"/"+testArch+"/meta.json")); err != nil {
		t.Fatal(err)
	}
	for name, a := range m.Images {
		h, err := f.Client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String(id + "/" + testArch + "/" + a.Path)})
		if err != nil {
			t.Errorf("published meta.json names image %s at %s, which is not in the bucket: %v", name, a.Path, err)
			continue
		}
		if aws.ToInt64(h.ContentLength) != a.Size || h.Metadata[ShaMetaKey] != a.Sha256 {
			t.Errorf("image %s in the bucket does not match the published meta.json", name)
		}
	}
}

// A compress that lands after the artifacts went up but before meta.json
// does must not publish the new meta.json: it names an object never
// uploaded.
func TestUploadCompressRaceAfterArtifacts(t *testing.T) {
	f := newFakeS3(t)
	d := newDir(t)
	const id = "42.20261122.dev.0"
	makeBuild(t, d, id, 100)
	before, err := os.ReadFile(d.MetaPath(id, testArch))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	f.hook = func(r *http.Request) {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/"+PkgListFile) {
			once.Do(func() { compressQemu(t, d, id) })
		}
	}
	if _, err := Upload(context.Background(), UploadOptions{Client: f.Client, Dest: S3Location{Bucket: "bkt"}, Dir: d, Builds: []string{id}}); err != nil {
		t.Fatal(err)
	}
	f.hook = nil
	if got := getObject(t, f.Client, id+"/"+testArch+"/meta.json"); string(got) != string(before) {
		t.Error("the uploaded meta.json is not the one the upload read")
	}
	assertRemoteConsistent(t, f, id)
}

// A compress that removes an artifact before its upload fails the upload
// with a clear message, and nothing is listed.
func TestUploadCompressRaceBeforeArtifact(t *testing.T) {
	f := newFakeS3(t)
	d := newDir(t)
	const id = "42.20261122.dev.0"
	makeBuild(t, d, id, 100)
	var once sync.Once
	f.hook = func(r *http.Request) {
		// Images go up in name order: ostree, then qemu.
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "-ostree.ociarchive") {
			once.Do(func() { compressQemu(t, d, id) })
		}
	}
	_, err := Upload(context.Background(), UploadOptions{Client: f.Client, Dest: S3Location{Bucket: "bkt"}, Dir: d, Builds: []string{id}})
	f.hook = nil
	if err == nil || !strings.Contains(err.Error(), "changed while uploading") {
		t.Fatalf("want an error saying the build changed, got %v", err)
	}
	if _, err := f.Client.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String(id + "/" + testArch + "/meta.json")}); !isNotFound(err) {
		t.Errorf("meta.json published after a failed upload: %v", err)
	}
	if idx := readRemoteIndex(t, f.Client, ""); len(idx.Builds) != 0 {
		t.Errorf("build listed after a failed upload: %v", idx.IDs())
	}
	// Run again: the compressed build goes up whole.
	upload(t, f, d, "", id)
	assertRemoteConsistent(t, f, id)
}
