package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// COSA_FETCH_IDLE_TIMEOUT bounds how long buildfetch waits on a server
// that stopped sending: it fails (exit 1) instead of holding builds/.
func TestBuildfetchIdleTimeout(t *testing.T) {
	const id = "42.20261122.dev.0"
	wd := remoteWorkdir(t, id)
	files := http.FileServer(http.Dir(filepath.Join(wd, "builds")))
	release := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/meta.json") {
			files.ServeHTTP(w, r)
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hs.Close)
	t.Cleanup(func() { close(release) })
	dst := t.TempDir()
	cosa(t, "init", "-C", dst).wantCode(t, 0)

	t.Setenv("COSA_FETCH_IDLE_TIMEOUT", "soon")
	r := cosaRemote(t, "-C", dst, "buildfetch", "--url", hs.URL)
	if r.code != exitBadInput || !strings.Contains(r.stderr, "COSA_FETCH_IDLE_TIMEOUT") {
		t.Errorf("invalid COSA_FETCH_IDLE_TIMEOUT: exit %d\n%s", r.code, r.stderr)
	}

	t.Setenv("COSA_FETCH_IDLE_TIMEOUT", "300ms")
	done := make(chan result, 1)
	go func() { done <- cosaRemote(t, "-C", dst, "buildfetch", "--url", hs.URL) }()
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("buildfetch still waiting on a stalled server after 30s")
	}
	if r.code != exitFailure || !strings.Contains(r.stderr, "nothing received for 300ms") {
		t.Errorf("stalled server: exit %d\n%s", r.code, r.stderr)
	}
}
