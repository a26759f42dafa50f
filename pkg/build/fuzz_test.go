package build

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// wantFileError asserts err is one line and names path, as the CLI prints
// it after "error: ".
func wantFileError(t *testing.T, err error, path string) {
	t.Helper()
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") {
		t.Fatalf("error is not one line: %q", msg)
	}
	if !strings.Contains(msg, path) {
		t.Fatalf("error does not name %s: %q", path, msg)
	}
}

// fuzzDir is a builds/ directory for one fuzzing process; inputs reuse it
// (a fresh directory per input would make the file system the bottleneck).
func fuzzDir(f *testing.F) *Dir {
	root, err := os.MkdirTemp("", "cosa-fuzz-builds-")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(root) })
	return &Dir{Root: root}
}

// FuzzReadIndex feeds arbitrary bytes to ReadIndex as builds.json. A bad
// file is a one-line error naming it, never a panic; an index that reads
// is valid (WriteIndex would accept it) and survives a write and re-read
// unchanged.
func FuzzReadIndex(f *testing.F) {
	idx := NewIndex()
	idx.Insert("12.20261121.dev.0", "x86_64")
	idx.Insert("12.20261122.dev.0", "x86_64")
	idx.Insert("12.20261122.dev.0", "aarch64")
	if err := idx.SetTag("stable", "12.20261121.dev.0", "first", time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)); err != nil {
		f.Fatal(err)
	}
	good, _ := json.MarshalIndent(idx, "", "  ")
	f.Add(good)
	f.Add([]byte(`{"schema-version":"1.0.0","builds":[],"timestamp":""}`))
	f.Add([]byte(`{"builds":[{"id":"../../etc","arches":["x86_64"]}]}`))
	f.Add([]byte(`{"builds":[{"id":"a","arches":["x86_64"]}],"tags":[{"name":"t","target":"b"}]}`))
	f.Add([]byte(`{"builds":{"a":1}}`))
	f.Add([]byte(`{"builds":[`))
	f.Add([]byte(`null`))

	d := fuzzDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(d.Root, IndexFile)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		idx, err := d.ReadIndex()
		if err != nil {
			wantFileError(t, err, path)
			return
		}
		if idx.Builds == nil || idx.SchemaVersion == "" {
			t.Fatalf("ReadIndex left defaults unset: %+v", idx)
		}
		if err := idx.Validate(); err != nil {
			t.Fatalf("ReadIndex accepted an index WriteIndex refuses: %v", err)
		}
		if err := d.WriteIndex(idx); err != nil {
			t.Fatalf("WriteIndex of a read index: %v", err)
		}
		back, err := d.ReadIndex()
		if err != nil {
			t.Fatalf("re-reading the written index: %v", err)
		}
		back.Timestamp = idx.Timestamp
		if !reflect.DeepEqual(normIndex(idx), normIndex(back)) {
			t.Fatalf("round trip changed the index:\n%+v\n%+v", idx, back)
		}
	})
}

// normIndex makes nil and empty slices compare equal.
func normIndex(x *BuildsIndex) BuildsIndex {
	c := *x
	c.Builds = append([]BuildEntry{}, x.Builds...)
	for i := range c.Builds {
		c.Builds[i].Arches = append([]string{}, c.Builds[i].Arches...)
	}
	c.Tags = append([]Tag{}, x.Tags...)
	return c
}

// FuzzReadMeta feeds arbitrary bytes to ReadMeta as a build's meta.json.
// A bad file is a one-line error naming it, never a panic. A file that
// reads dumps to a fixed point (dump, read, dump gives the same bytes),
// keeps every key it does not model, and stays schema-valid if it was.
func FuzzReadMeta(f *testing.F) {
	m := realisticMeta("12.20261122.dev.1")
	m.Extra = map[string]json.RawMessage{"coreos-assembler.code-source": json.RawMessage(`"container"`)}
	good, err := m.Dump()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"buildid":"1","name":"x","ostree-commit":"","ostree-timestamp":"","ostree-version":"1"}`))
	f.Add([]byte(`{"buildid":"1","images":{"qemu":{"path":"a","sha256":"b","size":-1}},"x":{"b":1,"a":[1.50,1e3]}}`))
	f.Add([]byte(`{"ostree-n-cache-hits":1.5}`))
	f.Add([]byte(`{"pkgdiff":[["kernel",9,{}]]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"buildid":`))

	const id, arch = "12.20261122.dev.1", "x86_64"
	d := fuzzDir(f)
	path := d.MetaPath(id, arch)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := d.ReadMeta(id, arch)
		if err != nil {
			wantFileError(t, err, path)
			return
		}
		dump, err := m.Dump()
		if err != nil {
			t.Fatalf("Dump of a meta.json that read: %v", err)
		}
		var m2 Meta
		if err := json.Unmarshal(dump, &m2); err != nil {
			t.Fatalf("Dump output does not read back: %v\n%s", err, dump)
		}
		dump2, err := m2.Dump()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dump, dump2) {
			t.Fatalf("Dump is not a fixed point:\n%s\n%s", dump, dump2)
		}
		// Keys cosa does not model are kept with their values.
		var out map[string]any
		if err := json.Unmarshal(dump, &out); err != nil {
			t.Fatal(err)
		}
		for k, raw := range m.Extra {
			var want any
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatalf("Extra[%q] is not JSON: %v", k, err)
			}
			if !reflect.DeepEqual(out[k], want) {
				t.Fatalf("key %q: dumped %v, read %v", k, out[k], want)
			}
		}
		if ValidateMeta(data) == nil {
			if err := ValidateMeta(dump); err != nil {
				t.Fatalf("a valid meta.json dumps to an invalid one: %v\nin:  %s\nout: %s", err, data, dump)
			}
		}
	})
}
