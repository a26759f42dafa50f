package images

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/platform"
)

func storeWith(t *testing.T, ids ...string) *Store {
	t.Helper()
	s := &Store{Dir: t.TempDir()}
	for _, id := range ids {
		os.MkdirAll(filepath.Join(s.Path(id), "sub"), 0o755)
		os.WriteFile(filepath.Join(s.Path(id), "sub", "f"), []byte(id), 0o644)
		if err := s.SetSum(id, "sub/f", FileSum{Sha256: "aa", Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestEvictObjects(t *testing.T) {
	a, b, c := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)
	s := storeWith(t, a, b, c)
	// A file hard-linked out of an object (an artifact in builds/).
	art := filepath.Join(t.TempDir(), "artifact")
	if err := os.Link(filepath.Join(s.Path(b), "sub", "f"), art); err != nil {
		t.Fatal(err)
	}
	// Ids that are not objects are never touched, whatever a manifest says.
	os.WriteFile(filepath.Join(s.Dir, StoreLockFile), nil, 0o644)
	outside := filepath.Join(filepath.Dir(s.Dir), strings.Repeat("d", 64))
	os.MkdirAll(outside, 0o755)
	drop := map[string]bool{b: true, c: true, strings.Repeat("e", 64): true, StoreLockFile: true,
		"../" + filepath.Base(outside): true, b + ".sums.json": true, "": true}
	evicted, busy, err := s.EvictObjects(drop)
	if err != nil || busy {
		t.Fatalf("EvictObjects: %v busy=%v", err, busy)
	}
	if !slices.Equal(evicted, []string{b, c}) {
		t.Errorf("evicted %v", evicted)
	}
	entries, _ := os.ReadDir(s.Dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{StoreLockFile, a, a + ".sums.json"}; !slices.Equal(names, want) {
		t.Errorf("store holds %v, want %v", names, want)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("a path outside the store went: %v", err)
	}
	if data, err := os.ReadFile(art); err != nil || string(data) != b {
		t.Errorf("hard-linked artifact: %q %v", data, err)
	}
	if _, ok := s.Sum(a, "sub/f"); !ok {
		t.Error("kept object lost its sidecar")
	}
}

// An eviction killed half way leaves a .tmp- leftover, never a partial
// object under its id, and an orphaned sidecar at worst; the next run that
// has the store to itself clears both.
func TestEvictionLeftoversCleaned(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	s := storeWith(t, a, b)
	// Killed after the rename: the object is gone from view already.
	os.Rename(s.Path(b), filepath.Join(s.Dir, ".tmp-evict-"+b+"-0000"))
	if s.Has(b) {
		t.Fatal("a renamed-away object is still found")
	}
	// An older version removed the sidecar last: one outlived its object.
	c := strings.Repeat("c", 64)
	os.WriteFile(s.sumsPath(c), []byte(`{"disk.raw":{"sha256":"aa","size":1}}`), 0o644)
	u, err := s.use(nil)
	if err != nil {
		t.Fatal(err)
	}
	u.release()
	entries, _ := os.ReadDir(s.Dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{StoreLockFile, a, a + ".sums.json"}; !slices.Equal(names, want) {
		t.Errorf("after clean: %v, want %v", names, want)
	}
	// A new object under c must not inherit the stale checksum.
	os.MkdirAll(s.Path(c), 0o755)
	if _, ok := s.Sum(c, "disk.raw"); ok {
		t.Error("stale sidecar vouches for a new object")
	}
}

// Every object a run stores is named by its manifest, so a build's saved
// manifest accounts for all it left in the store.
func TestManifestObjectsCoverStoredObjects(t *testing.T) {
	qemu, _ := platform.Lookup("qemu")
	m, _, _, err := testSpec().Manifest(qemu)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := ManifestObjects(m)
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := m.IDs()
	n := 0
	for _, p := range m.Pipelines {
		pids := ids[p.Name]
		n += len(pids)
		if !objs[pids[len(pids)-1]] {
			t.Errorf("pipeline %s: final object not named", p.Name)
		}
		for i, st := range p.Stages {
			if st.Checkpoint && !objs[pids[i]] {
				t.Errorf("pipeline %s: checkpoint %s not named", p.Name, st.Type)
			}
		}
	}
	if len(objs) != n {
		t.Errorf("%d objects named, manifest has %d stages", len(objs), n)
	}
}
