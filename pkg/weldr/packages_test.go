package weldr

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func TestCompareDebVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"1.0", "1.1", -1},
		{"1.10", "1.9", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0~rc1", "1.0~rc2", -1},
		{"1.0-1", "1.0-2", -1},
		{"1:0.9", "2.0", 1},
		{"2.36-9", "2.38", -1},
		{"1.0a", "1.0", 1},
		{"1.0+b1", "1.0", 1},
		{"1.0.0", "1.0", 1},
		{"2.1.12-stable-8", "2.1.8-stable", 1},
		{"0:1.0", "1.0", 0},
		{"1.001", "1.1", 0},
	} {
		if got := compareDebVersions(c.a, c.b); got != c.want {
			t.Errorf("compare(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := compareDebVersions(c.b, c.a); got != -c.want {
			t.Errorf("compare(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}

func TestParseRelations(t *testing.T) {
	rel, err := parseRelations("libc6 (>= 2.34), libtinfo6 | libncurses6:any (<< 7), perl:any")
	if err != nil {
		t.Fatal(err)
	}
	if len(rel) != 3 || len(rel[1]) != 2 {
		t.Fatalf("got %+v", rel)
	}
	if rel[0][0] != (relation{"libc6", ">=", "2.34"}) || rel[1][1] != (relation{"libncurses6", "<<", "7"}) || rel[2][0].Name != "perl" {
		t.Errorf("got %+v", rel)
	}
	if _, err := parseRelations("libc6 (>= 2.34"); err == nil {
		t.Error("an unclosed constraint was accepted")
	}
}

func writeIndex(t *testing.T, text string) *AptIndex {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x_Packages"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return NewAptIndex(dir, "amd64")
}

func depNames(deps []Dep) string {
	var s []string
	for _, d := range deps {
		s = append(s, d.Name+"="+d.Full())
	}
	return strings.Join(s, " ")
}

func TestDepsolveClosure(t *testing.T) {
	x := writeIndex(t, testIndex)
	deps, err := x.Depsolve([]Spec{{Name: "tmux"}})
	if err != nil {
		t.Fatal(err)
	}
	// libtinfo6 (the first alternative) needs a libc6 the index lacks, so
	// the resolver backs out of it and takes libncurses6.
	want := "libc6=2.36-9 libevent-core-2.1-7=2.1.12-stable-8 libgcc-s1=1:12.2.0-14 libncurses6=6.4-4 tmux=3.3a-3"
	if got := depNames(deps); got != want {
		t.Errorf("closure\n got %s\nwant %s", got, want)
	}
	for _, d := range deps {
		if d.Name == "libgcc-s1" && (d.Epoch != 1 || d.Version != "12.2.0" || d.Release != "14" || d.Arch != "amd64") {
			t.Errorf("libgcc-s1 = %+v", d)
		}
	}
}

func TestDepsolveProvides(t *testing.T) {
	x := writeIndex(t, testIndex)
	deps, err := x.Depsolve([]Spec{{Name: "mail-client"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := depNames(deps); !strings.Contains(got, "postfix=3.7.9-0+deb12u1") || !strings.Contains(got, "mail-client=1.0-1") {
		t.Errorf("virtual package not resolved through Provides: %s", got)
	}
	// A virtual name asked for directly resolves to its provider too.
	deps, err = x.Depsolve([]Spec{{Name: "mail-transport-agent"}})
	if err != nil || !strings.Contains(depNames(deps), "postfix=") {
		t.Errorf("virtual root: %v %s", err, depNames(deps))
	}
}

func TestDepsolveVersionGlobsAndErrors(t *testing.T) {
	x := writeIndex(t, testIndex+`
Package: tmux
Version: 3.4-1
Architecture: amd64
Depends: libc6 (>= 2.40)
Description: terminal multiplexer
`)
	// The newest tmux needs a libc6 that does not exist: asked for by a
	// glob, the old one resolves; the newest one fails, naming why.
	deps, err := x.Depsolve([]Spec{{Name: "tmux", Version: "3.3*"}})
	if err != nil || !strings.Contains(depNames(deps), "tmux=3.3a-3") {
		t.Errorf("glob 3.3*: %v %s", err, depNames(deps))
	}
	_, err = x.Depsolve([]Spec{{Name: "tmux"}})
	if err == nil || !strings.Contains(err.Error(), "libc6 (>= 2.40)") {
		t.Errorf("unsatisfiable newest tmux: %v", err)
	}
	if _, err := x.Depsolve([]Spec{{Name: "tmux", Version: "9*"}}); err == nil || !strings.Contains(err.Error(), `no version matches "9*"`) {
		t.Errorf("no matching version: %v", err)
	}
	if _, err := x.Depsolve([]Spec{{Name: "nosuch"}}); !errors.Is(err, ErrUnknownPackage) {
		t.Errorf("unknown package: %v", err)
	}
	// Frozen form (VERSION.ARCH) is accepted back.
	deps, err = x.Depsolve([]Spec{{Name: "firefox-esr", Version: "115.5.0esr-1~deb12u1.amd64"}})
	if err != nil || depNames(deps) != "firefox-esr=115.5.0esr-1~deb12u1" {
		t.Errorf("frozen version: %v %s", err, depNames(deps))
	}
}

func TestAptIndexListInfoAndReload(t *testing.T) {
	x := writeIndex(t, testIndex)
	all, total, err := x.List(0, 0)
	if err != nil || len(all) != 0 || total != 11 {
		t.Fatalf("List(0,0) = %d items, total %d, %v; want 0, 11 (ignored-arch left out)", len(all), total, err)
	}
	info, err := x.Info([]string{"tmu?", "libc6"})
	if err != nil || len(info) != 2 || info[0].Name != "libc6" || info[1].Name != "tmux" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	tm := info[1]
	if tm.Summary != "terminal multiplexer" || !strings.HasPrefix(tm.Description, "tmux enables") || tm.Homepage != "https://tmux.github.io/" {
		t.Errorf("tmux = %+v", tm)
	}
	if b := tm.Builds[0]; b.Source.Version != "3.3a" || b.Release != "3" || b.Arch != "amd64" || b.Epoch != 0 {
		t.Errorf("tmux build = %+v", b)
	}
	// A changed index (apt-get update) is read again.
	files, _ := x.Files()
	later := time.Now().Add(time.Minute)
	if err := os.WriteFile(files[0], []byte("Package: only\nVersion: 1\nArchitecture: all\nDescription: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(files[0], later, later)
	if _, total, _ := x.List(0, 10); total != 1 {
		t.Errorf("after rewriting the index, total %d, want 1", total)
	}
}

func TestParsePackagesErrors(t *testing.T) {
	for _, bad := range []string{
		"Package: a\n",                               // no version
		" continuation first\n",                      // continuation outside a field
		"Package a\nVersion: 1\n",                    // no colon
		"Package: a\nVersion: 1\nDepends: b (>= 1\n", // bad relation
	} {
		if _, err := parsePackages(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%q: error %v, want one naming the line", bad, err)
		}
	}
}

func TestAptIndexCompressed(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	z.Write([]byte(testIndex))
	z.Close()
	os.WriteFile(filepath.Join(dir, "a_Packages.gz"), buf.Bytes(), 0o644)
	buf.Reset()
	zw, _ := zstd.NewWriter(&buf)
	zw.Write([]byte("Package: zonly\nVersion: 1.0-1\nArchitecture: all\nDescription: from zstd\n"))
	zw.Close()
	os.WriteFile(filepath.Join(dir, "b_Packages.zst"), buf.Bytes(), 0o644)
	x := NewAptIndex(dir, "amd64")
	if _, total, err := x.List(0, 0); err != nil || total != 12 {
		t.Errorf("total %d, %v; want 12 from a .gz and a .zst index", total, err)
	}
}

func TestAptIndexEmptyDir(t *testing.T) {
	dir := t.TempDir()
	_, _, err := NewAptIndex(dir, "amd64").List(0, 0)
	if err == nil || !strings.Contains(err.Error(), "no package index in "+dir) {
		t.Errorf("error %v, want one naming the empty lists dir", err)
	}
}

// A group is a Debian task: its Depends and Recommends (first alternative
// each), without tasksel; a blueprint's depsolve includes them.
func TestGroupIsDebianTask(t *testing.T) {
	s := newServer(t)
	pkgs, err := s.opt.Packages.Group("mail-server")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(pkgs, " ") != "postfix mail-client" {
		t.Errorf("group mail-server = %v, want postfix mail-client", pkgs)
	}
	if _, err := s.opt.Packages.Group("nosuch"); !errors.Is(err, ErrUnknownGroup) || !strings.Contains(err.Error(), "task-nosuch") {
		t.Errorf("unknown group: %v", err)
	}
	r := s.pushTOML("/api/v1/blueprints/new", "name = \"mail\"\n[[groups]]\nname = \"mail-server\"\n").wantOK(t)
	if w := r.json(t)["warnings"]; w != nil && len(w.([]any)) > 0 {
		t.Errorf("groups draw a warning: %v", w)
	}
	m := s.get("/api/v1/blueprints/depsolve/mail").wantOK(t).json(t)
	got := map[string]bool{}
	for _, b := range list(t, m, "blueprints") {
		for _, d := range list(t, b.(map[string]any), "dependencies") {
			got[d.(map[string]any)["name"].(string)] = true
		}
	}
	for _, want := range []string{"postfix", "mail-client", "libc6"} {
		if !got[want] {
			t.Errorf("depsolve of a blueprint with group mail-server lacks %s: %v", want, got)
		}
	}
	if got["tasksel"] || got["task-mail-server"] {
		t.Errorf("depsolve installs the task machinery: %v", got)
	}
}
