// Package tests holds cosa's end-to-end tests: they build the real binary
// and run it with the real tools (mmdebstrap, ostree, apt) as a user would.
// They are slow (several full builds) and skipped by `go test -short`.
package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/events"
)

var cosaBin string

// seedRoot holds the seed (see seedCache) for the run.
var seedRoot string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cosa-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cosaBin = filepath.Join(dir, "cosa")
	seedRoot = filepath.Join(dir, "seed")
	if err := os.Mkdir(seedRoot, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := exec.Command("go", "build", "-o", cosaBin, "../cmd/cosa").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building cosa: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one finished cosa invocation.
type result struct {
	Stdout, Stderr string
	Code           int
}

// cosa runs the binary in workdir and logs what it printed.
func cosa(t *testing.T, workdir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(cosaBin, args...)
	cmd.Dir = workdir
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	t0 := time.Now()
	err := cmd.Run()
	took := time.Since(t0).Round(100 * time.Millisecond)
	r := result{Stdout: so.String(), Stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("cosa %v: %v", args, err)
	}
	t.Logf("e2e: cosa %s -> exit %d in %s\n%s%s", strings.Join(args, " "), r.Code, took, tail(r.Stdout, 15), tail(r.Stderr, 15))
	checkJSONOutput(t, args, r)
	return r
}

// checkJSONOutput holds every --json run to docs/events.md: stdout is
// only event lines that pass pkg/events/schema.json, the last of them the
// command's result (exit 0) or an error event carrying the exit code.
func checkJSONOutput(t *testing.T, args []string, r result) {
	t.Helper()
	if !slices.Contains(args, "--json") {
		return
	}
	if err := events.ValidateLines([]byte(r.Stdout)); err != nil {
		t.Errorf("cosa %s --json: stdout breaks the event schema: %v\nstdout:\n%s", strings.Join(args, " "), err, tail(r.Stdout, 20))
		return
	}
	lines := strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n")
	var last events.Event
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	switch {
	case r.Code == 0 && last.Type != events.Result:
		t.Errorf("cosa %s --json: exit 0 but the last line is a %q event, not the result", strings.Join(args, " "), last.Type)
	case r.Code != 0 && (last.Type != events.Error || last.ExitCode != r.Code):
		t.Errorf("cosa %s --json: exit %d but the last line is %s", strings.Join(args, " "), r.Code, lines[len(lines)-1])
	}
}

// resultOf is the payload of the result event ending a successful --json
// run of command ("build", "buildupload s3", ...).
func resultOf(t *testing.T, r result, command string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n")
	var last struct {
		Event   string         `json:"event"`
		Command string         `json:"command"`
		Result  map[string]any `json:"result"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Event != "result" || last.Command != command {
		t.Fatalf("want the result event of %s last, got %q (%v)", command, lines[len(lines)-1], err)
	}
	return last.Result
}

// eventsOf decodes the event lines of a --json run (checked by cosa).
func eventsOf(t *testing.T, r result) []events.Event {
	t.Helper()
	var evs []events.Event
	for _, l := range strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n") {
		var e events.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("--json line %q: %v", l, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// artifactOf finds the named artifact in a result payload's "artifacts".
func artifactOf(t *testing.T, res map[string]any, name string) map[string]any {
	t.Helper()
	arts, _ := res["artifacts"].([]any)
	for _, a := range arts {
		if a, ok := a.(map[string]any); ok && a["name"] == name {
			return a
		}
	}
	t.Fatalf("no artifact %s in the result %v", name, res)
	return nil
}

// mustCosa runs cosa and fails the test unless it exits 0.
func mustCosa(t *testing.T, workdir string, args ...string) result {
	t.Helper()
	r := cosa(t, workdir, args...)
	if r.Code != 0 {
		t.Fatalf("cosa %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.Code, r.Stdout, tail(r.Stderr, 60))
	}
	return r
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (the tests make users and compare root with rootless builds)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (run `make deps`)", tool)
		}
	}
}

func readIndex(t *testing.T, workdir string) *build.BuildsIndex {
	t.Helper()
	d := &build.Dir{Root: filepath.Join(workdir, "builds")}
	idx, err := d.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func readMeta(t *testing.T, workdir, id string) (*build.Meta, []byte) {
	t.Helper()
	path := filepath.Join(workdir, "builds", id, "x86_64", "meta.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m build.Meta
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &m, data
}

func latest(t *testing.T, workdir string) string {
	t.Helper()
	l, err := os.Readlink(filepath.Join(workdir, "builds", "latest"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// cosaSchemaPath is coreos-assembler's meta.json schema, kept outside the
// repo in ../shared (COSA_META_SCHEMA overrides).
func cosaSchemaPath() string {
	if p := os.Getenv("COSA_META_SCHEMA"); p != "" {
		return p
	}
	return filepath.Join("..", "..", "shared", "schema", "cosa-meta-v1.json")
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func ostreeCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ostree", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ostree %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// The seed is the default config's package cache and cached base root: the
// first test that builds the default package set saves it, and the tests
// about what comes after composing (images, eviction, skip rules) start
// from a copy, so that mmdebstrap runs cold only in the tests about
// composing itself (lifecycle, containment, serve, cloud). A copy is hard
// links: cosa never writes these files in place (apt and fetch replace
// files by rename, and a build copies the base root out of the cache).
var seed struct {
	sync.Mutex
	dir string // set once saved
}

// seedParts are the cache entries a seed holds: no initramfs or stage
// cache, which would make the seeded tests skip what they check.
var seedParts = []string{"debs", "apt", "manifest-lock.x86_64.json", "rootfs"}

// seedCache hard-links the seed into workdir w's cache/ and reports
// whether there was one. COSA_E2E_CACHE may name the cache/ of an earlier
// `cosa build` of the default config to use when no test saved a seed.
func seedCache(t *testing.T, w string) bool {
	t.Helper()
	seed.Lock()
	src := seed.dir
	seed.Unlock()
	if src == "" {
		src = os.Getenv("COSA_E2E_CACHE")
	}
	if src == "" {
		return false
	}
	if err := os.MkdirAll(filepath.Join(w, "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, x := range seedParts {
		if _, err := os.Lstat(filepath.Join(src, x)); err != nil {
			continue
		}
		if out, err := exec.Command("cp", "-al", filepath.Join(src, x), filepath.Join(w, "cache", x)).CombinedOutput(); err != nil {
			t.Fatalf("seeding the cache: %v\n%s", err, out)
		}
	}
	t.Logf("e2e: cache seeded from %s", src)
	return true
}

// saveSeed keeps a hard-linked copy of workdir w's package cache and base
// root, just built from the default package set, as the seed, unless one
// was saved already.
func saveSeed(t *testing.T, w string) {
	t.Helper()
	seed.Lock()
	defer seed.Unlock()
	if seed.dir != "" || seedRoot == "" {
		return
	}
	dir := filepath.Join(seedRoot, "cache")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, x := range seedParts {
		if out, err := exec.Command("cp", "-al", filepath.Join(w, "cache", x), filepath.Join(dir, x)).CombinedOutput(); err != nil {
			t.Fatalf("saving the seed: %v\n%s", err, out)
		}
	}
	seed.dir = dir
}
