package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compose"
)

// testNow is the creation time of fixture tags.
var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// arch is the architecture the CLI uses by default (meta --arch, build).
var arch = compose.BaseArch()

// result is what one `cosa` invocation produced.
type result struct {
	code           int
	stdout, stderr string
}

// cosa runs the CLI in-process with args.
func cosa(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// wantCode fails the test (fatally) unless r exited with code.
func (r result) wantCode(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

// wantOK asserts exit 0 and an empty stderr.
func (r result) wantOK(t *testing.T) result {
	t.Helper()
	r.wantCode(t, 0)
	if r.stderr != "" {
		t.Errorf("stderr = %q, want empty", r.stderr)
	}
	return r
}

// wantStdout asserts the exact stdout.
func (r result) wantStdout(t *testing.T, want string) result {
	t.Helper()
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	return r
}

// wantStderr asserts the exact stderr.
func (r result) wantStderr(t *testing.T, want string) result {
	t.Helper()
	if r.stderr != want {
		t.Errorf("stderr:\n%q\nwant:\n%q", r.stderr, want)
	}
	return r
}

// wantStderrContains asserts stderr contains every one of subs.
func (r result) wantStderrContains(t *testing.T, subs ...string) result {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr %q does not contain %q", r.stderr, s)
		}
	}
	return r
}

// initWorkdir runs `cosa init` with the built-in config into a fresh dir.
func initWorkdir(t *testing.T) string {
	t.Helper()
	wd := filepath.Join(t.TempDir(), "w")
	cosa(t, "init", "-C", wd).wantOK(t)
	return wd
}

// snapshot records every entry under root: type, permission bits and
// content (or symlink target). A missing root is an empty snapshot.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root && os.IsNotExist(err) {
				return filepath.SkipDir
			}
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			snap[rel] = "symlink -> " + target
		case info.IsDir():
			snap[rel] = fmt.Sprintf("dir %o", info.Mode().Perm())
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			snap[rel] = fmt.Sprintf("file %o %q", info.Mode().Perm(), data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// wantUnchanged compares two snapshots. The lock file builds/.lock, which
// taking the lock creates, is not a change.
func wantUnchanged(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	before, after = maps.Clone(before), maps.Clone(after)
	for _, snap := range []map[string]string{before, after} {
		for k := range snap {
			if filepath.Base(k) == build.LockFile {
				delete(snap, k)
			}
		}
	}
	if maps.Equal(before, after) {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if after[k] != before[k] {
			t.Errorf("%s: %s changed: %s -> %s", what, k, before[k], after[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if _, ok := before[k]; !ok {
			t.Errorf("%s: %s appeared: %s", what, k, after[k])
		}
	}
}

// dirEntries lists the names in dir (nil if dir is missing).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// minimalManifest is a small valid manifest.yaml; its line numbers are
// relied upon by the config error tests (postprocess is line 7).
const minimalManifest = testutil.MinimalManifest + `postprocess:
  - postprocess/10-hostname.sh
`

func hexOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// fakeBuild describes one builds.json entry of a fixture.
type fakeBuild struct {
	id     string
	onDisk bool // write builds/<id>/<arch>/meta.json
	day    int  // day of November 2026, for the timestamps
}

// fakeMeta is a meta.json that validates against our schema.
func fakeMeta(b fakeBuild) *build.Meta {
	return &build.Meta{
		BuildID:         b.id,
		Name:            "debian-ostree",
		Ref:             "debian/bookworm/" + arch,
		OSTreeCommit:    hexOf("commit " + b.id),
		OSTreeTimestamp: fmt.Sprintf("2026-11-%02dT10:00:00Z", b.day),
		OSTreeVersion:   b.id,
		BaseArch:        arch,
		BuildTimestamp:  fmt.Sprintf("2026-11-%02dT10:05:00Z", b.day),
		Images: map[string]build.Artifact{
			"ostree": {Path: "debian-ostree-" + b.id + "-ostree." + arch + ".tar", Sha256: hexOf("ostree " + b.id), Size: int64(1000 + b.day)},
		},
	}
}

// makeBuilds writes a builds/ directory into the workdir wd: builds are
// given oldest first, builds.json lists them newest first, latest points
// at the newest on-disk build and tags maps tag name -> build id.
func makeBuilds(t *testing.T, wd string, tags map[string]string, builds ...fakeBuild) *build.Dir {
	t.Helper()
	d, err := build.Open(filepath.Join(wd, "builds"))
	if err != nil {
		t.Fatal(err)
	}
	d.LockWait = io.Discard
	idx, err := d.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	latest := ""
	for _, b := range builds {
		idx.Insert(b.id, arch)
		if b.onDisk {
			if err := d.WriteMeta(b.id, arch, fakeMeta(b)); err != nil {
				t.Fatal(err)
			}
			latest = b.id
		}
	}
	for _, name := range slices.Sorted(maps.Keys(tags)) {
		if err := idx.SetTag(name, tags[name], "", testNow); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.WriteIndex(idx); err != nil {
		t.Fatal(err)
	}
	if latest != "" {
		if err := d.SetLatest(latest); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// needTool skips the test when name is not on PATH.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
}

// runTool runs an external command, failing the test on error.
func runTool(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	c := exec.Command(name, args...)
	c.Dir = dir
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
