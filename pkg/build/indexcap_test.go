package build

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The limits on builds.json hold for the local file too: it is where a
// merged remote index would land.
func TestReadIndexLimits(t *testing.T) {
	d, _ := Open(t.TempDir())
	path := filepath.Join(d.Root, IndexFile)

	x := NewIndex()
	for i := range MaxIndexBuilds + 1 {
		x.Builds = append(x.Builds, BuildEntry{ID: fmt.Sprintf("1.%d", i), Arches: []string{"x86_64"}})
	}
	data, _ := json.Marshal(x)
	os.WriteFile(path, data, 0o644)
	_, err := d.ReadIndex()
	if want := fmt.Sprintf("%s: %d builds listed; cosa accepts at most %d", path, MaxIndexBuilds+1, MaxIndexBuilds); err == nil || err.Error() != want {
		t.Errorf("ReadIndex = %v, want %q", err, want)
	}
	if err := d.WriteIndex(x); err == nil || !strings.Contains(err.Error(), "builds listed; cosa accepts at most") {
		t.Errorf("WriteIndex of %d builds = %v", len(x.Builds), err)
	}

	x.Builds = x.Builds[:1]
	for i := range MaxIndexTags + 1 {
		x.Tags = append(x.Tags, Tag{Name: fmt.Sprintf("t%d", i), Target: x.Builds[0].ID})
	}
	if err := x.Validate(); err == nil || err.Error() != fmt.Sprintf("%d tags listed; cosa accepts at most %d", MaxIndexTags+1, MaxIndexTags) {
		t.Errorf("Validate with too many tags = %v", err)
	}

	big := append([]byte(`{"builds": []`), bytes.Repeat([]byte(" "), MaxIndexBytes)...)
	os.WriteFile(path, append(big, '}'), 0o644)
	_, err = d.ReadIndex()
	if want := fmt.Sprintf("%s: larger than %d bytes; cosa accepts at most that", path, MaxIndexBytes); err == nil || err.Error() != want {
		t.Errorf("ReadIndex of a large file = %v, want %q", err, want)
	}
}

// Merges sort by CompareBuildIDs, which is only sound for a transitive
// order; numbers against words used to form cycles.
func TestCompareBuildIDsIsTransitive(t *testing.T) {
	if CompareBuildIDs("9", "10") >= 0 || CompareBuildIDs("10", "10x") >= 0 || CompareBuildIDs("9", "10x") >= 0 {
		t.Errorf(`want 9 < 10 < 10x and 9 < 10x; got %d %d %d`,
			CompareBuildIDs("9", "10"), CompareBuildIDs("10", "10x"), CompareBuildIDs("9", "10x"))
	}
	parts := []string{"0", "00", "7", "07", "10", "9", "a", "dev", "rc1", "10x", "0a", "1"}
	r := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, 300)
	for i := range ids {
		var p []string
		for range 1 + r.IntN(3) {
			p = append(p, parts[r.IntN(len(parts))])
		}
		ids[i] = strings.Join(p, ".")
	}
	for _, a := range ids {
		for _, b := range ids[:60] {
			if CompareBuildIDs(a, b) != -CompareBuildIDs(b, a) {
				t.Fatalf("not antisymmetric: %q %q", a, b)
			}
			for _, c := range ids[:60] {
				if CompareBuildIDs(a, b) <= 0 && CompareBuildIDs(b, c) <= 0 && CompareBuildIDs(a, c) > 0 {
					t.Fatalf("not transitive: %q <= %q <= %q but %q > %q", a, b, c, a, c)
				}
			}
		}
	}
	// Sorting must then agree with the pairwise order everywhere.
	slices.SortFunc(ids, CompareBuildIDs)
	for i := 1; i < len(ids); i++ {
		if CompareBuildIDs(ids[i-1], ids[i]) > 0 {
			t.Fatalf("sorted ids out of order at %d: %q > %q", i, ids[i-1], ids[i])
		}
	}
}
