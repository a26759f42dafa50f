package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/platform"
)

// fuzzFixedFiles are written into every fuzzed config dir next to the
// fuzzed YAML, so that postprocess, include and overlay checks have real
// targets, including a symlink out of the config dir.
var fuzzFixedFiles = map[string]string{
	"postprocess/10-a.sh":      "#!/bin/sh\n",
	"overlay.d/10-x/etc/motd":  "hi\n",
	"escape.yaml":              "symlink:../outside.yaml",
	"sub/frag.yaml":            "packages: [vim]\n",
	"overlay.d/.gitkeep":       "",
	"postprocess/dir-not-file": "dir:",
}

// FuzzLoad feeds arbitrary manifest.yaml, included fragment and image.yaml
// bytes to Load. A bad config must come back as one *Error naming a file in
// the config dir on one line, never a panic; a config that loads must
// satisfy the documented limits and survive a round trip: its normalized
// form, written back as manifest.yaml and image.yaml, loads to the same
// normalized form.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(minimalManifest), []byte("packages: [vim]\n"), []byte("size: 10\n"))
	f.Add([]byte(minimalManifest+"include: inc.yaml\npostprocess: [postprocess/10-a.sh]\n"),
		[]byte("kernel-args: [quiet]\nunits:\n  enable: [a.service]\n"),
		[]byte("platforms:\n  metal:\n    size: 20\n    extra-kargs: []\naws:\n  volume-type: gp2\n"))
	f.Add([]byte(minimalManifest+"include: [inc.yaml, sub/frag.yaml]\n"), []byte("include: manifest.yaml\n"), []byte(nil))
	f.Add([]byte(minimalManifest+"include: escape.yaml\n"), []byte(""), []byte("size: 100000\n"))
	f.Add([]byte("name: &a x\nref: *a\n"), []byte("a: [*b]\n"), []byte("size: 1e400\n"))
	f.Add([]byte(minimalManifest+"postprocess: [../x, /etc/passwd, postprocess/dir-not-file]\n"), []byte("- a\n- b\n"), []byte("--- \n...\n---\n"))
	f.Add([]byte("<<: {name: x}\n"), []byte("\xff\xfe"), []byte("size: 99999999999999999999999\n"))

	// One config dir per fuzzing process: the fixed files are written
	// once and only the fuzzed files are rewritten for each input, which
	// keeps the file system out of the way of the fuzzer.
	parent, err := os.MkdirTemp("", "cosa-fuzz-config-")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.WriteFile(filepath.Join(parent, "outside.yaml"), []byte("packages: [evil]\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	dir := filepath.Join(parent, "config")
	for name, content := range fuzzFixedFiles {
		p := filepath.Join(dir, filepath.FromSlash(name))
		err := os.MkdirAll(filepath.Dir(p), 0o755)
		switch target, isLink := strings.CutPrefix(content, "symlink:"); {
		case err != nil:
		case content == "dir:":
			err = os.MkdirAll(p, 0o755)
		case isLink:
			err = os.Symlink(target, p)
		default:
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			f.Fatal(err)
		}
	}
	put := func(t *testing.T, name string, data []byte) {
		t.Helper()
		p := filepath.Join(dir, name)
		if data == nil {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			return
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	f.Fuzz(func(t *testing.T, manifest, inc, image []byte) {
		put(t, ManifestFile, manifest)
		put(t, "inc.yaml", inc)
		put(t, ImageFile, image)
		c, err := Load(dir)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load error is not a *config.Error: %T %v", err, err)
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
			if !strings.HasPrefix(ce.File, dir+string(filepath.Separator)) && ce.File != dir {
				t.Fatalf("error names file %q outside the config dir %s: %s", ce.File, dir, msg)
			}
			if ce.Line < 0 {
				t.Fatalf("negative line in %q", msg)
			}
			return
		}
		checkLoaded(t, c)

		norm, err := c.Normalized()
		if err != nil {
			t.Fatalf("Normalized: %v", err)
		}
		// Loading is deterministic.
		again, err := Load(dir)
		if err != nil {
			t.Fatalf("second Load failed: %v", err)
		}
		if n2, _ := again.Normalized(); string(n2) != string(norm) {
			t.Fatalf("two loads differ:\n%s\n%s", norm, n2)
		}
		// Round trip: the normalized JSON is YAML, so written back as the
		// two files (no includes) it must load to the same config. The
		// postprocess scripts it names are still in place.
		var doc struct {
			Manifest json.RawMessage `json:"manifest"`
			Image    json.RawMessage `json:"image"`
		}
		if err := json.Unmarshal(norm, &doc); err != nil {
			t.Fatalf("Normalized is not JSON: %v\n%s", err, norm)
		}
		put(t, ManifestFile, doc.Manifest)
		put(t, ImageFile, doc.Image)
		c2, err := Load(dir)
		if err != nil {
			t.Fatalf("normalized config does not load: %v\nmanifest: %s\nimage: %s", err, doc.Manifest, doc.Image)
		}
		if n2, _ := c2.Normalized(); string(n2) != string(norm) {
			t.Fatalf("round trip changed the config:\nbefore %s\nafter  %s", norm, n2)
		}
		if want := []string{ImageFile, ManifestFile}; !slices.Equal(c2.Files, want) {
			t.Fatalf("round-trip Files = %v, want %v", c2.Files, want)
		}
	})
}

// checkLoaded asserts the documented guarantees of a loaded Config.
func checkLoaded(t *testing.T, c *Config) {
	t.Helper()
	m, im := c.Manifest, c.Image
	switch {
	case !nameRE.MatchString(m.Name):
		t.Fatalf("loaded invalid name %q", m.Name)
	case checkRef(m.Ref) != "":
		t.Fatalf("loaded invalid ref %q", m.Ref)
	case !versionPrefixRE.MatchString(m.VersionPrefix) || !streamRE.MatchString(m.Stream):
		t.Fatalf("loaded invalid version-prefix %q or stream %q", m.VersionPrefix, m.Stream)
	case len(m.Packages) == 0 || len(m.Distro.Components) == 0:
		t.Fatalf("loaded without packages or components: %+v", m)
	case m.Include != nil:
		t.Fatalf("Include not consumed: %v", m.Include)
	case im.Size < minImageSize || im.Size > maxImageSize:
		t.Fatalf("loaded image size %d", im.Size)
	case im.CacheSize < minCacheSize || im.CacheSize > maxCacheSize:
		t.Fatalf("loaded cache size %d", im.CacheSize)
	case !slices.Contains(c.Files, ManifestFile) || !slices.IsSorted(c.Files):
		t.Fatalf("Files = %v", c.Files)
	}
	for _, p := range m.Postprocess {
		if filepath.IsAbs(p) || hasDotDot(p) {
			t.Fatalf("loaded unsafe postprocess path %q", p)
		}
	}
	for _, p := range m.RemoveFiles {
		if checkRootPath(p) != "" {
			t.Fatalf("loaded unsafe remove-files path %q", p)
		}
	}
	for name, o := range im.Platforms {
		if !contains(platform.Names(), name) || (o.Size != 0 && (o.Size < minImageSize || o.Size > maxImageSize)) {
			t.Fatalf("loaded bad platform %q %+v", name, o)
		}
	}
	for _, f := range c.Files {
		if strings.HasPrefix(f, "../") || filepath.IsAbs(f) {
			t.Fatalf("read a file outside the config dir: %q", f)
		}
	}
}
