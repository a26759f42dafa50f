package build

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReadIndexMissingIsEmpty(t *testing.T) {
	d, err := Open(filepath.Join(t.TempDir(), "builds"))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := d.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	if idx.SchemaVersion != "1.0.0" || len(idx.Builds) != 0 || len(idx.Tags) != 0 {
		t.Errorf("got %+v, want empty index", idx)
	}
}

func TestIndexRoundTripAndOrdering(t *testing.T) {
	d, _ := Open(t.TempDir())
	idx := NewIndex()
	idx.Insert("12.20261122.dev.0", "x86_64")
	idx.Insert("12.20261122.dev.1", "x86_64")
	idx.Insert("12.20261122.dev.0", "aarch64") // existing: keeps position
	idx.Insert("12.20261122.dev.1", "x86_64")  // duplicate arch: no-op
	if got, want := idx.IDs(), []string{"12.20261122.dev.1", "12.20261122.dev.0"}; !slices.Equal(got, want) {
		t.Fatalf("IDs = %v, want %v (newest first)", got, want)
	}
	if got := idx.Find("12.20261122.dev.0").Arches; !slices.Equal(got, []string{"x86_64", "aarch64"}) {
		t.Errorf("arches = %v", got)
	}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	if err := idx.SetTag("stable", "12.20261122.dev.0", "first good one", now); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteIndex(idx); err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse(time.RFC3339, idx.Timestamp); err != nil || !strings.HasSuffix(idx.Timestamp, "Z") {
		t.Errorf("timestamp %q is not RFC 3339 UTC", idx.Timestamp)
	}

	raw, _ := os.ReadFile(filepath.Join(d.Root, "builds.json"))
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema-version", "builds", "timestamp", "tags"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("builds.json lacks %q: %s", k, raw)
		}
	}
	if !strings.HasSuffix(string(raw), "}\n") {
		t.Errorf("builds.json lacks a trailing newline")
	}

	back, err := d.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(back.Builds, idx.Builds, func(a, b BuildEntry) bool {
		return a.ID == b.ID && slices.Equal(a.Arches, b.Arches)
	}) || !slices.Equal(back.Tags, idx.Tags) || back.Timestamp != idx.Timestamp {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, idx)
	}

	if !idx.Remove("12.20261122.dev.1") || idx.Remove("nope") {
		t.Error("Remove reported wrongly")
	}
	if idx.Find("12.20261122.dev.1") != nil {
		t.Error("removed build still found")
	}
}

func TestTags(t *testing.T) {
	idx := NewIndex()
	idx.Insert("1.20261120.dev.0", "x86_64")
	idx.Insert("1.20261121.dev.0", "x86_64")
	idx.Insert("1.20261122.dev.0", "x86_64")
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

	if err := idx.SetTag("stable", "1.20261120.dev.0", "old", t0); err != nil {
		t.Fatal(err)
	}
	if err := idx.SetTag("testing", "1.20261120.dev.0", "", t0); err != nil {
		t.Fatal(err)
	}
	if got := idx.TaggedIDs(); !slices.Equal(got, []string{"1.20261120.dev.0"}) {
		t.Errorf("TaggedIDs = %v", got)
	}
	// Moving keeps the description when none is given and restamps Created.
	if err := idx.SetTag("stable", "1.20261122.dev.0", "", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if len(idx.Tags) != 2 || idx.Tags[0] != (Tag{"stable", "1.20261122.dev.0", "2026-11-22T11:00:00Z", "old"}) {
		t.Errorf("after move: %+v", idx.Tags)
	}
	if got := idx.TaggedIDs(); !slices.Equal(got, []string{"1.20261122.dev.0", "1.20261120.dev.0"}) {
		t.Errorf("TaggedIDs = %v, want newest first", got)
	}
	if err := idx.SetTag("stable", "no-such-build", "", t0); err == nil {
		t.Error("SetTag accepted a missing target")
	}
	if err := idx.SetTag("bad/name", "1.20261122.dev.0", "", t0); err == nil {
		t.Error("SetTag accepted a bad name")
	}
	if !idx.DeleteTag("testing") || idx.DeleteTag("testing") {
		t.Error("DeleteTag reported wrongly")
	}
	if got := idx.TagsOf("1.20261122.dev.0"); !slices.Equal(got, []string{"stable"}) {
		t.Errorf("TagsOf = %v", got)
	}
}

func TestWriteIndexRejectsInvalid(t *testing.T) {
	d, _ := Open(t.TempDir())
	for name, idx := range map[string]*BuildsIndex{
		"dangling tag": {Builds: []BuildEntry{{"1.20261122.dev.0", []string{"x86_64"}}},
			Tags: []Tag{{Name: "stable", Target: "1.20261121.dev.0"}}},
		"duplicate id": {Builds: []BuildEntry{{"a", []string{"x86_64"}}, {"a", []string{"x86_64"}}}},
		"bad id":       {Builds: []BuildEntry{{"../x", []string{"x86_64"}}}},
		"no arches":    {Builds: []BuildEntry{{"a", nil}}},
	} {
		err := d.WriteIndex(idx)
		if err == nil {
			t.Errorf("%s: WriteIndex accepted it", name)
			continue
		}
		if name == "dangling tag" && !strings.Contains(err.Error(), `tag "stable" points at build "1.20261121.dev.0", which is not in builds.json`) {
			t.Errorf("dangling tag error = %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(d.Root, "builds.json")); !os.IsNotExist(err) {
		t.Error("an invalid index was written")
	}
}

func TestReadIndexMalformedNamesFileAndLine(t *testing.T) {
	d, _ := Open(t.TempDir())
	bad := "{\n  \"schema-version\": \"1.0.0\",\n  \"builds\": [\n    {\"id\": \"a\" \"arches\": []}\n  ]\n}\n"
	os.WriteFile(filepath.Join(d.Root, "builds.json"), []byte(bad), 0o644)
	_, err := d.ReadIndex()
	if err == nil || !strings.Contains(err.Error(), filepath.Join(d.Root, "builds.json")+":4:") {
		t.Errorf("error = %v, want file name and line 4", err)
	}

	wrongType := "{\n  \"builds\": \"nope\"\n}\n"
	os.WriteFile(filepath.Join(d.Root, "builds.json"), []byte(wrongType), 0o644)
	if _, err := d.ReadIndex(); err == nil || !strings.Contains(err.Error(), "builds.json:2:") {
		t.Errorf("type error = %v, want line 2", err)
	}
}

func TestLatestSymlink(t *testing.T) {
	d, _ := Open(t.TempDir())
	if id, err := d.Latest(); err != nil || id != "" {
		t.Fatalf("Latest on empty dir = %q, %v", id, err)
	}
	for _, id := range []string{"1.20261122.dev.0", "1.20261122.dev.1"} {
		if err := d.SetLatest(id); err != nil {
			t.Fatal(err)
		}
		if got, err := d.Latest(); err != nil || got != id {
			t.Errorf("Latest = %q, %v; want %q", got, err, id)
		}
	}
	target, _ := os.Readlink(filepath.Join(d.Root, "latest"))
	if target != "1.20261122.dev.1" {
		t.Errorf("symlink target %q is not the bare relative id", target)
	}
	if err := d.SetLatest("../etc"); err == nil {
		t.Error("SetLatest accepted a bad id")
	}
	if err := d.ClearLatest(); err != nil {
		t.Fatal(err)
	}
	if err := d.ClearLatest(); err != nil {
		t.Errorf("second ClearLatest: %v", err)
	}
	if got, _ := d.Latest(); got != "" {
		t.Errorf("Latest after clear = %q", got)
	}
	entries, _ := os.ReadDir(d.Root)
	for _, e := range entries {
		t.Errorf("left behind: %s", e.Name())
	}
}
