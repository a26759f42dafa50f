package tests

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/klauspost/compress/gzip"

	"github.com/cosa-build/cosa/internal/ec2double"
	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/fileutil"
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
	t.Cleanup(func() { fileutil.RemoveAll(filepath.Join(w, "cache", "objects")) })
	mustCosa(t, w, "init")
	seedCache(t, w)
	t0 := time.Now()
	mustCosa(t, w, "build", "--fetch")
	t.Logf("e2e: build --fetch %s", time.Since(t0).Round(time.Second))
	saveSeed(t, w)
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
	testutil.CheckOVA(t, file("vmware"), vsize)

	checkAWSUpload(t, w, id, file("aws"), m.Images["aws"].Sha256)
}

// checkAWSUpload runs `cosa buildextend-aws --upload` end to end: the
// build's vmdk goes to a real S3 server (versitygw on loopback), and the
// EC2 calls go to a TEST DOUBLE of EC2 (internal/ec2double; there is no
// EC2 emulator to run here) that reads the uploaded object from that
// server and refuses what EC2 would refuse.
func checkAWSUpload(t *testing.T, w, id, vmdk, sum string) {
	s3Env(t)
	g := startGateway(t, versitygwBin(t))
	const bucket = "amis"
	if err := os.MkdirAll(filepath.Join(g.dataDir, bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	c := s3Client(t, g.url())
	ec2 := ec2double.Start(t, func(b, key string) ([]byte, error) {
		out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(b), Key: aws.String(key), Range: aws.String("bytes=0-65535")})
		if err != nil {
			return nil, err
		}
		defer out.Body.Close()
		return io.ReadAll(out.Body)
	})
	t0 := time.Now()
	r := mustCosa(t, w, "--json", "buildextend-aws", "--upload", "--region", "us-east-1", "--bucket", "s3://"+bucket+"/cosa/",
		"--replicate", "eu-west-1", "--endpoint-url", g.url(), "--ec2-endpoint-url", ec2.URL, "--poll-interval", "50ms")
	t.Logf("e2e: buildextend-aws --upload %s", time.Since(t0).Round(100*time.Millisecond))
	if strings.Contains(r.Stdout+r.Stderr, s3TestSecretKey) {
		t.Error("buildextend-aws printed the secret key")
	}
	// Under --json the summary line goes to stderr; the result says the
	// image was already there and lists the AMIs made.
	res := resultOf(t, r, "buildextend-aws")
	if !strings.Contains(r.Stderr, "already has a aws image") || res["changed"] != false {
		t.Errorf("--upload rebuilt the existing vmdk: %v\n%s", res, r.Stderr)
	}
	if amis, _ := res["amis"].([]any); len(amis) != 2 {
		t.Errorf("buildextend-aws --upload --json: amis %v, want us-east-1 and eu-west-1", res["amis"])
	}
	// The object in S3 is the build's vmdk, whole.
	fi, err := os.Stat(vmdk)
	if err != nil {
		t.Fatal(err)
	}
	head, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket),
		Key: aws.String("cosa/" + filepath.Base(vmdk))})
	if err != nil {
		t.Fatalf("the vmdk is not in the bucket: %v", err)
	}
	if aws.ToInt64(head.ContentLength) != fi.Size() {
		t.Errorf("S3 object %d bytes, vmdk %d", aws.ToInt64(head.ContentLength), fi.Size())
	}
	// meta.json records one AMI per region, with the ids EC2 handed out.
	m, _ := readMeta(t, w, id)
	if len(m.AMIs) != 2 {
		t.Fatalf("amis = %+v", m.AMIs)
	}
	for _, a := range m.AMIs {
		ims := ec2.RegionImages(a.Name)
		if len(ims) != 1 || ims[0].ID != a.HVM || ims[0].Snapshot != a.Snapshot || ims[0].State != "available" {
			t.Errorf("meta.json %+v, EC2 has %+v", a, ims)
			continue
		}
		if ims[0].Tags["Name"] == "" || ims[0].Arch != "x86_64" || !ims[0].ENA || ims[0].VolumeType != "gp3" {
			t.Errorf("%s image %+v", a.Name, ims[0])
		}
	}
	if m.AMIs[0].Name != "us-east-1" || ec2.RegionImages("eu-west-1")[0].CopiedFrom != m.AMIs[0].HVM {
		t.Errorf("amis %+v: eu-west-1 should be a copy of the us-east-1 image", m.AMIs)
	}
	if n := ec2.CallCount("DescribeImportSnapshotTasks"); n < ec2.PollsToComplete {
		t.Errorf("the import was polled %d times; it completes after %d", n, ec2.PollsToComplete)
	}
	if m.Images["aws"].Sha256 != sum {
		t.Errorf("aws image changed: %s, was %s", m.Images["aws"].Sha256, sum)
	}
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
