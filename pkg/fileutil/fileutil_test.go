package fileutil

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func TestWriteFileAtomicReplacesAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "meta.json")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != "new\n" {
		t.Errorf("content = %q", got)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestWriteFileAtomicMissingDir(t *testing.T) {
	err := WriteFileAtomic(filepath.Join(t.TempDir(), "nope", "f"), nil, 0o644)
	if err == nil {
		t.Fatal("expected an error for a missing directory")
	}
}

func TestWriteAtomicFillErrorKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	veto := errors.New("veto")
	err := WriteAtomic(path, 0o644, func(f *os.File) error {
		f.Write([]byte("half"))
		return veto
	})
	if !errors.Is(err, veto) {
		t.Fatalf("err = %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("content = %q", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left %d entries", len(entries))
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Error(err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("a missing directory synced")
	}
}

func TestSHA256(t *testing.T) {
	// sha256("abc"), from FIPS 180-2's examples.
	const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := SHA256Hex([]byte("abc")); got != abc {
		t.Errorf("SHA256Hex = %s", got)
	}
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	if sum, n, err := SHA256File(p); err != nil || sum != abc || n != 3 {
		t.Errorf("SHA256File = %s, %d, %v", sum, n, err)
	}
	if _, _, err := SHA256File(p + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB",
		5 << 20: "5.0 MiB", 3 << 30: "3.00 GiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestContextReaderStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := ContextReader(ctx, strings.NewReader("data"))
	buf := make([]byte, 2)
	if n, err := r.Read(buf); n != 2 || err != nil {
		t.Fatalf("read = %d, %v", n, err)
	}
	cancel()
	if _, err := r.Read(buf); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel = %v", err)
	}
}

func TestRemoveAll(t *testing.T) {
	root := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(root, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "keep")
	if err := os.WriteFile(outside, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(root, "a", "link")); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tree still there: %v", err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("removal followed a symlink: %v", err)
	}
	if err := RemoveAll(root); err != nil {
		t.Errorf("removing a missing tree: %v", err)
	}
}

func TestJSONFileError(t *testing.T) {
	data := []byte("{\n  \"a\": [1,\n  }\n")
	var v map[string]any
	err := JSONFileError("x.json", data, json.Unmarshal(data, &v))
	if err == nil || !strings.HasPrefix(err.Error(), "x.json:3:3: ") {
		t.Errorf("syntax error = %v", err)
	}
	var s struct{ A string }
	data = []byte(`{"A": 5}`)
	err = JSONFileError("y.json", data, json.Unmarshal(data, &s))
	if err == nil || err.Error() != "y.json:1:7: A: expected a string, got a number" {
		t.Errorf("type error = %v", err)
	}
}

func TestMarshalNoEscape(t *testing.T) {
	got, err := MarshalNoEscape(map[string]string{"url": "https://x/?a=1&b=<2>"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"url":"https://x/?a=1&b=<2>"}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestOpenStatAndOpenSized(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, st, err := OpenStat(p)
	if err != nil || st.Size() != 5 || st.IsDir() {
		t.Fatalf("OpenStat(file) = %v, %v", st, err)
	}
	f.Close()
	f, n, err := OpenSized(p)
	if err != nil || n != 5 {
		t.Fatalf("OpenSized(file) = %d, %v", n, err)
	}
	f.Close()
	if f, st, err = OpenStat(dir); err != nil || !st.IsDir() {
		t.Fatalf("OpenStat(dir) = %v, %v", st, err)
	}
	f.Close()
	if _, _, err := OpenStat(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenStat(missing) = %v, want not-exist", err)
	}
}

func TestRemoveTempsTakesOnlyPathsOwnTemps(t *testing.T) {
	dir := t.TempDir()
	// Glob metacharacters in the name must match literally, not as a
	// pattern that also takes a neighbour's temps.
	path := filepath.Join(dir, "a[1]*.json")
	own := []string{".a[1]*.json.tmp-123", ".a[1]*.json.tmp-"}
	keep := []string{"a[1]*.json", ".a1x.json.tmp-9", ".b.json.tmp-1", ".a[1]*.json.tmp", ".a[1]*.jsonx.tmp-2"}
	for _, n := range append(append([]string{}, own...), keep...) {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A temp left by a killed WriteFileAtomic is the case that matters.
	if err := os.WriteFile(filepath.Join(dir, ".a[1]*.json.tmp-"+"4711"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RemoveTemps(path); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	want := append([]string{}, keep...)
	sort.Strings(left)
	sort.Strings(want)
	if strings.Join(left, "|") != strings.Join(want, "|") {
		t.Errorf("after RemoveTemps: %q, want %q", left, want)
	}
	if err := RemoveTemps(filepath.Join(dir, "missing", "x")); err != nil {
		t.Errorf("RemoveTemps in a missing dir: %v", err)
	}
}
