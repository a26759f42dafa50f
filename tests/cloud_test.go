package tests

import (
	"archive/tar"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/cosa-build/cosa/pkg/images"
)

// TestCloudImages makes one real build (with its qemu image) and adds
// every cloud image type from the cached tree and disk: aws (through the
// buildextend-ec2 alias), openstack, gcp, azure and vmware. Each file is
// checked with the tool a cloud's importer would use, and meta.json must
// list each with the file's sha256 and size.
func TestCloudImages(t *testing.T) {
	needTools(t, "mmdebstrap", "ostree", "qemu-img", "tar", "mkfs.ext4", "mkfs.vfat", "mcopy", "grub-mkimage", "fdisk")
	w := t.TempDir()
	// Registered after TempDir, so it runs first: ostree marks deployment
	// dirs in cached tree objects immutable, which os.RemoveAll cannot undo.
	t.Cleanup(func() { images.RemoveAll(filepath.Join(w, "cache", "objects")) })
	mustCosa(t, w, "init")
	t0 := time.Now()
	mustCosa(t, w, "build", "--fetch")
	t.Logf("e2e: build --fetch %s", time.Since(t0).Round(time.Second))
	id := latest(t, w)
	arch := filepath.Join(w, "builds", id, "x86_64")

	// aws before vmware: the OVA reuses aws' vmdk pipeline.
	for _, p := range []string{"ec2", "openstack", "gcp", "azure", "vmware"} {
		t0 := time.Now()
		r := mustCosa(t, w, "buildextend-"+p)
		t.Logf("e2e: buildextend-%s %s", p, time.Since(t0).Round(100*time.Millisecond))
		for _, cached := range []string{"tree: all 7 stages cached", "image: all 7 stages cached"} {
			if !strings.Contains(r.Stderr, cached) {
				t.Errorf("buildextend-%s did not reuse the build's pipelines (%q missing):\n%s", p, cached, r.Stderr)
			}
		}
		if p == "openstack" && !strings.Contains(r.Stderr, "openstack: all 1 stages cached") {
			t.Errorf("openstack's qcow2 should be qemu's cached object:\n%s", r.Stderr)
		}
		if p == "vmware" && !strings.Contains(r.Stderr, "vmdk: all 1 stages cached") {
			t.Errorf("vmware should reuse aws' vmdk:\n%s", r.Stderr)
		}
	}

	m, _ := readMeta(t, w, id)
	exts := map[string]string{"aws": "vmdk", "openstack": "qcow2", "gcp": "tar.gz", "azure": "vhd", "vmware": "ova"}
	for p, ext := range exts {
		a, ok := m.Images[p]
		want := "debian-ostree-" + id + "-" + p + ".x86_64." + ext
		if !ok || a.Path != want {
			t.Errorf("images.%s = %+v, want path %s", p, a, want)
			continue
		}
		path := filepath.Join(arch, a.Path)
		fi, err := os.Stat(path)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Size() != a.Size {
			t.Errorf("%s: size %d, meta says %d", a.Path, fi.Size(), a.Size)
		}
		if sum := sha256File(t, path); sum != a.Sha256 {
			t.Errorf("%s: sha256 %s, meta says %s", a.Path, sum, a.Sha256)
		}
		if _, err := os.Stat(strings.TrimSuffix(path, "."+ext) + ".manifest.json"); err != nil {
			t.Errorf("%s: no manifest next to it: %v", a.Path, err)
		}
		t.Logf("e2e: %s: %s, %d bytes (%.1f MiB), %.1f MiB on disk", p, a.Path, a.Size, float64(a.Size)/(1<<20), float64(diskUse(fi))/(1<<20))
	}
	file := func(p string) string { return filepath.Join(arch, m.Images[p].Path) }

	// aws: streamOptimized vmdk.
	info := qemuImgInfo(t, file("aws"), "")
	if info["format"] != "vmdk" || formatData(info)["create-type"] != "streamOptimized" {
		t.Errorf("aws: qemu-img info: %v", info)
	}
	out, _ := exec.Command("qemu-img", "info", file("aws")).CombinedOutput()
	if !strings.Contains(string(out), "create type: streamOptimized") {
		t.Errorf("aws: qemu-img info:\n%s", out)
	}
	// openstack: qcow2.
	if info := qemuImgInfo(t, file("openstack"), ""); info["format"] != "qcow2" {
		t.Errorf("openstack: qemu-img info: %v", info)
	}
	// azure: fixed VHD, virtual size a whole number of MiB, file = disk + footer.
	info = qemuImgInfo(t, file("azure"), "vpc")
	vsize := int64(info["virtual-size"].(float64))
	if info["format"] != "vpc" || vsize%(1<<20) != 0 || vsize != int64(m.Images["azure"].Size)-512 {
		t.Errorf("azure: virtual size %d, file %d: %v", vsize, m.Images["azure"].Size, info)
	}
	if f, err := os.Open(file("azure")); err == nil {
		footer := make([]byte, 512)
		f.ReadAt(footer, m.Images["azure"].Size-512)
		f.Close()
		// Footer: cookie "conectix", disk type (offset 60, big endian) 2 = fixed.
		if string(footer[:8]) != "conectix" || footer[63] != 2 {
			t.Errorf("azure: footer cookie %q type %d, want a fixed VHD", footer[:8], footer[63])
		}
	}
	// gcp: a GNU sparse member named disk.raw in a tar.gz.
	checkGCP(t, file("gcp"), vsize)
	// vmware: OVA = OVF descriptor + streamOptimized vmdk.
	checkOVAFile(t, file("vmware"), vsize)
}

func diskUse(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

func qemuImgInfo(t *testing.T, path, format string) map[string]any {
	t.Helper()
	args := []string{"info", "--output=json"}
	if format != "" {
		args = append(args, "-f", format) // qemu-img does not probe fixed VHDs
	}
	out, err := exec.Command("qemu-img", append(args, path)...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v\n%s", path, err, out)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func formatData(info map[string]any) map[string]any {
	fs, _ := info["format-specific"].(map[string]any)
	d, _ := fs["data"].(map[string]any)
	return d
}

func checkGCP(t *testing.T, path string, diskSize int64) {
	t.Helper()
	out, err := exec.Command("tar", "-tvzf", path).CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), " disk.raw") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("gcp: tar -tvzf: %v\n%s", err, out)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 512)
	if _, err := io.ReadFull(zr, hdr); err != nil {
		t.Fatal(err)
	}
	if hdr[156] != 'S' || string(hdr[257:265]) != "ustar  \x00" || !strings.HasPrefix(string(hdr[:100]), "disk.raw\x00") {
		t.Errorf("gcp: first header type %q magic %q name %q: want a GNU sparse disk.raw", hdr[156], hdr[257:265], strings.TrimRight(string(hdr[:100]), "\x00"))
	}
	// Go's reader expands the sparse map: the member is the whole disk.
	f.Seek(0, io.SeekStart)
	zr, _ = gzip.NewReader(f)
	h, err := tar.NewReader(zr).Next()
	if err != nil || h.Name != "disk.raw" || h.Size != diskSize {
		t.Errorf("gcp: member %+v (%v), want disk.raw of %d bytes", h, err, diskSize)
	}
}

func checkOVAFile(t *testing.T, path string, capacity int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	var ovf []byte
	var vmdkHead []byte
	vmdkName := ""
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		switch {
		case strings.HasSuffix(h.Name, ".ovf"):
			ovf, _ = io.ReadAll(tr)
		case strings.HasSuffix(h.Name, ".vmdk"):
			vmdkName = h.Name
			vmdkHead = make([]byte, 4)
			io.ReadFull(tr, vmdkHead)
		}
	}
	if len(names) == 0 || !strings.HasSuffix(names[0], ".ovf") || vmdkName == "" {
		t.Fatalf("vmware: ova members %v: want the .ovf first and a .vmdk", names)
	}
	if string(vmdkHead) != "KDMV" {
		t.Errorf("vmware: %s starts with %q, not a sparse vmdk", vmdkName, vmdkHead)
	}
	var env struct {
		XMLName xml.Name `xml:"http://schemas.dmtf.org/ovf/envelope/1 Envelope"`
		Files   []struct {
			Href string `xml:"http://schemas.dmtf.org/ovf/envelope/1 href,attr"`
		} `xml:"References>File"`
		Disks []struct {
			Capacity int64  `xml:"http://schemas.dmtf.org/ovf/envelope/1 capacity,attr"`
			Format   string `xml:"http://schemas.dmtf.org/ovf/envelope/1 format,attr"`
		} `xml:"DiskSection>Disk"`
		System struct {
			Name string `xml:"Name"`
		} `xml:"VirtualSystem"`
	}
	if err := xml.Unmarshal(ovf, &env); err != nil {
		t.Fatalf("vmware: ovf is not XML: %v\n%s", err, ovf)
	}
	if len(env.Files) != 1 || env.Files[0].Href != vmdkName {
		t.Errorf("vmware: ovf references %+v, ova holds %s", env.Files, vmdkName)
	}
	if len(env.Disks) != 1 || env.Disks[0].Capacity != capacity || !strings.HasSuffix(env.Disks[0].Format, "#streamOptimized") {
		t.Errorf("vmware: ovf disks %+v, want capacity %d streamOptimized", env.Disks, capacity)
	}
	if env.System.Name == "" {
		t.Error("vmware: ovf VirtualSystem has no Name")
	}
}
