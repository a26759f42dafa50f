package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/platform"
)

func testSpec() ImageSpec {
	return ImageSpec{Commit: strings.Repeat("c", 64), Ref: "os/x86_64", OSName: "testos", SizeGiB: 10, KernelArgs: []string{"console=ttyS0"}}
}

// Every cloud manifest validates, exports a file with the platform's
// extension, and shares the tree and image pipelines with qemu's manifest
// stage for stage, so a build's cached disk is reused.
func TestCloudManifestsShareQemuPipelines(t *testing.T) {
	spec := testSpec()
	qm, _, _, err := spec.Manifest(platform.Must(platform.Qemu))
	if err != nil {
		t.Fatal(err)
	}
	qids, _ := qm.IDs()
	wantExt := map[string]string{"aws": "vmdk", "openstack": "qcow2", "gcp": "tar.gz", "azure": "vhd", "vmware": "ova"}
	for name, ext := range wantExt {
		p := platform.Must(name)
		m, export, file, err := spec.Manifest(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if p.Extension != ext {
			t.Errorf("%s: extension %q, want %q", p, p.Extension, ext)
		}
		if !strings.HasSuffix(file, "."+ext) {
			t.Errorf("%s: exports %s, want a .%s file", p, file, ext)
		}
		if m.Pipeline(export) == nil {
			t.Errorf("%s: export %q is not a pipeline", p, export)
		}
		// Round trip through JSON: what is saved next to the image re-runs.
		data, _ := m.Marshal()
		if _, err := ParseManifest(data); err != nil {
			t.Errorf("%s: saved manifest does not parse: %v", p, err)
		}
		ids, err := m.IDs()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"tree", "image"} {
			if strings.Join(ids[name], ",") != strings.Join(qids[name], ",") {
				t.Errorf("%s: pipeline %s ids differ from qemu's", p, name)
			}
		}
		if p.Name == "openstack" && ids["openstack"][0] != qids["qemu"][0] {
			t.Errorf("openstack's qcow2 should be qemu's cached object")
		}
	}
	am, _, _, _ := spec.Manifest(platform.Must("aws"))
	vm, _, _, _ := spec.Manifest(platform.Must("vmware"))
	aids, _ := am.IDs()
	vids, _ := vm.IDs()
	if aids["vmdk"][0] != vids["vmdk"][0] {
		t.Error("vmware should reuse aws' vmdk pipeline")
	}
}

func TestCloudStageOptionsValidated(t *testing.T) {
	bad := []string{
		`{"type":"org.cosa.tar.gnu-sparse","inputs":{"image":"name:image"},"options":{"source":"disk.raw","member":"disk.raw","filename":"disk.tar"}}`,
		`{"type":"org.cosa.tar.gnu-sparse","inputs":{"image":"name:image"},"options":{"source":"../x","member":"disk.raw","filename":"d.tar.gz"}}`,
		`{"type":"org.cosa.tar.gnu-sparse","inputs":{"image":"name:image"},"options":{"source":"disk.raw","member":"disk.raw","filename":"d.tar.gz","level":9}}`,
		`{"type":"org.cosa.tar.gnu-sparse","options":{"source":"disk.raw","member":"disk.raw","filename":"d.tar.gz"}}`,
		`{"type":"org.cosa.ova","inputs":{"disk":"name:image"},"options":{"disk":"disk.vmdk","filename":"x.ova","name":"vm","cpus":0,"memory_mib":2048,"firmware":"efi"}}`,
		`{"type":"org.cosa.ova","inputs":{"disk":"name:image"},"options":{"disk":"disk.vmdk","filename":"x.ova","name":"vm","cpus":2,"memory_mib":100,"firmware":"efi"}}`,
		`{"type":"org.cosa.ova","inputs":{"disk":"name:image"},"options":{"disk":"disk.vmdk","filename":"x.ova","name":"a b","cpus":2,"memory_mib":2048,"firmware":"efi"}}`,
		`{"type":"org.cosa.ova","inputs":{"disk":"name:image"},"options":{"disk":"disk.vmdk","filename":"x.tar","name":"vm","cpus":2,"memory_mib":2048,"firmware":"efi"}}`,
		`{"type":"org.cosa.ova","inputs":{"disk":"name:image"},"options":{"disk":"disk.vmdk","filename":"x.ova","name":"vm","cpus":2,"memory_mib":2048,"firmware":"coreboot"}}`,
	}
	good := `{"type":"org.cosa.ova","inputs":{"disk":"name:image"},"options":{"disk":"disk.vmdk","filename":"x.ova","name":"vm","cpus":2,"memory_mib":2048,"firmware":"bios"}}`
	wrap := func(stage string) string {
		return `{"version":"2","pipelines":[{"name":"image","stages":[{"type":"org.cosa.truncate","options":{"filename":"disk.raw","size":1073741824}}]},
			{"name":"out","stages":[` + stage + `]}]}`
	}
	if _, err := ParseManifest([]byte(wrap(good))); err != nil {
		t.Fatalf("good manifest: %v", err)
	}
	for _, s := range bad {
		if _, err := ParseManifest([]byte(wrap(s))); err == nil {
			t.Errorf("accepted %s", s)
		}
	}
}

// fakeDisk is a 1 GiB sparse raw file with a little data, in an "image"
// input tree.
func fakeDisk(t *testing.T) string {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 300 << 20, (1 << 30) - 4096} {
		if _, err := f.WriteAt(bytes.Repeat([]byte("cosa"), 1024), off); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func runStage(t *testing.T, st StageImpl, inputs map[string]string) string {
	t.Helper()
	if err := st.Validate(); err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir()
	var log bytes.Buffer
	env := &Env{Tree: tree, Inputs: inputs, Scratch: t.TempDir(), Log: &log}
	if err := st.Run(context.Background(), env); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	return tree
}

func needTool(t *testing.T, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
}

func TestTarGNUSparseStage(t *testing.T) {
	needTool(t, "tar")
	img := fakeDisk(t)
	st := &TarGNUSparse{Source: "disk.raw", Member: "disk.raw", Filename: "disk.tar.gz"}
	tree := runStage(t, st, map[string]string{"image": img})
	out := filepath.Join(tree, "disk.tar.gz")
	fi, _ := os.Stat(out)
	if fi.Size() > 1<<20 {
		t.Errorf("tar.gz of a mostly-hole disk is %d bytes: holes were stored", fi.Size())
	}
	f, _ := os.Open(out)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	// GNU sparse member: type flag 'S' and GNU magic in the first header.
	if raw[156] != 'S' || string(raw[257:265]) != "ustar  \x00" {
		t.Errorf("first header: type %q magic %q, want a GNU sparse member", raw[156], raw[257:265])
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != "disk.raw" || h.Size != 1<<30 {
		t.Errorf("member %s size %d", h.Name, h.Size)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(img, "disk.raw"))
	if !bytes.Equal(data, want) {
		t.Error("unpacked disk.raw differs from the source")
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("more than one member: %v", err)
	}
	// Same input, same bytes.
	again := runStage(t, st, map[string]string{"image": img})
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(filepath.Join(again, "disk.tar.gz"))
	if !bytes.Equal(a, b) {
		t.Error("tar.gz is not reproducible")
	}
}

func qemuInfo(t *testing.T, path string, format ...string) map[string]any {
	t.Helper()
	args := []string{"info", "--output=json"}
	if len(format) > 0 {
		// qemu-img does not probe fixed VHDs (the footer is at the end).
		args = append(args, "-f", format[0])
	}
	out, err := exec.Command("qemu-img", append(args, path)...).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestVHDAndOVAStages(t *testing.T) {
	needTool(t, "qemu-img")
	img := fakeDisk(t)
	in := map[string]string{"image": img}

	vhd := runStage(t, &QemuImgConvert{Source: "disk.raw", Filename: "disk.vhd", Format: "vpc", Options: vhdOptions}, in)
	info := qemuInfo(t, filepath.Join(vhd, "disk.vhd"), "vpc")
	if info["format"] != "vpc" || info["virtual-size"].(float64) != 1<<30 {
		t.Errorf("vhd: %v", info)
	}
	fi, _ := os.Stat(filepath.Join(vhd, "disk.vhd"))
	if fi.Size() != 1<<30+512 {
		t.Errorf("fixed vhd is %d bytes, want the disk plus a 512-byte footer", fi.Size())
	}

	vmdkTree := runStage(t, &QemuImgConvert{Source: "disk.raw", Filename: "disk.vmdk", Format: "vmdk", Options: vmdkOptions}, in)
	head := make([]byte, 4)
	f, _ := os.Open(filepath.Join(vmdkTree, "disk.vmdk"))
	f.Read(head)
	f.Close()
	if string(head) != "KDMV" {
		t.Errorf("vmdk magic %q", head)
	}
	ovaTree := runStage(t, &OVA{Disk: "disk.vmdk", Filename: "disk.ova", Name: "testos", CPUs: 2, MemoryMiB: 2048, Firmware: "efi"},
		map[string]string{"disk": vmdkTree})
	testutil.CheckOVA(t, filepath.Join(ovaTree, "disk.ova"), 1<<30)
}

// TestQcow2Compression runs the qcow2 pipeline's convert stage as each
// qcow2-compression value generates it: the image holds the same data as
// the raw disk, and a compressed one is smaller and says which algorithm
// its clusters use.
func TestQcow2Compression(t *testing.T) {
	needTool(t, "qemu-img")
	img := fakeDisk(t)
	raw := filepath.Join(img, "disk.raw")
	p, _ := platform.Lookup(platform.Qemu)
	sizes := map[string]int64{}
	for _, comp := range []string{"none", "zlib", "zstd"} {
		spec := testSpec()
		spec.Qcow2Compression = comp
		m, export, file, err := spec.Manifest(p)
		if err != nil {
			t.Fatal(err)
		}
		var st Stage
		for _, pl := range m.Pipelines {
			if pl.Name == export {
				st = pl.Stages[0]
			}
		}
		// zstd: cosa's writer; the others: qemu-img.
		wantType := map[string]string{"zstd": "org.cosa.qcow2"}[comp]
		if wantType == "" {
			wantType = "org.cosa.qemu-img.convert"
		}
		impl, err := newStage(st.Type)
		if st.Type != wantType || err != nil {
			t.Fatalf("%s: the exported pipeline %s runs %q, want %s", comp, export, st.Type, wantType)
		}
		if err := decodeOptions(st.Options, impl); err != nil {
			t.Fatal(err)
		}
		switch c := impl.(type) {
		case *QemuImgConvert:
			if c.Format != "qcow2" || c.Filename != file {
				t.Fatalf("%s: not a qcow2 convert to %s: %+v", comp, file, c)
			}
			c.Source = "disk.raw"
		case *Qcow2Write:
			if c.Filename != file {
				t.Fatalf("%s: writes %s, not %s", comp, c.Filename, file)
			}
			c.Source = "disk.raw"
		}
		tree := runStage(t, impl, map[string]string{"image": img})
		out := filepath.Join(tree, file)
		if b, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, out).CombinedOutput(); err != nil {
			t.Errorf("%s: qemu-img compare: %v\n%s", comp, err, b)
		}
		info := qemuInfo(t, out)
		typ, _ := info["format-specific"].(map[string]any)["data"].(map[string]any)["compression-type"].(string)
		if want := map[string]string{"none": "zlib", "zlib": "zlib", "zstd": "zstd"}[comp]; typ != want {
			t.Errorf("%s: compression-type %q, want %q", comp, typ, want)
		}
		fi, _ := os.Stat(out)
		sizes[comp] = fi.Size()
	}
	// fakeDisk's data: 4 KiB of a repeated word in each of three 64 KiB
	// clusters.
	if sizes["zstd"] >= sizes["none"] || sizes["zlib"] >= sizes["none"] {
		t.Errorf("qcow2 sizes %v: the compressed ones are not smaller", sizes)
	}
}
