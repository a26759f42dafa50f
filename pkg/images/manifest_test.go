package images

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/platform"
)

func TestStageIDIgnoresKeyOrderAndLayout(t *testing.T) {
	a := `{"version":"2","pipelines":[{"name":"image","stages":[
		{"type":"org.cosa.truncate","options":{"filename":"disk.raw","size":2147483648}},
		{"type":"org.cosa.gpt","options":{"filename":"disk.raw","sector_size":512,"partitions":[{"name":"root","type":"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709","size_mib":0}]}}]}]}`
	b := `{"pipelines":[{"stages":[
		{"options":{"size":2147483648,   "filename":"disk.raw"},"type":"org.cosa.truncate"},
		{"options":{"partitions":[{"size_mib":0,"type":"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709","name":"root"}],"sector_size":512,"filename":"disk.raw"},"type":"org.cosa.gpt"}],
		"name":"image"}],"version":"2"}`
	ma, err := ParseManifest([]byte(a))
	if err != nil {
		t.Fatal(err)
	}
	mb, err := ParseManifest([]byte(b))
	if err != nil {
		t.Fatal(err)
	}
	ia, _ := ma.IDs()
	ib, _ := mb.IDs()
	if strings.Join(ia["image"], ",") != strings.Join(ib["image"], ",") {
		t.Fatalf("same stages in another key order got other ids:\n%v\n%v", ia, ib)
	}
	// A changed option changes that stage's id and every later one.
	c := strings.Replace(a, "2147483648", "3221225472", 1)
	mc, err := ParseManifest([]byte(c))
	if err != nil {
		t.Fatal(err)
	}
	ic, _ := mc.IDs()
	if ic["image"][0] == ia["image"][0] || ic["image"][1] == ia["image"][1] {
		t.Fatalf("changing size kept ids: %v vs %v", ic, ia)
	}
}

func TestInputChangesDownstreamID(t *testing.T) {
	spec := ImageSpec{Commit: strings.Repeat("a", 64), Ref: "x/y", OSName: "os", SizeGiB: 10}
	m1, _, _, err := spec.Manifest(platform.Must(platform.Qemu))
	if err != nil {
		t.Fatal(err)
	}
	spec.Commit = strings.Repeat("b", 64)
	m2, _, _, err := spec.Manifest(platform.Must(platform.Qemu))
	if err != nil {
		t.Fatal(err)
	}
	i1, _ := m1.IDs()
	i2, _ := m2.IDs()
	if i1["tree"][0] != i2["tree"][0] || i1["image"][0] != i2["image"][0] {
		t.Error("stages before pull-local should not depend on the commit")
	}
	if i1["tree"][3] == i2["tree"][3] || i1["image"][4] == i2["image"][4] || i1["qemu"][0] == i2["qemu"][0] {
		t.Error("a new commit must change pull-local and everything that takes the tree as input")
	}
	// metal and qemu share the tree and image pipelines.
	m3, export, file, err := ImageSpec{Commit: strings.Repeat("a", 64), Ref: "x/y", OSName: "os", SizeGiB: 10}.Manifest(platform.Must(platform.Metal))
	if err != nil || export != "image" || file != "disk.raw" {
		t.Fatal(export, file, err)
	}
	i3, _ := m3.IDs()
	if strings.Join(i3["image"], ",") != strings.Join(i1["image"], ",") {
		t.Error("metal and qemu should share the image pipeline")
	}
}

func TestValidationErrors(t *testing.T) {
	cases := []struct{ json, want string }{
		{`{"version":"1","pipelines":[]}`, `manifest: version: want "2", got "1"`},
		{`{"version":"2","pipelines":[]}`, `manifest: pipelines: empty`},
		{`{"version":"2","pipelines":[{"name":"a","stages":[{"type":"org.cosa.nope"}]}]}`, `manifest: pipeline a stage 0 (org.cosa.nope): unknown stage type "org.cosa.nope"`},
		{`{"version":"2","pipelines":[{"name":"a","stages":[{"type":"org.cosa.truncate","options":{"filename":"d","size":5}}]}]}`, `manifest: pipeline a stage 0 (org.cosa.truncate): options: size: 5 must be a whole number of MiB between 1 GiB and 4 TiB`},
		{`{"version":"2","pipelines":[{"name":"a","stages":[{"type":"org.cosa.truncate","options":{"filename":"../x","size":1073741824}}]}]}`, `manifest: pipeline a stage 0 (org.cosa.truncate): options: filename: "../x" must be a plain file name`},
		{`{"version":"2","pipelines":[{"name":"a","stages":[{"type":"org.cosa.truncate","options":{"filename":"d","size":1073741824,"extra":1}}]}]}`, `manifest: pipeline a stage 0 (org.cosa.truncate): options: json: unknown field "extra"`},
		{`{"version":"2","pipelines":[{"name":"a","stages":[{"type":"org.cosa.gpt","options":{"filename":"d","sector_size":1024,"partitions":[]}}]}]}`, `manifest: pipeline a stage 0 (org.cosa.gpt): options: sector_size: 1024 must be 512 or 4096`},
		{`{"version":"2","pipelines":[{"name":"a","stages":[{"type":"org.cosa.ostree.pull-local","options":{"commit":"abc","ref":"x"}}]}]}`, `manifest: pipeline a stage 0 (org.cosa.ostree.pull-local): options: commit: "abc" is not a 64-hex commit checksum`},
		{`{"version":"2","pipelines":[{"name":"a","stages":[{"type":"org.cosa.qemu-img.convert","options":{"source":"d","filename":"e","format":"qcow2"}}]}]}`, `manifest: pipeline a stage 0 (org.cosa.qemu-img.convert): missing input "image"`},
		{`{"version":"2","pipelines":[{"name":"a","stages":[{"type":"org.cosa.qemu-img.convert","inputs":{"image":"name:b"},"options":{"source":"d","filename":"e","format":"qcow2"}}]}]}`, `manifest: pipeline a stage 0 (org.cosa.qemu-img.convert): input image: "name:b" must be name:<an earlier pipeline>`},
		{`{"version":"2","pipelines":[{"name":"a","stages":[{"type":"org.cosa.ostree.init-fs"}]},{"name":"a","stages":[{"type":"org.cosa.ostree.init-fs"}]}]}`, `manifest: pipelines[1].name: duplicate pipeline "a"`},
		{`{"version":"2","pipelines":[{"name":"a","stages":[{"type":"org.cosa.ostree.deploy","options":{"osname":"os","ref":"x","kernel_args":["a b"]}}]}]}`, `manifest: pipeline a stage 0 (org.cosa.ostree.deploy): options: kernel_args[0]: "a b" must be one non-empty argument`},
		{`{"version":"2","pipelines":[],"x":1}`, `manifest: json: unknown field "x"`},
	}
	for _, c := range cases {
		_, err := ParseManifest([]byte(c.json))
		if err == nil || err.Error() != c.want {
			t.Errorf("ParseManifest(%s)\n got: %v\nwant: %s", c.json, err, c.want)
		}
	}
}

func TestGrubConfigFromBLS(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ostree-1-os.conf"), []byte("title Old\nversion 1\nlinux /ostree/os-a/vmlinuz\ninitrd /ostree/os-a/initramfs.img\noptions root=LABEL=root ostree=/ostree/boot.1/os/a/0\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "ostree-2-os.conf"), []byte("title New\nversion 2\nlinux /ostree/os-b/vmlinuz\ninitrd /ostree/os-b/initramfs.img\noptions root=LABEL=root ostree=/ostree/boot.1/os/b/0\n"), 0o644)
	paths, _ := filepath.Glob(filepath.Join(dir, "*.conf"))
	cfg, err := GrubConfigFromBLS(paths, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	iNew, iOld := strings.Index(cfg, "menuentry 'New'"), strings.Index(cfg, "menuentry 'Old'")
	if iNew < 0 || iOld < 0 || iNew > iOld {
		t.Errorf("newest entry must come first:\n%s", cfg)
	}
	if !strings.Contains(cfg, "  linux /ostree/os-b/vmlinuz root=LABEL=root ostree=/ostree/boot.1/os/b/0\n") || !strings.Contains(cfg, "serial --unit=0") {
		t.Errorf("grub.cfg:\n%s", cfg)
	}
}

// TestEngineCaching runs real disk stages (truncate, fdisk, mkfs.vfat):
// the second run is a full cache hit, and a change late in the pipeline
// resumes from the newest checkpoint instead of starting over.
func TestEngineCaching(t *testing.T) {
	for _, tool := range []string{"fdisk", "mkfs.vfat", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip(tool + " not installed")
		}
	}
	dir := t.TempDir()
	mk := func(label string) *Manifest {
		m := &Manifest{Version: ManifestVersion, Pipelines: []Pipeline{{Name: "disk", Stages: []Stage{
			{Type: "org.cosa.truncate", Options: opts(Truncate{Filename: "d.raw", Size: 1 << 30})},
			{Type: "org.cosa.gpt", Checkpoint: true, Options: opts(GPT{Filename: "d.raw", SectorSize: 512, Partitions: []GPTPartition{{Name: "esp", Type: GUIDESP, SizeMiB: 64}}})},
			{Type: "org.cosa.mkfs.vfat", Options: opts(MkfsVfat{Filename: "d.raw", SectorSize: 512, Partition: 1, Label: label})},
		}}}}
		return m
	}
	en := &Engine{Store: &Store{Dir: filepath.Join(dir, "objects")}, Scratch: filepath.Join(dir, "scratch")}
	ctx := context.Background()
	r1, err := en.Run(ctx, mk("ONE"), []string{"disk"})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Ran != 3 || r1.Cached != 0 {
		t.Fatalf("first run: ran %d cached %d", r1.Ran, r1.Cached)
	}
	r2, err := en.Run(ctx, mk("ONE"), []string{"disk"})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Ran != 0 || r2.Cached != 1 || r2.Exports["disk"] != r1.Exports["disk"] {
		t.Fatalf("second run: ran %d cached %d", r2.Ran, r2.Cached)
	}
	r3, err := en.Run(ctx, mk("TWO"), []string{"disk"})
	if err != nil {
		t.Fatal(err)
	}
	if r3.Ran != 1 {
		t.Fatalf("changing the last stage reran %d stages, want 1 (resume after the gpt checkpoint)", r3.Ran)
	}
	img, _ := os.ReadFile(filepath.Join(r3.Exports["disk"], "d.raw"))
	if !strings.Contains(string(img[1<<20:(1<<20)+512]), "TWO") {
		t.Error("the resumed run's filesystem lacks the new label")
	}
	// A failing stage names itself and its id.
	bad := mk("THREE")
	bad.Pipelines[0].Stages[2].Options = json.RawMessage(`{"filename":"d.raw","sector_size":512,"partition":7,"label":"X"}`)
	_, err = en.Run(ctx, bad, []string{"disk"})
	var se *StageError
	if err == nil || !asStageError(err, &se) || se.Stage != "org.cosa.mkfs.vfat" || !strings.Contains(err.Error(), "partition 7: the image has 1") {
		t.Fatalf("want a StageError for mkfs.vfat, got %v", err)
	}
}

func asStageError(err error, se **StageError) bool {
	e, ok := err.(*StageError)
	*se = e
	return ok
}
