package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// buildfetch from http://user:password@host prints the password nowhere:
// not in the per-object lines, the --json events, nor the error.
func TestBuildfetchRedactsPassword(t *testing.T) {
	const id, pw = "42.20261122.dev.0", "s3cr3t-pw"
	wd := remoteWorkdir(t, id)
	files := http.FileServer(http.Dir(filepath.Join(wd, "builds")))
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "u" || p != pw {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		files.ServeHTTP(w, r)
	}))
	defer hs.Close()
	url := strings.Replace(hs.URL, "http://", "http://u:"+pw+"@", 1)
	dst := t.TempDir()
	cosa(t, "init", "-C", dst).wantCode(t, 0)
	for _, args := range [][]string{
		{"buildfetch", "--url", url, "--artifact", "all"},
		{"--json", "buildfetch", "--url", url, "--artifact", "all", "--force"},
		{"buildfetch", "--url", url, "--build", "42.20261122.dev.7"}, // not there: an error naming the URL
	} {
		r := cosaRemote(t, append([]string{"-C", dst}, args...)...)
		out := r.stdout + r.stderr
		if strings.Contains(out, pw) {
			t.Errorf("cosa %s printed the password:\n%s", strings.Join(args, " "), out)
		}
		if !strings.Contains(out, "u:xxxxx@") {
			t.Errorf("cosa %s: want the redacted URL in its output:\n%s", strings.Join(args, " "), out)
		}
	}
}
