// Package testutil holds the helpers that tests in several packages share.
package testutil

import (
	"archive/tar"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// WriteTree creates files under root (names slash-separated, relative to
// root), making parent directories. A value "symlink:TARGET" makes a
// symlink, "dir:" an empty directory, "fifo:" a named pipe; anything else
// is file content, and a name ending in ".sh" is made executable.
func WriteTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasPrefix(content, "symlink:"):
			err = os.Symlink(strings.TrimPrefix(content, "symlink:"), p)
		case content == "fifo:":
			err = syscall.Mkfifo(p, 0o644)
		case content == "dir:":
			err = os.MkdirAll(p, 0o755)
		default:
			mode := os.FileMode(0o644)
			if strings.HasSuffix(name, ".sh") {
				mode = 0o755
			}
			err = os.WriteFile(p, []byte(content), mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// CheckOVA checks an OVA file as VMware and VirtualBox read one: a tar whose
// members are the .ovf descriptor first, then the .mf manifest and the
// .vmdk disk (a streamOptimized sparse vmdk); the descriptor is well-formed
// OVF 1.0 that references the disk with its size, declares capacity bytes
// of disk, names the virtual system and has CPU, memory, SCSI controller,
// NIC and disk hardware items.
func CheckOVA(t testing.TB, path string, capacity int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	sizes := map[string]int64{}
	var ovf, vmdkHead []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		sizes[h.Name] = h.Size
		switch {
		case strings.HasSuffix(h.Name, ".ovf"):
			ovf, _ = io.ReadAll(tr)
		case strings.HasSuffix(h.Name, ".vmdk"):
			vmdkHead = make([]byte, 4)
			io.ReadFull(tr, vmdkHead)
		}
	}
	if len(names) != 3 || !strings.HasSuffix(names[0], ".ovf") || !strings.HasSuffix(names[1], ".mf") || !strings.HasSuffix(names[2], ".vmdk") {
		t.Fatalf("ova members %v: want .ovf, .mf, .vmdk in that order", names)
	}
	if string(vmdkHead) != "KDMV" {
		t.Errorf("%s starts with %q, not a sparse vmdk", names[2], vmdkHead)
	}
	var env struct {
		XMLName xml.Name `xml:"http://schemas.dmtf.org/ovf/envelope/1 Envelope"`
		Files   []struct {
			Href string `xml:"http://schemas.dmtf.org/ovf/envelope/1 href,attr"`
			Size int64  `xml:"http://schemas.dmtf.org/ovf/envelope/1 size,attr"`
		} `xml:"References>File"`
		Disks []struct {
			Capacity int64  `xml:"http://schemas.dmtf.org/ovf/envelope/1 capacity,attr"`
			Format   string `xml:"http://schemas.dmtf.org/ovf/envelope/1 format,attr"`
		} `xml:"DiskSection>Disk"`
		System struct {
			Name  string `xml:"Name"`
			Items []struct {
				ResourceType int `xml:"ResourceType"`
			} `xml:"VirtualHardwareSection>Item"`
		} `xml:"VirtualSystem"`
	}
	if err := xml.Unmarshal(ovf, &env); err != nil {
		t.Fatalf("ovf is not XML: %v\n%s", err, ovf)
	}
	if len(env.Files) != 1 || env.Files[0].Href != names[2] || env.Files[0].Size != sizes[names[2]] {
		t.Errorf("ovf References %+v, members %v", env.Files, sizes)
	}
	if len(env.Disks) != 1 || env.Disks[0].Capacity != capacity || !strings.HasSuffix(env.Disks[0].Format, "#streamOptimized") {
		t.Errorf("ovf Disk %+v, want capacity %d streamOptimized", env.Disks, capacity)
	}
	if env.System.Name == "" {
		t.Error("ovf VirtualSystem has no Name")
	}
	types := map[int]bool{}
	for _, it := range env.System.Items {
		types[it.ResourceType] = true
	}
	for _, rt := range []int{3, 4, 6, 10, 17} { // CPU, memory, SCSI controller, NIC, disk
		if !types[rt] {
			t.Errorf("ovf has no hardware item of ResourceType %d", rt)
		}
	}
}

// FileSHA256 returns the hex sha256 and the size of the file at path,
// failing the test if it cannot be read.
func FileSHA256(t testing.TB, path string) (string, int64) {
	t.Helper()
	sum, n, err := fileutil.SHA256File(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum, n
}
