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
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/build"
)

var cosaBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cosa-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cosaBin = filepath.Join(dir, "cosa")
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
	err := cmd.Run()
	r := result{Stdout: so.String(), Stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("cosa %v: %v", args, err)
	}
	t.Logf("e2e: cosa %s -> exit %d\n%s%s", strings.Join(args, " "), r.Code, tail(r.Stdout, 15), tail(r.Stderr, 15))
	return r
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
