package remote

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/build"
)

// A fetched meta.json is validated against the schema before anything
// uses it, and a refused one leaves nothing behind.
func TestFetchValidatesMeta(t *testing.T) {
	const id = "42.20261122.dev.0"
	for _, tc := range []struct{ name, from, to, want string }{
		{"short commit", `"ostree-commit": "` + commitOf(id) + `"`, `"ostree-commit": "abc"`, `meta.json invalid at "/ostree-commit"`},
		{"escaping path", `"path": "fcos-` + id + `-qemu.qcow2"`, `"path": "../../../../../tmp/evil"`, `meta.json invalid at "/images/qemu/path"`},
		{"other arch", `"coreos-assembler.basearch": "x86_64"`, `"coreos-assembler.basearch": "s390x"`, `coreos-assembler.basearch "s390x" does not match arch x86_64`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newDir(t)
			makeBuild(t, src, id, 1000)
			p := src.MetaPath(id, testArch)
			data, _ := os.ReadFile(p)
			if !strings.Contains(string(data), tc.from) {
				t.Fatalf("%q not in %s", tc.from, data)
			}
			os.WriteFile(p, []byte(strings.Replace(string(data), tc.from, tc.to, 1)), 0o644)

			d := newDir(t)
			_, err := fetch(t, &FileSource{Root: src.Root}, d, id, "all")
			if err == nil || !strings.HasPrefix(err.Error(), p+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("fetch = %v, want an error naming %s and %s", err, p, tc.want)
			}
			if _, err := os.Stat(filepath.Join(d.Root, id)); !os.IsNotExist(err) {
				t.Errorf("builds/%s exists after the refused fetch: %v", id, err)
			}
			if _, err := os.Stat(filepath.Join(d.Root, build.IndexFile)); !os.IsNotExist(err) {
				t.Errorf("builds.json written after the refused fetch: %v", err)
			}
		})
	}
}

// commitOf is the ostree-commit makeBuild records for id.
func commitOf(id string) string {
	s := sha256.Sum256([]byte(id))
	return hex.EncodeToString(s[:])
}
