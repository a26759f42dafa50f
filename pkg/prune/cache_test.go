package prune

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/images"
	"github.com/cosa-build/cosa/pkg/platform"
)

func set(ids ...string) map[string]bool {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func sorted(m map[string]bool) []string {
	return slices.Sorted(maps.Keys(m))
}

func TestCachePlan(t *testing.T) {
	// b5 is newest, b2 tagged "stable"; "shared" is named by b5 and b3
	// (a stage whose options do not depend on the commit), "t2" by the
	// tagged b2 and b1.
	objs := map[string]map[string]bool{
		"b1": set("o1", "t2"),
		"b2": set("t2"),
		"b3": set("o3", "shared"),
		"b4": set("o4"),
		"b5": set("o5", "shared"),
	}
	objectsOf := func(id string) (map[string]bool, error) { return objs[id], nil }
	for _, tc := range []struct {
		name    string
		missing []string
		gone    map[string]bool
		broken  string
		want    []string
		wantErr string
	}{
		{name: "superseded builds lose what the newest and tagged do not name",
			want: []string{"o1", "o3", "o4"}},
		{name: "objects of pruned builds go too, unless still named", gone: set("p1", "o5", "t2"),
			want: []string{"o1", "o3", "o4", "p1"}},
		{name: "newest build missing on disk: the newest on disk is protected", missing: []string{"b5"},
			want: []string{"o1", "o3", "shared"}},
		{name: "unreadable superseded build keeps its objects", broken: "b4",
			want: []string{"o1", "o3"}},
		{name: "unreadable protected build stops the plan", broken: "b5", wantErr: "build b5: bad manifest"},
		{name: "unreadable tagged build stops the plan", broken: "b2", wantErr: "build b2: bad manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			of := func(id string) (map[string]bool, error) {
				if id == tc.broken {
					return nil, errors.New("bad manifest")
				}
				return objectsOf(id)
			}
			drop, err := CachePlan(testIndex(t), allOnDiskExcept(tc.missing...), of, tc.gone)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := sorted(drop); !slices.Equal(got, tc.want) {
				t.Errorf("drop = %v, want %v", got, tc.want)
			}
		})
	}
}

// cacheWorkdir is a builds/ dir and an object store as a series of real
// builds leaves them: each build has a qemu manifest saved next to its
// image, the store holds the objects the engine keeps (the pull-local
// checkpoint and every pipeline's end), and the image artifact is a hard
// link of the store's final object file, as extend.MakeImage makes it.
type cacheWorkdir struct {
	d      *build.Dir
	st     *images.Store
	ids    []string                   // builds, oldest first
	stored map[string][]string        // build -> store objects it made
	arts   map[string]string          // build -> artifact path
	sums   map[string]string          // build -> artifact sha256 (as meta.json has it)
	named  map[string]map[string]bool // build -> BuildObjects
}

func newCacheWorkdir(t *testing.T, n int) *cacheWorkdir {
	t.Helper()
	root := t.TempDir()
	d, err := build.Open(filepath.Join(root, "builds"))
	if err != nil {
		t.Fatal(err)
	}
	c := &cacheWorkdir{d: d, st: &images.Store{Dir: filepath.Join(root, "cache", "objects")},
		stored: map[string][]string{}, arts: map[string]string{}, sums: map[string]string{}, named: map[string]map[string]bool{}}
	qemu, ok := platform.Lookup("qemu")
	if !ok {
		t.Fatal("no qemu platform")
	}
	idx := build.NewIndex()
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("b%d", i)
		spec := images.ImageSpec{Commit: strings.Repeat(fmt.Sprint(i), 64), Ref: "os/x86_64", OSName: "os", SizeGiB: 4, Rootfs: "ext4"}
		m, export, file, err := spec.Manifest(qemu)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := m.IDs()
		if err != nil {
			t.Fatal(err)
		}
		arch := d.BuildDir(id, "x86_64")
		os.MkdirAll(arch, 0o755)
		data, _ := m.Marshal()
		os.WriteFile(filepath.Join(arch, "os-"+id+"-qemu.x86_64.manifest.json"), data, 0o644)
		for _, p := range m.Pipelines {
			pids := ids[p.Name]
			objs := []string{pids[len(pids)-1]}
			for j, s := range p.Stages {
				if s.Checkpoint {
					objs = append(objs, pids[j])
				}
			}
			for _, o := range objs {
				os.MkdirAll(c.st.Path(o), 0o755)
				os.WriteFile(filepath.Join(c.st.Path(o), "content"), []byte(id+" "+p.Name), 0o644)
				c.stored[id] = append(c.stored[id], o)
			}
		}
		final := ids[export][len(ids[export])-1]
		img := filepath.Join(c.st.Path(final), file)
		os.WriteFile(img, []byte("image of "+id), 0o644)
		c.st.SetSum(final, file, images.FileSum{Sha256: "x", Size: 1})
		art := filepath.Join(arch, "os-"+id+"-qemu.x86_64.qcow2")
		if err := os.Link(img, art); err != nil {
			t.Fatal(err)
		}
		c.arts[id] = art
		sum := sha256.Sum256([]byte("image of " + id))
		c.sums[id] = hex.EncodeToString(sum[:])
		c.named[id], err = images.ManifestObjects(m)
		if err != nil {
			t.Fatal(err)
		}
		idx.Insert(id, "x86_64")
		c.ids = append(c.ids, id)
	}
	if err := d.WriteIndex(idx); err != nil {
		t.Fatal(err)
	}
	d.SetLatest(c.ids[len(c.ids)-1])
	return c
}

// storeObjects lists the objects in the store (no lock, sidecars, leftovers).
func (c *cacheWorkdir) storeObjects(t *testing.T) []string {
	entries, err := os.ReadDir(c.st.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

func (c *cacheWorkdir) objectsOf(ids ...string) []string {
	var out []string
	for _, id := range ids {
		out = append(out, c.stored[id]...)
	}
	sort.Strings(out)
	return out
}

// checkArtifacts: every build's image still reads back as it was written.
func (c *cacheWorkdir) checkArtifacts(t *testing.T, ids ...string) {
	t.Helper()
	for _, id := range ids {
		data, err := os.ReadFile(c.arts[id])
		if err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != c.sums[id] {
			t.Errorf("%s: artifact changed", id)
		}
	}
}

func TestBuildObjects(t *testing.T) {
	c := newCacheWorkdir(t, 2)
	got, err := BuildObjects(c.d, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, c.named["b1"]) {
		t.Errorf("BuildObjects = %d ids, want the manifest's %d", len(got), len(c.named["b1"]))
	}
	for _, o := range c.stored["b1"] {
		if !got[o] {
			t.Errorf("stored object %s of b1 not named", o)
		}
	}
	// A damaged manifest is an error naming the file.
	p := filepath.Join(c.d.BuildDir("b2", "x86_64"), "os-b2-qemu.x86_64.manifest.json")
	os.WriteFile(p, []byte("{\n\"version\": \"2\",\n"), 0o644)
	if _, err := BuildObjects(c.d, "b2"); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("damaged manifest: err = %v", err)
	}
	if objs, err := BuildObjects(c.d, "nosuch"); err != nil || len(objs) != 0 {
		t.Errorf("build without manifests: %v %v", objs, err)
	}
	if _, err := BuildObjects(c.d, "../x"); err == nil {
		t.Error("a path as build id was accepted")
	}
}

func TestEvictCache(t *testing.T) {
	c := newCacheWorkdir(t, 4)
	idx, _ := c.d.ReadIndex()
	idx.SetTag("stable", "b2", "", time.Unix(0, 0))
	c.d.WriteIndex(idx)
	// An object no build names (a pipeline run, a build in progress).
	foreign := strings.Repeat("f", 64)
	os.MkdirAll(c.st.Path(foreign), 0o755)

	evicted, busy, err := EvictCache(c.d, c.st, nil)
	if err != nil || busy {
		t.Fatalf("EvictCache: %v busy=%v", err, busy)
	}
	if want := c.objectsOf("b1", "b3"); !slices.Equal(evicted, want) {
		t.Errorf("evicted %d objects %v, want b1's and b3's %v", len(evicted), evicted, want)
	}
	want := append(c.objectsOf("b2", "b4"), foreign)
	sort.Strings(want)
	if got := c.storeObjects(t); !slices.Equal(got, want) {
		t.Errorf("store holds %v, want b2's, b4's and the foreign object %v", got, want)
	}
	// The sidecars went with their objects.
	for _, o := range c.objectsOf("b1", "b3") {
		if _, err := os.Stat(filepath.Join(c.st.Dir, o+".sums.json")); !os.IsNotExist(err) {
			t.Errorf("sidecar of evicted %s left: %v", o, err)
		}
	}
	if _, ok := c.st.Sum(c.stored["b4"][len(c.stored["b4"])-1], "disk.qcow2"); !ok {
		t.Error("the newest build's sidecar went")
	}
	c.checkArtifacts(t, c.ids...)

	// Again: nothing left to evict.
	if evicted, _, err := EvictCache(c.d, c.st, nil); err != nil || len(evicted) != 0 {
		t.Errorf("second EvictCache: %v %v", evicted, err)
	}
}

// While another engine run holds the store (shared lock), eviction removes
// nothing: that run may be reading any object.
func TestEvictCacheBusy(t *testing.T) {
	c := newCacheWorkdir(t, 3)
	f, err := os.OpenFile(filepath.Join(c.st.Dir, images.StoreLockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	before := c.storeObjects(t)
	evicted, busy, err := EvictCache(c.d, c.st, nil)
	if err != nil || !busy || len(evicted) != 0 {
		t.Fatalf("EvictCache while busy: %v busy=%v err=%v", evicted, busy, err)
	}
	if got := c.storeObjects(t); !slices.Equal(got, before) {
		t.Errorf("store changed while busy: %v", got)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if evicted, busy, err := EvictCache(c.d, c.st, nil); err != nil || busy || len(evicted) == 0 {
		t.Fatalf("EvictCache once alone: %v busy=%v err=%v", evicted, busy, err)
	}
}

// A protected build whose manifest cannot be read stops the eviction
// before anything is removed.
func TestEvictCacheUnreadableLatest(t *testing.T) {
	c := newCacheWorkdir(t, 3)
	os.WriteFile(filepath.Join(c.d.BuildDir("b3", "x86_64"), "os-b3-qemu.x86_64.manifest.json"), []byte("[]"), 0o644)
	before := c.storeObjects(t)
	if _, _, err := EvictCache(c.d, c.st, nil); err == nil {
		t.Fatal("no error")
	}
	if got := c.storeObjects(t); !slices.Equal(got, before) {
		t.Errorf("store changed: %v", got)
	}
}

// Pruning with a cache evicts what the pruned builds (whose manifests are
// gone afterwards) and the other superseded builds used; the kept builds'
// artifacts are intact, and the newest build's objects stay for a
// buildextend.
func TestRunEvictsPrunedBuildsObjects(t *testing.T) {
	c := newCacheWorkdir(t, 4)
	// b3 already had its objects evicted by a later build; b1, b2 are
	// pruned below.
	remove, _, err := Run(context.Background(), c.d, Options{KeepLastN: 2, Cache: c.st}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(remove, []string{"b2", "b1"}) {
		t.Fatalf("removed %v", remove)
	}
	if got, want := c.storeObjects(t), c.objectsOf("b4"); !slices.Equal(got, want) {
		t.Errorf("store holds %v, want only b4's %v", got, want)
	}
	c.checkArtifacts(t, "b3", "b4")
	// A rebuild of b4's image finds its objects.
	for _, o := range c.stored["b4"] {
		if !c.st.Has(o) {
			t.Errorf("b4 object %s gone", o)
		}
	}
}
