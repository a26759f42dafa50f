package build

import (
	"os"
	"path/filepath"
	"testing"
)

// A writer killed inside fileutil.WriteFileAtomic leaves ".NAME.tmp-XXXX"
// behind, and its random suffix means no later write of NAME replaces it.
// The lock-holding writers of builds.json, latest and meta.json clear them.
func TestWritersClearKilledWritersTemps(t *testing.T) {
	d, _ := Open(t.TempDir())
	id := "12.20261122.dev.1"
	if err := os.MkdirAll(d.BuildDir(id, "x86_64"), 0o755); err != nil {
		t.Fatal(err)
	}
	stale := []string{
		filepath.Join(d.Root, ".builds.json.tmp-2804400802"),
		filepath.Join(d.Root, ".latest.tmp-0a1b2c3d4e5f"),
		filepath.Join(d.BuildDir(id, "x86_64"), ".meta.json.tmp-77"),
	}
	for _, p := range stale {
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	other := filepath.Join(d.BuildDir(id, "x86_64"), ".x.qcow2.tmp")
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	idx := &BuildsIndex{}
	idx.Insert(id, "x86_64")
	if err := d.WriteIndex(idx); err != nil {
		t.Fatal(err)
	}
	if err := d.SetLatest(id); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteMeta(id, "x86_64", realisticMeta(id)); err != nil {
		t.Fatal(err)
	}
	for _, p := range stale {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", p, err)
		}
	}
	// Not a temp of any of those three: someone else's to clear.
	if _, err := os.Stat(other); err != nil {
		t.Errorf("removed a file that is not theirs: %v", err)
	}
}
