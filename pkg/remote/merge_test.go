package remote

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosa-build/cosa/pkg/build"
)

// refMergeIndex is the original, quadratic MergeIndex: the specification
// the fast one must match entry for entry.
func refMergeIndex(dst *build.BuildsIndex, entries []build.BuildEntry, tags []build.Tag, tagsWin bool) bool {
	changed := false
	for _, e := range entries {
		if have := dst.Find(e.ID); have != nil {
			for _, a := range e.Arches {
				if !slices.Contains(have.Arches, a) {
					have.Arches = append(have.Arches, a)
					changed = true
				}
			}
			continue
		}
		pos := len(dst.Builds)
		for i, b := range dst.Builds {
			if build.CompareBuildIDs(e.ID, b.ID) > 0 {
				pos = i
				break
			}
		}
		dst.Builds = slices.Insert(dst.Builds, pos, build.BuildEntry{ID: e.ID, Arches: slices.Clone(e.Arches)})
		changed = true
	}
	for _, t := range tags {
		if dst.Find(t.Target) == nil {
			continue
		}
		i := slices.IndexFunc(dst.Tags, func(x build.Tag) bool { return x.Name == t.Name })
		switch {
		case i < 0:
			dst.Tags = append(dst.Tags, t)
			changed = true
		case tagsWin && dst.Tags[i] != t:
			dst.Tags[i] = t
			changed = true
		}
	}
	return changed
}

// randomID draws from a small space so that ids collide, tie under
// CompareBuildIDs ("07" vs "7"), are prefixes of one another and mix
// numeric and non-numeric parts at the same position.
func randomID(r *rand.Rand) string {
	parts := []string{"0", "7", "07", "10", "9", "a", "dev", "rc1", "10x", "2026"}
	n := 1 + r.IntN(4)
	s := make([]string, n)
	for i := range s {
		s[i] = parts[r.IntN(len(parts))]
	}
	return strings.Join(s, ".")
}

func randomEntries(r *rand.Rand, n int) []build.BuildEntry {
	arches := []string{"x86_64", "aarch64", "s390x"}
	out := make([]build.BuildEntry, n)
	for i := range out {
		e := build.BuildEntry{ID: randomID(r)}
		for range 1 + r.IntN(2) {
			e.Arches = append(e.Arches, arches[r.IntN(len(arches))])
		}
		out[i] = e
	}
	return out
}

func randomTags(r *rand.Rand, ids []string, n int) []build.Tag {
	out := make([]build.Tag, n)
	for i := range out {
		target := randomID(r)
		if len(ids) > 0 && r.IntN(3) > 0 {
			target = ids[r.IntN(len(ids))]
		}
		out[i] = build.Tag{Name: fmt.Sprintf("t%d", r.IntN(4)), Target: target, Created: fmt.Sprint(r.IntN(3))}
	}
	return out
}

func cloneIndex(x *build.BuildsIndex) *build.BuildsIndex {
	c := *x
	c.Builds = make([]build.BuildEntry, len(x.Builds))
	for i, e := range x.Builds {
		c.Builds[i] = build.BuildEntry{ID: e.ID, Arches: slices.Clone(e.Arches)}
	}
	c.Tags = slices.Clone(x.Tags)
	return &c
}

// dedupe keeps the first element of each key: a dst read from builds.json
// has passed Validate, which refuses duplicate build ids and tag names.
func dedupe[T any](xs []T, key func(T) string) []T {
	seen := map[string]bool{}
	return slices.DeleteFunc(xs, func(x T) bool {
		if seen[key(x)] {
			return true
		}
		seen[key(x)] = true
		return false
	})
}

func TestMergeIndexMatchesReference(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 1))
	for iter := range 3000 {
		size := 12
		if iter%100 == 0 {
			size = 300
		}
		dst := &build.BuildsIndex{Builds: dedupe(randomEntries(r, r.IntN(size)), func(e build.BuildEntry) string { return e.ID })}
		if r.IntN(2) == 0 {
			// Mostly newest first, as builds.json normally is.
			slices.SortStableFunc(dst.Builds, func(a, b build.BuildEntry) int { return build.CompareBuildIDs(b.ID, a.ID) })
		}
		dst.Tags = dedupe(randomTags(r, dst.IDs(), r.IntN(3)), func(t build.Tag) string { return t.Name })
		in := randomEntries(r, r.IntN(size))
		var inIDs []string
		for _, e := range in {
			inIDs = append(inIDs, e.ID)
		}
		tags := randomTags(r, append(dst.IDs(), inIDs...), r.IntN(4))
		tagsWin := r.IntN(2) == 0

		want := cloneIndex(dst)
		wantChanged := refMergeIndex(want, in, tags, tagsWin)
		got := cloneIndex(dst)
		gotChanged := MergeIndex(got, in, tags, tagsWin)
		if gotChanged != wantChanged || !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d iteration %d: merging %v (tags %v, tagsWin %v) into %v (tags %v):\n got %v %v %v\nwant %v %v %v",
				seed, iter, in, tags, tagsWin, dst.Builds, dst.Tags,
				gotChanged, got.Builds, got.Tags, wantChanged, want.Builds, want.Tags)
		}
	}
}

// benchIndex is n builds, newest first, as a remote builds.json lists
// them, plus a tag on every hundredth build.
func benchIndex(n int) *build.BuildsIndex {
	x := build.NewIndex()
	for i := n - 1; i >= 0; i-- {
		x.Builds = append(x.Builds, build.BuildEntry{
			ID: fmt.Sprintf("42.%d.dev.%d", 20000101+i/100, i%100), Arches: []string{"x86_64"}})
		if i%100 == 0 {
			x.Tags = append(x.Tags, build.Tag{Name: fmt.Sprintf("t%d", i), Target: x.Builds[len(x.Builds)-1].ID})
		}
	}
	return x
}

// BenchmarkMergeIndex is a buildfetch of a 100k-build remote builds.json
// into a local one that has every tenth of those builds plus its own.
func BenchmarkMergeIndex(b *testing.B) {
	const n = 100_000
	remote := benchIndex(n)
	local := build.NewIndex()
	for i, e := range remote.Builds {
		if i%10 == 0 {
			local.Builds = append(local.Builds, e)
		}
	}
	local.Builds = append([]build.BuildEntry{{ID: "43.20300101.dev.0", Arches: []string{"x86_64"}}}, local.Builds...)
	for b.Loop() {
		dst := cloneIndex(local)
		if !MergeIndex(dst, remote.Builds, remote.Tags, false) {
			b.Fatal("no change")
		}
		if len(dst.Builds) != n+1 {
			b.Fatalf("%d builds after the merge, want %d", len(dst.Builds), n+1)
		}
	}
}

// A remote builds.json over the limits is refused with one line naming it,
// before anything is merged or written.
func TestFetchRefusesHugeIndex(t *testing.T) {
	srcDir := t.TempDir()
	x := benchIndex(build.MaxIndexBuilds + 1)
	data, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(srcDir, build.IndexFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	d := newDir(t)
	_, err = fetch(t, &FileSource{Root: srcDir}, d, "")
	want := fmt.Sprintf("%s: %d builds listed; cosa accepts at most %d",
		filepath.Join(srcDir, build.IndexFile), build.MaxIndexBuilds+1, build.MaxIndexBuilds)
	if err == nil || err.Error() != want {
		t.Fatalf("fetch of a %d-build builds.json: %v, want %q", build.MaxIndexBuilds+1, err, want)
	}
	if _, err := os.Stat(filepath.Join(d.Root, build.IndexFile)); !os.IsNotExist(err) {
		t.Errorf("local builds.json written after the refusal: %v", err)
	}

	big := append([]byte(`{"builds": []`), bytes.Repeat([]byte(" "), build.MaxIndexBytes)...)
	big = append(big, '}')
	_, err = parseIndex("https://example.invalid/builds.json", big)
	if want := fmt.Sprintf("https://example.invalid/builds.json: larger than %d bytes; cosa accepts at most that", build.MaxIndexBytes); err == nil || err.Error() != want {
		t.Errorf("oversized builds.json: %v, want %q", err, want)
	}
}
