package remote

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
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
	events := func(e Event) {
		b, _ := json.Marshal(e)
		mu.Lock()
		lines = append(lines, e.String(), string(b))
		mu.Unlock()
	}
	dst := newDir(t)
	// ostree comes over fine (so the password was sent), commitmeta.json is
	// missing (a warning), qemu fails (an error).
	if _, err := Fetch(context.Background(), FetchOptions{Source: s, Dir: dst, Build: id, Arch: testArch, Artifacts: []string{"ostree"}, Events: events}); err != nil {
		t.Fatal(err)
	}
	_, err = Fetch(context.Background(), FetchOptions{Source: s, Dir: dst, Build: id, Arch: testArch, Artifacts: []string{"qemu"}, Events: events})
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
