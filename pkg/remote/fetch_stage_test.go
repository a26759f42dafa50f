package remote

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/build"
)

// treeBytes maps every file under root (but the lock) to its content.
func treeBytes(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case rel == build.LockFile:
		case de.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			files[rel] = "-> " + target
		case de.IsDir():
			files[rel+"/"] = ""
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func wantSameTree(t *testing.T, before, after map[string]string) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if a, ok := after[k]; !ok {
			t.Errorf("%s is gone", k)
		} else if a != before[k] {
			t.Errorf("%s changed", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if _, ok := before[k]; !ok {
			t.Errorf("%s appeared", k)
		}
	}
}

// A forced fetch over a local build of the same id that fails half-way
// (one artifact corrupt) leaves the local build exactly as it was.
func TestFetchForceFailureKeepsOldBuild(t *testing.T) {
	f := newFakeS3(t)
	src := newDir(t)
	const id = "42.20261122.dev.0"
	makeBuild(t, src, id, 4096)
	upload(t, f, src, "p", id)
	// Corrupt the image fetched last, so that the first one (ostree) has
	// already been downloaded when the fetch fails.
	key := "p/" + id + "/x86_64/fcos-" + id + "-qemu.qcow2"
	data := getObject(t, f.Client, key)
	data[100] ^= 0xff
	putObject(t, f.Client, key, data, nil)

	dst := newDir(t)
	makeBuild(t, dst, id, 100) // same id, other content
	os.WriteFile(filepath.Join(dst.BuildDir(id, testArch), "old-only.txt"), []byte("old"), 0o644)
	before := treeBytes(t, dst.Root)
	s3src := &S3Source{Client: f.Client, Loc: S3Location{Bucket: "bkt", Prefix: "p"}}
	_, err := Fetch(context.Background(), FetchOptions{Source: s3src, Dir: dst, Build: id, Arch: testArch, Force: true, Artifacts: []string{"all"}})
	if err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("want a sha256 error, got %v", err)
	}
	wantSameTree(t, before, treeBytes(t, dst.Root))
	noTemps(t, dst.Root)

	// Once the object is right, the forced fetch replaces the build
	// whole: nothing of the old one stays.
	putObject(t, f.Client, key, getObjectFromDir(t, src, id, "fcos-"+id+"-qemu.qcow2"), nil)
	if _, err := Fetch(context.Background(), FetchOptions{Source: s3src, Dir: dst, Build: id, Arch: testArch, Force: true, Artifacts: []string{"all"}}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, src, dst, id)
	if _, err := os.Stat(filepath.Join(dst.BuildDir(id, testArch), "old-only.txt")); !os.IsNotExist(err) {
		t.Errorf("a file of the replaced build is still there: %v", err)
	}
	noTemps(t, dst.Root)
}

func getObjectFromDir(t *testing.T, d *build.Dir, id, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.BuildDir(id, testArch), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A server that drops the connection in the middle of an artifact (over
// plain HTTP) fails the fetch the same way, whether the local build is
// the same build (adding an artifact to a metadata-only fetch) or another.
func TestFetchServerErrorMidDownloadKeepsOldBuild(t *testing.T) {
	src := newDir(t)
	const id = "42.20261122.dev.0"
	makeBuild(t, src, id, 64<<10)
	files := http.FileServer(http.Dir(src.Root))
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "-qemu.qcow2") {
			w.Header().Set("Content-Length", "65536")
			w.Write(make([]byte, 1000))
			panic(http.ErrAbortHandler) // drop the connection mid-body
		}
		files.ServeHTTP(w, r)
	}))
	defer hs.Close()
	s, err := NewSource(context.Background(), hs.URL, S3Config{})
	if err != nil {
		t.Fatal(err)
	}

	// The same build, metadata only, plus a file of its own.
	dst := newDir(t)
	if _, err := fetch(t, s, dst, id); err != nil {
		t.Fatal(err)
	}
	extra := filepath.Join(dst.BuildDir(id, testArch), "local.manifest.json")
	os.WriteFile(extra, []byte("{}"), 0o644)
	before := treeBytes(t, dst.Root)
	if _, err := fetch(t, s, dst, id, "all"); err == nil || !strings.Contains(err.Error(), "artifact qemu") {
		t.Fatalf("want an error naming artifact qemu, got %v", err)
	}
	wantSameTree(t, before, treeBytes(t, dst.Root))
	noTemps(t, dst.Root)
	// Adding an artifact to the same build keeps what the build has.
	if _, err := fetch(t, s, dst, id, "ostree"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(extra); err != nil {
		t.Errorf("fetching an artifact of the same build dropped its other files: %v", err)
	}
	if got := getObjectFromDir(t, dst, id, "fcos-"+id+"-ostree.ociarchive"); string(got) != string(getObjectFromDir(t, src, id, "fcos-"+id+"-ostree.ociarchive")) {
		t.Error("ostree artifact differs")
	}

	// Another build of the same id, forced.
	dst2 := newDir(t)
	makeBuild(t, dst2, id, 100)
	before = treeBytes(t, dst2.Root)
	_, err = Fetch(context.Background(), FetchOptions{Source: s, Dir: dst2, Build: id, Arch: testArch, Force: true, Artifacts: []string{"all"}})
	if err == nil {
		t.Fatal("fetch succeeded against a server that drops the connection")
	}
	wantSameTree(t, before, treeBytes(t, dst2.Root))
	noTemps(t, dst2.Root)

	// A new build that fails leaves nothing behind.
	dst3 := newDir(t)
	before = treeBytes(t, dst3.Root)
	if _, err := fetch(t, s, dst3, id, "all"); err == nil {
		t.Fatal("fetch succeeded against a server that drops the connection")
	}
	wantSameTree(t, before, treeBytes(t, dst3.Root))
}

// A swap interrupted between its two renames (old build moved aside, new
// one not yet in) is undone by the next fetch.
func TestFetchRecoversInterruptedSwap(t *testing.T) {
	src := newDir(t)
	const id = "42.20261122.dev.0"
	makeBuild(t, src, id, 100)
	dst := newDir(t)
	makeBuild(t, dst, id, 100)
	before := treeBytes(t, dst.Root)
	// What swapIn leaves when killed right after its first rename.
	st, err := newStaging(dst, id, testArch)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst.BuildDir(id, testArch), st.old); err != nil {
		t.Fatal(err)
	}
	// Another fetch (of a build that is not there) runs the recovery first.
	if _, err := fetch(t, &FileSource{Root: src.Root}, dst, "42.20261122.dev.9"); err == nil {
		t.Fatal("fetch of a missing build succeeded")
	}
	wantSameTree(t, before, treeBytes(t, dst.Root))
}
