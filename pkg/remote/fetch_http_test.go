package remote

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/events"
)

const testPassword = "s3cr3t-pw"

// basicAuthServer serves d's builds/ to user u with testPassword only;
// missing names answer 404 and fail500 names answer 500.
func basicAuthServer(t *testing.T, root string, missing, fail500 string) *httptest.Server {
	t.Helper()
	files := http.FileServer(http.Dir(root))
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "u" || p != testPassword {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		switch {
		case missing != "" && strings.HasSuffix(r.URL.Path, missing):
			http.NotFound(w, r)
		case fail500 != "" && strings.HasSuffix(r.URL.Path, fail500):
			http.Error(w, "boom", http.StatusInternalServerError)
		default:
			files.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(hs.Close)
	return hs
}

func withPassword(hsURL string) string {
	return strings.Replace(hsURL, "http://", "http://u:"+testPassword+"@", 1)
}

// No line, event or error of a fetch from http://user:pass@host shows the
// password.
func TestFetchRedactsPassword(t *testing.T) {
	src := newDir(t)
	const id = "42.20261122.dev.0"
	makeBuild(t, src, id, 1000)
	hs := basicAuthServer(t, src.Root, "/"+CommitMetaFile, "-qemu.qcow2")
	s, err := NewSource(context.Background(), withPassword(hs.URL)+"/", S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lines []string
	sink := events.Func(func(e events.Event) {
		b, _ := json.Marshal(e)
		mu.Lock()
		lines = append(lines, e.Text(), string(b))
		mu.Unlock()
	})
	dst := newDir(t)
	// ostree comes over fine (so the password was sent), commitmeta.json is
	// missing (a warning), qemu fails (an error).
	if _, err := Fetch(context.Background(), FetchOptions{Source: s, Dir: dst, Build: id, Arch: testArch, Artifacts: []string{"ostree"}, Events: sink}); err != nil {
		t.Fatal(err)
	}
	_, err = Fetch(context.Background(), FetchOptions{Source: s, Dir: dst, Build: id, Arch: testArch, Artifacts: []string{"qemu"}, Events: sink})
	if err == nil {
		t.Fatal("fetch of an artifact the server fails succeeded")
	}
	lines = append(lines, err.Error())
	var fetched, warned bool
	for _, l := range lines {
		if strings.Contains(l, testPassword) {
			t.Errorf("password printed: %s", l)
		}
		fetched = fetched || strings.HasPrefix(l, "fetched http://u:xxxxx@")
		warned = warned || strings.HasPrefix(l, "warning: http://u:xxxxx@")
	}
	if !fetched || !warned {
		t.Errorf("want fetched and warning lines naming the redacted URL, got:\n%s", strings.Join(lines, "\n"))
	}
	// Errors about the URL itself.
	for _, raw := range []string{
		"http://u:" + testPassword + "@[::1",
		"http://u:" + testPassword + "@/nohost",
		"ftp://u:" + testPassword + "@host/x",
		"http://u:" + testPassword + "/x@host/",
		"s3://u:" + testPassword + "@bkt/prefix",
	} {
		_, err := NewSource(context.Background(), raw, S3Config{})
		if err == nil {
			t.Errorf("%s accepted", strings.ReplaceAll(raw, testPassword, "PW"))
		} else if strings.Contains(err.Error(), testPassword) {
			t.Errorf("password printed: %v", err)
		}
	}
	if _, err := NewS3Client(context.Background(), S3Config{EndpointURL: "ftp://u:" + testPassword + "@host"}); err == nil || strings.Contains(err.Error(), testPassword) {
		t.Errorf("endpoint URL error: %v", err)
	}
}

// stallServer serves root, except that the object whose path ends in
// stallOn gets its headers (and, if half, half its body) and then nothing
// more until the test ends. stalled is closed once it stalls.
func stallServer(t *testing.T, root, stallOn string, half bool) (hs *httptest.Server, stalled <-chan struct{}) {
	t.Helper()
	files := http.FileServer(http.Dir(root))
	release, st := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, stallOn) {
			files.ServeHTTP(w, r)
			return
		}
		if half {
			data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(r.URL.Path)))
			if err != nil {
				t.Error(err)
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
		}
		once.Do(func() { close(st) })
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	// Cleanups run last first: release the handler, then close.
	t.Cleanup(hs.Close)
	t.Cleanup(func() { close(release) })
	return hs, st
}

// fetchBounded runs a fetch and fails the test if it has not returned
// within limit.
func fetchBounded(t *testing.T, o FetchOptions, limit time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Fetch(context.Background(), o)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("fetch still running after %s", limit)
		return nil
	}
}

// A server that stops sending, before its response or in the middle of
// an artifact, fails the fetch after the idle timeout, and the builds/
// lock is free again.
func TestFetchStalledServer(t *testing.T) {
	const id = "42.20261122.dev.0"
	for _, tc := range []struct {
		name, stallOn string
		half          bool
	}{
		{"before the response", "/meta.json", false},
		{"mid-body", "-qemu.qcow2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newDir(t)
			makeBuild(t, src, id, 256<<10)
			hs, stalled := stallServer(t, src.Root, tc.stallOn, tc.half)
			s, err := NewSource(context.Background(), hs.URL, S3Config{})
			if err != nil {
				t.Fatal(err)
			}
			d := newDir(t)
			t0 := time.Now()
			err = fetchBounded(t, FetchOptions{Source: s, Dir: d, Build: id, Arch: testArch, Artifacts: []string{"all"}, IdleTimeout: 300 * time.Millisecond}, 30*time.Second)
			select {
			case <-stalled:
			default:
				t.Fatalf("the fetch failed before the server stalled: %v", err)
			}
			if err == nil || !strings.Contains(err.Error(), "nothing received for 300ms") {
				t.Fatalf("want an idle-timeout error, got %v", err)
			}
			if time.Since(t0) < 300*time.Millisecond {
				t.Errorf("gave up after %s, before the idle timeout", time.Since(t0))
			}
			release, err := d.Lock(context.Background(), time.Second, "test", nil)
			if err != nil {
				t.Fatalf("builds/ lock still held after the failed fetch: %v", err)
			}
			release()
			noTemps(t, d.Root)
			if d.HasBuild(id) {
				t.Error("half-fetched build left behind")
			}
		})
	}
}

// A slow but steady server is not cut off: the timeout is for silence,
// not for the whole download.
func TestFetchSlowServerIsNotIdle(t *testing.T) {
	const id = "42.20261122.dev.0"
	src := newDir(t)
	makeBuild(t, src, id, 64<<10)
	files := http.FileServer(http.Dir(src.Root))
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "-qemu.qcow2") {
			files.ServeHTTP(w, r)
			return
		}
		data, _ := os.ReadFile(filepath.Join(src.Root, filepath.FromSlash(r.URL.Path)))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		// 16 chunks 50ms apart: longer in all than the idle timeout,
		// but never that long without data.
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(data); i += len(data) / 16 {
			<-tick.C
			w.Write(data[i : i+len(data)/16])
			w.(http.Flusher).Flush()
		}
	}))
	defer hs.Close()
	s, _ := NewSource(context.Background(), hs.URL, S3Config{})
	d := newDir(t)
	if err := fetchBounded(t, FetchOptions{Source: s, Dir: d, Build: id, Arch: testArch, Artifacts: []string{"qemu"}, IdleTimeout: 500 * time.Millisecond}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	sameFile(t, src, d, id, "fcos-"+id+"-qemu.qcow2")
}

func sameFile(t *testing.T, a, b *build.Dir, id, name string) {
	t.Helper()
	x, err1 := os.ReadFile(filepath.Join(a.BuildDir(id, testArch), name))
	y, err2 := os.ReadFile(filepath.Join(b.BuildDir(id, testArch), name))
	if err1 != nil || err2 != nil || string(x) != string(y) {
		t.Errorf("%s differs: %v %v", name, err1, err2)
	}
}

// A Content-Length other than meta.json's size fails at once, without
// reading (or waiting for) the body; a body longer than meta.json says is
// not read past the size.
func TestFetchChecksAdvertisedSize(t *testing.T) {
	const id = "42.20261122.dev.0"
	src := newDir(t)
	makeBuild(t, src, id, 4096)
	release, endless := make(chan struct{}), make(chan struct{})
	files := http.FileServer(http.Dir(src.Root))
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "-qemu.qcow2"):
			// Announces more than meta.json says, then sends nothing.
			w.Header().Set("Content-Length", "1000000")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case strings.HasSuffix(r.URL.Path, "-ostree.ociarchive"):
			// No Content-Length, and no end until the client hangs up.
			defer close(endless)
			buf := make([]byte, 32<<10)
			for {
				if _, err := w.Write(buf); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		default:
			files.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(hs.Close)
	t.Cleanup(func() { close(release) })
	s, _ := NewSource(context.Background(), hs.URL, S3Config{})

	err := fetchBounded(t, FetchOptions{Source: s, Dir: newDir(t), Build: id, Arch: testArch, Artifacts: []string{"qemu"}, IdleTimeout: time.Minute}, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "the server says 1000000 bytes, meta.json says 4096") {
		t.Fatalf("want a size error, got %v", err)
	}
	err = fetchBounded(t, FetchOptions{Source: s, Dir: newDir(t), Build: id, Arch: testArch, Artifacts: []string{"ostree"}, IdleTimeout: time.Minute}, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "meta.json says 3000") {
		t.Fatalf("want a size error, got %v", err)
	}
	select {
	case <-endless:
	case <-time.After(30 * time.Second):
		t.Fatal("the fetch never hung up on the endless body")
	}
}
