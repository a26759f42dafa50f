package images

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/platform"
)

// FuzzParseManifest feeds arbitrary bytes to LoadManifest, the loader of
// `cosa pipeline run`. A bad manifest is a one-line error naming the file,
// never a panic. A manifest that loads has an id for every stage, every
// pipeline can be exported, and it survives Marshal and re-parse with the
// same stage ids (ids are what the stage cache trusts).
func FuzzParseManifest(f *testing.F) {
	spec := ImageSpec{Commit: strings.Repeat("a", 64), Ref: "x/y", OSName: "os", SizeGiB: 10, KernelArgs: []string{"console=ttyS0"}}
	for _, p := range []platform.Platform{platform.Must(platform.Qemu), platform.Must(platform.AWS)} {
		m, _, _, err := spec.Manifest(p)
		if err != nil {
			f.Fatal(err)
		}
		data, err := m.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"version":"2","pipelines":[{"name":"a","stages":[{"type":"org.cosa.truncate","options":{"filename":"disk.raw","size":2147483648}}]}]}`))
	f.Add([]byte(`{"version":"2","pipelines":[{"name":"a","stages":[{"type":"org.cosa.truncate","options":{"filename":"../x","size":1}}]}]}`))
	f.Add([]byte(`{"version":"2","pipelines":[{"name":"b","stages":[{"type":"org.cosa.qemu-img","inputs":{"image":"name:b"}}]}]}`))
	f.Add([]byte(`{"version":"2","pipelines":[]} {}`))
	f.Add([]byte(`{"version":"2","pipelines":[{"name":"a","stages":[{"type":"x","options":null,"checkpoint":true}]}],"extra":1}`))

	// One file per fuzzing process, rewritten for each input.
	dir, err := os.MkdirTemp("", "cosa-fuzz-manifest-")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "manifest.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := LoadManifest(path)
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, path+":") {
				t.Fatalf("error is not one line naming the file: %q", msg)
			}
			return
		}
		ids, err := m.IDs()
		if err != nil {
			t.Fatalf("IDs of a valid manifest: %v", err)
		}
		for _, p := range m.Pipelines {
			if len(ids[p.Name]) != len(p.Stages) {
				t.Fatalf("pipeline %s: %d ids for %d stages", p.Name, len(ids[p.Name]), len(p.Stages))
			}
			for _, id := range ids[p.Name] {
				if b, err := hex.DecodeString(id); err != nil || len(b) != 32 {
					t.Fatalf("stage id %q is not a sha256", id)
				}
			}
			if _, err := m.needed([]string{p.Name}); err != nil {
				t.Fatalf("cannot export pipeline %s: %v", p.Name, err)
			}
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		m2, err := ParseManifest(out)
		if err != nil {
			t.Fatalf("marshalled manifest does not parse: %v\n%s", err, out)
		}
		ids2, err := m2.IDs()
		if err != nil || !reflect.DeepEqual(ids, ids2) {
			t.Fatalf("round trip changed the stage ids (%v):\n%v\n%v", err, ids, ids2)
		}
		out2, _ := m2.Marshal()
		if !bytes.Equal(out, out2) {
			t.Fatalf("Marshal is not a fixed point:\n%s\n%s", out, out2)
		}
	})
}
