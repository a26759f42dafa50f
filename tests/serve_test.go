package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/boottest"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/qemu"
)

// enabledUnit is the service the blueprint enables: installed by the
// default config's package set (systemd's getty@.service) and not enabled
// by it (only getty@tty1 is), and it runs in a VM with no second serial
// port, unlike serial-getty@ttyS1.
const enabledUnit = "getty@tty2.service"

// TestServe is issue 12's acceptance: `cosa serve` on a temporary socket and
// state dir, driven over its unix socket exactly as composer-cli drives it
// (composer-cli itself cannot be built here), through one compose of two
// image types, a boot of its qcow2 with the blueprint's customizations
// checked in the guest, a kill -9 of the service mid-compose and a
// restart, and the deletion of the composes.
func TestServe(t *testing.T) {
	needTools(t, "mmdebstrap", "ostree", "apt-get", "qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen")
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Minute)
	defer cancel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "api.socket")
	state := filepath.Join(dir, "state")

	srv := startServe(t, sock, state, filepath.Join(dir, "serve-1.log"))
	c := newWeldrClient(sock)
	key, err := qemu.NewSSHKey(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}

	// composer-cli blueprints push: TOML as text/x-toml.
	bp := serveBlueprint(key.Public, "serve-e2e-01", "0.0.1")
	c.mustJSON(t, "POST", "/api/v1/blueprints/new", "text/x-toml", []byte(bp))
	info := c.mustJSON(t, "GET", "/api/v1/blueprints/info/serve-e2e", "", nil)
	if bps, _ := info["blueprints"].([]any); len(bps) != 1 {
		t.Fatalf("blueprints info: %v", info)
	}

	// One compose, two image types (cosa's compose_types extension).
	start := time.Now()
	m := c.mustJSON(t, "POST", "/api/v1/compose", "application/json",
		[]byte(`{"blueprint_name":"serve-e2e","compose_type":"qcow2","compose_types":["qcow2","raw"],"branch":"master","size":0}`))
	id, _ := m["build_id"].(string)
	if id == "" {
		t.Fatalf("compose start: %v", m)
	}
	t.Logf("e2e: compose %s started (warnings %v)", id, m["warnings"])
	e := c.waitCompose(t, ctx, srv, id, 20*time.Minute, nil)
	if e["queue_status"] != "FINISHED" {
		t.Fatalf("compose %s: %v\nlog:\n%s", id, e, tail(c.log(t, id), 60))
	}
	t.Logf("e2e: compose of qcow2+raw FINISHED in %s", time.Since(start).Round(time.Second))
	builds, _ := e["image_builds"].([]any)
	if e["compose_type"] != "qcow2" || len(builds) != 2 {
		t.Fatalf("compose info: %v", e)
	}
	c.mustInList(t, id, "finished")
	// compose info's dependencies are what the image holds: the
	// blueprint's package and the base ones, each with its version.
	deps := map[string]string{}
	if d, _ := e["deps"].(map[string]any); d != nil {
		pkgs, _ := d["packages"].([]any)
		for _, p := range pkgs {
			if p, _ := p.(map[string]any); p != nil {
				name, _ := p["name"].(string)
				ver, _ := p["version"].(string)
				deps[name] = ver
			}
		}
	}
	for _, want := range []string{"tmux", "ostree", "systemd", "apache2", "analog"} {
		if deps[want] == "" {
			t.Errorf("compose info deps has no %s with a version (%d packages)", want, len(deps))
		}
	}

	// Both images, each checked against its build's meta.json.
	metas := map[string]build.Meta{}
	for name, data := range c.tarMembers(t, "/api/v1/compose/metadata/"+id) {
		if strings.HasSuffix(name, "/meta.json") {
			var meta build.Meta
			if err := json.Unmarshal([]byte(data), &meta); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			metas[strings.TrimSuffix(name, "/meta.json")] = meta
		}
	}
	if len(metas) != 2 || metas["qcow2"].BuildID == "" || metas["qcow2"].BuildID != metas["raw"].BuildID {
		t.Fatalf("metadata: want qcow2/ and raw/ meta.json of one cosa build, got %v", metas)
	}
	qcow2 := filepath.Join(dir, "disk.qcow2")
	for typ, platform := range map[string]string{"qcow2": "qemu", "raw": "metal"} {
		dst := ""
		if typ == "qcow2" {
			dst = qcow2 // the raw one is only hashed: it is the full disk size
		}
		sum, name := c.download(t, ctx, "/api/v1/compose/image/"+id+"?type="+typ, dst)
		want := metas[typ].Images[platform].Sha256
		if want == "" || sum != want {
			t.Errorf("%s image %s: sha256 %s, meta.json says %q", typ, name, sum, want)
		}
		if !strings.HasPrefix(name, id+"-") {
			t.Errorf("%s image named %q", typ, name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Boot the qcow2 and check the customizations as the blueprint's user.
	bootAndCheck(t, ctx, dir, qcow2, key, "serve-e2e-01")

	// A changed blueprint, a compose, kill -9 mid-compose, restart.
	c.mustJSON(t, "POST", "/api/v1/blueprints/new", "text/x-toml", []byte(serveBlueprint(key.Public, "serve-e2e-02", "0.0.2")))
	m = c.mustJSON(t, "POST", "/api/v1/compose", "application/json",
		[]byte(`{"blueprint_name":"serve-e2e","compose_type":"qcow2","branch":"master","size":0}`))
	id2, _ := m["build_id"].(string)
	if id2 == "" {
		t.Fatalf("compose start: %v", m)
	}
	e = c.waitCompose(t, ctx, srv, id2, 5*time.Minute, func(e map[string]any) bool {
		st := e["queue_status"]
		return st == "FINISHED" || st == "FAILED" || st == "RUNNING" && strings.Contains(c.log(t, id2), "attempt 1")
	})
	if e["queue_status"] != "RUNNING" {
		t.Fatalf("compose %s ended before it could be interrupted: %v\nlog:\n%s", id2, e, tail(c.log(t, id2), 40))
	}
	srv.kill9(t)
	t.Logf("e2e: killed the service (pid %d) with compose %s RUNNING", srv.cmd.Process.Pid, id2)
	srv = startServe(t, sock, state, filepath.Join(dir, "serve-2.log"))
	restart := time.Now()
	e = c.waitCompose(t, ctx, srv, id2, 15*time.Minute, nil)
	switch e["queue_status"] {
	case "FINISHED":
		if log := c.log(t, id2); !strings.Contains(log, "attempt 2") {
			t.Errorf("compose %s FINISHED after the restart without a second attempt; log:\n%s", id2, tail(log, 30))
		}
		c.mustInList(t, id2, "finished")
	case "FAILED":
		if reason, _ := e["error"].(string); reason == "" {
			t.Errorf("compose %s FAILED after the restart with no reason: %v", id2, e)
		}
		c.mustInList(t, id2, "failed")
	}
	t.Logf("e2e: after the restart compose %s is %s in %s (%v)", id2, e["queue_status"], time.Since(restart).Round(time.Second), e["error"])
	// The first compose is where it was.
	if e := c.info(t, id); e == nil || e["queue_status"] != "FINISHED" {
		t.Errorf("compose %s after the restart: %v", id, e)
	}

	// Delete both: gone from the API and from the state dir.
	d := c.mustJSON(t, "DELETE", "/api/v1/compose/delete/"+id+","+id2, "", nil)
	if ok, _ := d["uuids"].([]any); len(ok) != 2 {
		t.Fatalf("delete: %v", d)
	}
	for _, x := range []string{id, id2} {
		if e := c.info(t, x); e != nil {
			t.Errorf("compose %s still listed after delete: %v", x, e)
		}
		for _, p := range []string{filepath.Join(state, "outputs", x), filepath.Join(state, "composes", x+".json")} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s after delete: %v", p, err)
			}
		}
	}
	srv.stop(t)
}

func serveBlueprint(key, hostname, version string) string {
	return fmt.Sprintf(`name = "serve-e2e"
description = "cosa serve end-to-end"
version = %q

[[packages]]
name = "tmux"
version = "*"

# A group is a Debian task: task-web-server's Depends (apache2) and
# Recommends (analog) are installed.
[[groups]]
name = "web-server"

[customizations]
hostname = %q

[[customizations.user]]
name = "tester"
key = %q
groups = ["sudo"]

[customizations.services]
enabled = [%q]
`, version, hostname, key, strings.TrimSuffix(enabledUnit, ".service"))
}

// bootAndCheck boots image under QEMU and checks, over ssh as tester, the
// hostname, the sudo group, the enabled service, the package and the group's packages.
func bootAndCheck(t *testing.T, ctx context.Context, dir, image string, key *qemu.SSHKey, hostname string) {
	t.Helper()
	port, err := qemu.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ssh := &qemu.SSH{Port: port, Key: key, User: "tester"}
	// Outside the test's temp dir: kept, with the console, on failure.
	vmDir, err := os.MkdirTemp("", "cosa-serve-e2e-vm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			os.Remove(filepath.Join(vmDir, "overlay.qcow2"))
			t.Logf("VM console kept in %s/console.txt", vmDir)
			return
		}
		os.RemoveAll(vmDir)
	})
	vm, err := qemu.Start(ctx, qemu.Options{Image: image, WorkDir: vmDir, Network: true, SSHPort: port})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	start := time.Now()
	bctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	keep := func(why string, args ...any) {
		t.Helper()
		// The console stays next to the test's logs.
		t.Fatalf("%s\nconsole (%s/console.txt):\n%s", fmt.Sprintf(why, args...), vmDir, tail(vm.Console(), 60))
	}
	if _, err := vm.WaitFor(bctx, regexp.MustCompile(`login: `), boottest.LostRE); err != nil {
		keep("boot: %v", err)
	}
	if err := ssh.WaitReady(bctx); err != nil {
		keep("ssh as tester with the blueprint's key: %v", err)
	}
	t.Logf("e2e: booted and logged in as tester in %s", time.Since(start).Round(time.Second))
	run := func(cmd string) string {
		t.Helper()
		out, code, err := ssh.Run(bctx, nil, cmd)
		if err != nil || code != 0 {
			keep("%s: exit %d, %v: %s", cmd, code, err, out)
		}
		return strings.TrimSpace(out)
	}
	if got := run("hostname"); got != hostname {
		t.Errorf("hostname %q, want %q", got, hostname)
	}
	if got := run("id"); !regexp.MustCompile(`\(sudo\)`).MatchString(got) || !strings.Contains(got, "(tester)") {
		t.Errorf("id: %q lacks the sudo group", got)
	}
	// getty@tty2 may still be starting right after the login prompt.
	for {
		out, _, err := ssh.Run(bctx, nil, "systemctl is-active "+enabledUnit)
		if strings.TrimSpace(out) == "active" {
			break
		}
		if err != nil || strings.TrimSpace(out) != "activating" || bctx.Err() != nil {
			status, _, _ := ssh.Run(bctx, nil, "systemctl status --no-pager "+enabledUnit)
			keep("systemctl is-active %s: %q (%v)\n%s", enabledUnit, out, err, status)
		}
		select {
		case <-bctx.Done():
		case <-time.After(time.Second):
		}
	}
	run("command -v tmux")
	run("test -x /usr/sbin/apache2 && command -v analog")
}

// serveProc is one `cosa serve` process.
type serveProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startServe starts the binary the harness built and waits until its
// socket answers.
func startServe(t *testing.T, sock, state, logPath string) *serveProc {
	t.Helper()
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cosaBin, "serve", "--socket", sock, "--group", "root", "--state", state)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Its own process group, so that cleanup also ends what a killed
	// service left running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	p := &serveProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("cosa serve log %s:\n%s", logPath, tail(string(data), 40))
		}
	})
	c := newWeldrClient(sock)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _, _, err := c.do("GET", "/api/status", "", nil); err == nil && code == 200 {
			return p
		}
		select {
		case <-p.done:
			data, _ := os.ReadFile(logPath)
			t.Fatalf("cosa serve exited at start:\n%s", data)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(logPath)
			t.Fatalf("cosa serve: %s does not answer after 30s:\n%s", sock, data)
		}
	}
}

func (p *serveProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill9 kills the service alone (not its process group), as a crash
// would.
func (p *serveProc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// stop sends SIGTERM and waits (bounded) for a clean exit.
func (p *serveProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if !p.cmd.ProcessState.Success() {
			t.Errorf("cosa serve after SIGTERM: %v", p.cmd.ProcessState)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("cosa serve did not stop within 60s of SIGTERM")
	}
}

// weldrClient speaks to the socket with what composer-cli sends.
type weldrClient struct{ hc *http.Client }

func newWeldrClient(sock string) *weldrClient {
	return &weldrClient{hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

func (c *weldrClient) request(ctx context.Context, method, route, ctype string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+route, r)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	return c.hc.Do(req)
}

func (c *weldrClient) do(method, route, ctype string, body []byte) (int, []byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := c.request(ctx, method, route, ctype, body)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, resp.Header, err
}

// mustJSON is a request that must answer 200 with a JSON object whose
// status, if present, is true.
func (c *weldrClient) mustJSON(t *testing.T, method, route, ctype string, body []byte) map[string]any {
	t.Helper()
	code, data, _, err := c.do(method, route, ctype, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, route, err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil || code != 200 || m["status"] == false {
		t.Fatalf("%s %s: %d %s", method, route, code, data)
	}
	return m
}

// info is compose info's answer, or nil when the compose is unknown.
func (c *weldrClient) info(t *testing.T, id string) map[string]any {
	t.Helper()
	code, data, _, err := c.do("GET", "/api/v1/compose/info/"+id, "", nil)
	if err != nil {
		t.Fatalf("compose info %s: %v", id, err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("compose info %s: %d %s", id, code, data)
	}
	if code != 200 {
		if errs, _ := m["errors"].([]any); len(errs) == 1 && errs[0].(map[string]any)["id"] == "UnknownUUID" {
			return nil
		}
		t.Fatalf("compose info %s: %d %s", id, code, data)
	}
	return m
}

// waitCompose polls compose info until until(entry) holds (nil: FINISHED
// or FAILED) or the timeout passes. The compose must be known on every
// poll: a restarted service never loses one, not even for a moment.
func (c *weldrClient) waitCompose(t *testing.T, ctx context.Context, srv *serveProc, id string, timeout time.Duration, until func(map[string]any) bool) map[string]any {
	t.Helper()
	if until == nil {
		until = func(e map[string]any) bool { return e["queue_status"] == "FINISHED" || e["queue_status"] == "FAILED" }
	}
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		if srv.exited() {
			t.Fatalf("cosa serve exited while compose %s ran: %v", id, srv.cmd.ProcessState)
		}
		e := c.info(t, id)
		if e == nil {
			t.Fatalf("compose %s is not known to the service", id)
		}
		if st, _ := e["queue_status"].(string); st != last {
			t.Logf("e2e: compose %s %s", id, st)
			last = st
		}
		if until(e) {
			return e
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("compose %s still %s after %s; log:\n%s", id, last, timeout, tail(c.log(t, id), 40))
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// mustInList checks the compose is listed where composer-cli's compose
// list looks for its state.
func (c *weldrClient) mustInList(t *testing.T, id, key string) {
	t.Helper()
	m := c.mustJSON(t, "GET", "/api/v1/compose/"+key, "", nil)
	l, _ := m[key].([]any)
	for _, e := range l {
		if e.(map[string]any)["id"] == id {
			return
		}
	}
	t.Errorf("compose %s not in compose/%s: %v", id, key, m)
}

func (c *weldrClient) log(t *testing.T, id string) string {
	t.Helper()
	code, data, _, err := c.do("GET", "/api/v1/compose/log/"+id+"?size=4096", "", nil)
	if err != nil || code != 200 {
		return fmt.Sprintf("(no log: %d %v %s)", code, err, data)
	}
	return string(data)
}

func (c *weldrClient) tarMembers(t *testing.T, route string) map[string]string {
	t.Helper()
	code, data, _, err := c.do("GET", route, "", nil)
	if err != nil || code != 200 {
		t.Fatalf("GET %s: %d %v %.300s", route, code, err, data)
	}
	return testutil.TarMembers(t, data)
}

// download streams an image, into dst if set, and returns its sha256 and
// the file name the service gave it.
func (c *weldrClient) download(t *testing.T, ctx context.Context, route, dst string) (string, string) {
	t.Helper()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	resp, err := c.request(dctx, "GET", route, "", nil)
	if err != nil {
		t.Fatalf("GET %s: %v", route, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		data, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", route, resp.StatusCode, data)
	}
	h := sha256.New()
	w := io.Writer(h)
	if dst != "" {
		f, err := os.Create(dst)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w = io.MultiWriter(h, f)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", route, err)
	}
	if cl := resp.ContentLength; cl >= 0 && cl != n {
		t.Fatalf("GET %s: %d bytes, Content-Length %d", route, n, cl)
	}
	_, name, _ := strings.Cut(resp.Header.Get("Content-Disposition"), "filename=")
	return hex.EncodeToString(h.Sum(nil)), name
}
