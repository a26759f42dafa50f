package weldr

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cosa-build/cosa/pkg/blueprint"
	"github.com/cosa-build/cosa/pkg/imagebuild"
	"github.com/cosa-build/cosa/pkg/weldr/weldrtest"
)

// server is the API on a real unix socket, as composer-cli reaches it.
type server struct {
	t      *testing.T
	sock   string
	client *http.Client
	store  *blueprint.Store
	queue  *weldrtest.Queue
	dir    string
	opt    Options
}

// currentGroup is the name of the test process's group: the socket group
// in tests.
func currentGroup(t *testing.T) string {
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Fatalf("looking up the current group: %v", err)
	}
	return g.Name
}

// shortTempDir is a temp dir short enough for a socket path (108 bytes).
func shortTempDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "weldr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

const testIndex = `Package: tmux
Version: 3.3a-3
Architecture: amd64
Depends: libc6 (>= 2.34), libevent-core-2.1-7 (>= 2.1.8-stable), libtinfo6 | libncurses6
Homepage: https://tmux.github.io/
Description: terminal multiplexer
 tmux enables a number of terminals to be accessed and
 controlled from a single terminal.

Package: libc6
Version: 2.36-9
Architecture: amd64
Pre-Depends: libgcc-s1
Description: GNU C Library: Shared libraries

Package: libgcc-s1
Version: 1:12.2.0-14
Architecture: amd64
Description: GCC support library

Package: libevent-core-2.1-7
Version: 2.1.12-stable-8
Architecture: amd64
Depends: libc6 (>= 2.14)
Description: Asynchronous event notification library (core)

Package: libtinfo6
Version: 6.4-4
Architecture: amd64
Depends: libc6 (>= 2.38)
Description: shared low-level terminfo library (too new a libc here)

Package: libncurses6
Version: 6.4-4
Architecture: amd64
Depends: libc6 (>= 2.34)
Description: shared libraries for terminal handling

Package: mail-client
Version: 1.0-1
Architecture: all
Depends: mail-transport-agent
Description: reads mail

Package: postfix
Version: 3.7.9-0+deb12u1
Architecture: amd64
Provides: mail-transport-agent
Depends: libc6
Description: High-performance mail transport agent

Package: firefox-esr
Version: 115.5.0esr-1~deb12u1
Architecture: amd64
Description: Mozilla Firefox web browser

Package: task-mail-server
Version: 3.73
Architecture: all
Depends: tasksel (= 3.73)
Recommends: postfix | mail-transport-agent, mail-client
Description: mail server

Package: tasksel
Version: 3.73
Architecture: all
Description: tool for selecting tasks

Package: ignored-arch
Version: 1.0-1
Architecture: arm64
Description: not for this architecture
`

// newServer starts the handler on a socket in a temp dir with a blueprint
// store, an apt index of testIndex, a sources dir and the test double of
// the queue.
func newServer(t *testing.T) *server {
	t.Helper()
	dir := shortTempDir(t)
	ctx := context.Background()
	store, err := blueprint.Open(ctx, filepath.Join(dir, "bp"))
	if err != nil {
		t.Fatal(err)
	}
	lists := filepath.Join(dir, "lists")
	if err := os.MkdirAll(lists, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lists, "deb_dists_bookworm_main_binary-amd64_Packages"), []byte(testIndex), 0o644); err != nil {
		t.Fatal(err)
	}
	q := weldrtest.NewQueue(map[string]bool{"qcow2": true, "ami": true, "edge-commit": true, "vmdk": false})
	opt := Options{
		Blueprints: store,
		Packages:   NewAptIndex(lists, "amd64"),
		Sources: &Sources{Dir: filepath.Join(dir, "sources"), System: []Source{
			{ID: "debian", Name: "debian", Type: "deb", URL: "http://deb.example/debian", System: true, CheckGPG: true, CheckSSL: true},
		}},
		Composer: q,
		Distros:  []string{"debian-12"},
		Build:    "test",
		// The runner's own list, so the tests check what cosa serve refuses.
		Supported: imagebuild.Supported,
	}
	h := New(opt)
	sock := filepath.Join(dir, "run", "api.socket")
	l, err := Listen(SocketOptions{Path: sock, Group: currentGroup(t), UID: os.Getuid()})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Serve(sctx, l, h, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &server{t: t, sock: sock, store: store, queue: q, dir: dir, opt: opt, client: unixClient(sock)}
}

func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

// reply is one response: status, headers, raw body.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends a request the way composer-cli does (http://localhost/...).
func (s *server) do(method, route, ctype string, body []byte) reply {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://localhost"+route, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, route, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, data}
}

func (s *server) get(route string) reply { return s.do("GET", route, "", nil) }

func (s *server) pushTOML(route, text string) reply {
	return s.do("POST", route, "text/x-toml", []byte(text))
}

// json decodes the body into a generic map, failing on anything else.
func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, r.Body)
	}
	return m
}

// wantOK asserts a 200.
func (r reply) wantOK(t *testing.T) reply {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", r.Status, r.Body)
	}
	return r
}

// wantError asserts an API error: the status, the shape and the id, and
// that the message contains want.
func (r reply) wantError(t *testing.T, status int, id, want string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	m := r.json(t)
	if m["status"] != false {
		t.Errorf("status field %v, want false", m["status"])
	}
	errs, ok := m["errors"].([]any)
	if !ok || len(errs) != 1 {
		t.Fatalf("errors %v, want one entry", m["errors"])
	}
	e := errs[0].(map[string]any)
	if e["id"] != id {
		t.Errorf("error id %v, want %s (msg %v)", e["id"], id, e["msg"])
	}
	if msg, _ := e["msg"].(string); !strings.Contains(msg, want) {
		t.Errorf("error msg %q does not contain %q", msg, want)
	}
}

// list asserts that m[key] is a JSON array (never null) and returns it.
func list(t *testing.T, m map[string]any, key string) []any {
	t.Helper()
	v, present := m[key]
	if !present {
		t.Fatalf("%q missing in %v", key, m)
	}
	a, ok := v.([]any)
	if !ok {
		t.Fatalf("%q is %T (%v), want an array", key, v, v)
	}
	return a
}

func num(t *testing.T, m map[string]any, key string) float64 {
	t.Helper()
	f, ok := m[key].(float64)
	if !ok {
		t.Fatalf("%q is %T (%v), want a number", key, m[key], m[key])
	}
	return f
}
