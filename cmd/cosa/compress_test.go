package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compress"
)

// cosaCompress runs the CLI as cosa() does (main.go registers every command).
func cosaCompress(t *testing.T, args ...string) result {
	t.Helper()
	return cosa(t, args...)
}

// compressWorkdir is a workdir whose latest build has a sparse raw image,
// a text qemu image and an ostree tar.
func compressWorkdir(t *testing.T) (wd string, d *build.Dir, orig *build.Meta) {
	t.Helper()
	wd = initWorkdir(t)
	b := fakeBuild{id: "42.20261122.dev.0", onDisk: true, day: 22}
	d = makeBuilds(t, wd, nil, b)
	dir := d.BuildDir(b.id, arch)
	m := fakeMeta(b)
	files := map[string][]byte{
		"ostree": []byte(strings.Repeat("ostree content ", 1000)),
		"qemu":   []byte(strings.Repeat("a qemu image, or close enough\n", 20000)),
	}
	m.Images = map[string]build.Artifact{}
	for name, data := range files {
		p := "debian-ostree-" + b.id + "-" + name + "." + arch + ".img"
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
		m.Images[name] = build.Artifact{Path: p, Sha256: hexOf(string(data)), Size: int64(len(data))}
	}
	raw := "debian-ostree-" + b.id + "-metal." + arch + ".raw"
	f, err := os.Create(filepath.Join(dir, raw))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(strings.Repeat("some data in a sparse image ", 4000))
	if _, err := f.WriteAt(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	full := make([]byte, 4<<20)
	copy(full[1<<20:], data)
	m.Images["metal"] = build.Artifact{Path: raw, Sha256: hexOf(string(full)), Size: int64(len(full))}
	if err := d.WriteMeta(b.id, arch, m); err != nil {
		t.Fatal(err)
	}
	return wd, d, m
}

func readLatestMeta(t *testing.T, d *build.Dir) *build.Meta {
	t.Helper()
	id, err := d.Latest()
	if err != nil {
		t.Fatal(err)
	}
	m, err := d.ReadMeta(id, arch)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCompressCLI(t *testing.T) {
	wd, d, orig := compressWorkdir(t)
	before := snapshot(t, filepath.Join(wd, "builds"))

	// image.yaml says gzip.
	r := cosaCompress(t, "compress", "-C", wd).wantOK(t)
	for _, want := range []string{"metal: compressed", "qemu: compressed", "MB/s", "ostree: skipped"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout %q lacks %q", r.stdout, want)
		}
	}
	if n := strings.Count(r.stdout, "\n"); n != 3 {
		t.Errorf("%d lines, want one per artifact:\n%s", n, r.stdout)
	}
	m := readLatestMeta(t, d)
	for _, name := range []string{"metal", "qemu"} {
		a := m.Images[name]
		if a.Path != orig.Images[name].Path+".gz" || a.UncompressedSha256 != orig.Images[name].Sha256 {
			t.Errorf("%s: %+v", name, a)
		}
	}
	if m.Images["ostree"] != orig.Images["ostree"] {
		t.Errorf("ostree changed: %+v", m.Images["ostree"])
	}

	r = cosaCompress(t, "decompress", "-C", wd, "--json").wantOK(t)
	evs := jsonEvents(t, r.stdout)
	if len(evs) != 4 {
		t.Errorf("want 3 artifact events and the result, got %q", r.stdout)
	}
	for _, ev := range evs[:len(evs)-1] {
		if ev["event"] != "artifact" || ev["artifact"] == nil || ev["time"] == nil {
			t.Errorf("event %v", ev)
		}
		if ev["action"] == compress.ActionDecompressed && ev["mb_per_s"] == nil {
			t.Errorf("no mb_per_s in %v", ev)
		}
	}
	res := resultOf(t, "decompress", r.stdout)
	m = readLatestMeta(t, d)
	for _, a := range res["artifacts"].([]any) {
		a := a.(map[string]any)
		name := a["name"].(string)
		if want := "builds/42.20261122.dev.0/" + arch + "/" + m.Images[name].Path; a["path"] != want ||
			a["sha256"] != m.Images[name].Sha256 || a["size"] != float64(m.Images[name].Size) {
			t.Errorf("result artifact %v, meta.json has %+v", a, m.Images[name])
		}
	}
	wantUnchanged(t, "compress + decompress", before, snapshot(t, filepath.Join(wd, "builds")))
}

func TestCompressCLIDefaultFromImageYAML(t *testing.T) {
	wd, d, orig := compressWorkdir(t)
	p := filepath.Join(wd, "src", "config", "image.yaml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(data), "compressor: gzip", "compressor: zstd", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	cosaCompress(t, "compress", "-C", wd, "--artifact", "qemu", "--fast").wantOK(t)
	m := readLatestMeta(t, d)
	if m.Images["qemu"].Path != orig.Images["qemu"].Path+".zst" || m.Images["metal"] != orig.Images["metal"] {
		t.Errorf("images %+v", m.Images)
	}
	// --compressor wins over image.yaml.
	cosaCompress(t, "compress", "-C", wd, "--artifact", "ostree", "--compressor", "gzip").wantOK(t)
	if got := readLatestMeta(t, d).Images["ostree"].Path; got != orig.Images["ostree"].Path+".gz" {
		t.Errorf("ostree path %s", got)
	}
}

func TestCompressCLIBadInput(t *testing.T) {
	wd, _, _ := compressWorkdir(t)
	before := snapshot(t, filepath.Join(wd, "builds"))
	cosaCompress(t, "compress", "-C", wd, "--compressor", "lz4").wantCode(t, exitBadInput).wantStderrContains(t, "lz4")
	cosaCompress(t, "compress", "-C", wd, "--artifact", "nope").wantCode(t, exitBadInput).wantStderrContains(t, "nope", "qemu")
	cosaCompress(t, "decompress", "-C", wd, "--artifact", "nope").wantCode(t, exitBadInput)
	cosaCompress(t, "compress", "-C", wd, "extra").wantCode(t, exitBadInput)
	cosaCompress(t, "compress", "-C", wd, "--no-such-flag").wantCode(t, exitBadInput)
	cosaCompress(t, "compress", "-C", wd, "--build", "41.20261122.dev.9").wantCode(t, exitFailure)
	wantUnchanged(t, "bad input", before, snapshot(t, filepath.Join(wd, "builds")))
}

func TestDecompressCLICorrupt(t *testing.T) {
	wd, d, _ := compressWorkdir(t)
	cosaCompress(t, "compress", "-C", wd, "--compressor", "zstd").wantOK(t)
	m := readLatestMeta(t, d)
	id, _ := d.Latest()
	p := filepath.Join(d.BuildDir(id, arch), m.Images["qemu"].Path)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, filepath.Join(wd, "builds"))
	cosaCompress(t, "decompress", "-C", wd, "--artifact", "qemu").wantCode(t, exitFailure).wantStderrContains(t, m.Images["qemu"].Path)
	wantUnchanged(t, "failed decompress", before, snapshot(t, filepath.Join(wd, "builds")))
}
