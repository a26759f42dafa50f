package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/build"
)

// qemuBuild is a workdir whose latest build has a qemu image that matches
// its meta.json.
func qemuBuild(t *testing.T) (wd string, d *build.Dir, id string, img build.Artifact) {
	t.Helper()
	wd = initWorkdir(t)
	id = "1.20261122.dev.0"
	d = makeBuilds(t, wd, nil, fakeBuild{id: id, onDisk: true, day: 22})
	data := []byte("QFI\xfb a qcow2 for this test")
	sum := sha256.Sum256(data)
	img = build.Artifact{Path: "debian-ostree-" + id + "-qemu." + arch + ".qcow2", Sha256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
	if err := os.WriteFile(filepath.Join(d.BuildDir(id, arch), img.Path), data, 0o644); err != nil {
		t.Fatal(err)
	}
	err := d.UpdateMeta(context.Background(), id, arch, func(m *build.Meta) error {
		m.Images["qemu"] = img
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return wd, d, id, img
}

// imagePath, which `cosa run` and `cosa test` boot from, hands out only
// the image meta.json describes.
func TestImagePathVerifies(t *testing.T) {
	ctx := context.Background()
	_, d, id, img := qemuBuild(t)
	m, err := d.ReadMeta(id, arch)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(d.BuildDir(id, arch), img.Path)
	if got, err := imagePath(ctx, d, id, arch, m, "qemu"); err != nil || got != p {
		t.Fatalf("imagePath = %q, %v; want %s", got, err, p)
	}

	outside := filepath.Join(t.TempDir(), "other.qcow2")
	data, _ := os.ReadFile(p)
	os.WriteFile(outside, data, 0o644)
	for _, tc := range []struct {
		name string
		edit func()
		want string
	}{
		{"changed", func() { os.WriteFile(p, append(data[:len(data)-1:len(data)-1], 'X'), 0o644) }, "but meta.json sha256 is " + img.Sha256},
		{"grown", func() { os.WriteFile(p, append(data, 'X'), 0o644) }, "bytes but meta.json size is"},
		{"symlink", func() { os.Remove(p); os.Symlink(outside, p) }, "is a symlink"},
	} {
		tc.edit()
		if _, err := imagePath(ctx, d, id, arch, m, "qemu"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: imagePath = %v, want %q", tc.name, err, tc.want)
		}
		os.Remove(p)
		os.WriteFile(p, data, 0o644)
	}

	m.Images["qemu"] = build.Artifact{Path: "../../../" + filepath.Base(outside), Sha256: img.Sha256, Size: img.Size}
	if _, err := imagePath(ctx, d, id, arch, m, "qemu"); err == nil || !strings.Contains(err.Error(), "is not a plain file name") {
		t.Errorf("path with ..: imagePath = %v", err)
	}
}

// `cosa run` and `cosa test` refuse, before starting QEMU, an image that
// is not what meta.json describes, and a meta.json that is not valid.
func TestRunAndTestRefuseUnverifiedImage(t *testing.T) {
	wd, d, id, img := qemuBuild(t)
	p := filepath.Join(d.BuildDir(id, arch), img.Path)
	if err := os.WriteFile(p, []byte("QFI\xfb a different qcow2 of a size"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"run"}, {"test"}} {
		r := cosa(t, append([]string{"-C", wd}, args...)...).wantCode(t, 1)
		r.wantStderrContains(t, "artifact qemu: "+p+" is ")
		if strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%s: stderr is not one line: %q", args[0], r.stderr)
		}
	}

	meta := d.MetaPath(id, arch)
	data, _ := os.ReadFile(meta)
	os.WriteFile(meta, []byte(strings.Replace(string(data), `"path": "`+img.Path+`"`, `"path": "../../../../etc/passwd"`, 1)), 0o644)
	for _, args := range [][]string{{"run"}, {"test"}} {
		cosa(t, append([]string{"-C", wd}, args...)...).wantCode(t, 1).
			wantStderrContains(t, meta+`: meta.json invalid at "/images/qemu/path"`)
	}
}

// buildextend-metal on a meta.json whose ostree-commit is not a commit
// checksum used to panic slicing it; it must be a one-line error.
func TestBuildextendRejectsInvalidMeta(t *testing.T) {
	needTool(t, "ostree")
	wd := initWorkdir(t)
	id := "1.20261122.dev.0"
	d := makeBuilds(t, wd, nil, fakeBuild{id: id, onDisk: true, day: 22})
	meta := d.MetaPath(id, arch)
	os.WriteFile(meta, []byte(`{"buildid": "`+id+`", "name": "x", "ostree-commit": "abc", "ostree-timestamp": "2026-11-22T10:00:00Z", "ostree-version": "1"}`), 0o644)
	r := cosa(t, "-C", wd, "buildextend-metal").wantCode(t, 1)
	r.wantStderrContains(t, meta+`: meta.json invalid at "/ostree-commit"`)
	if strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr is not one line: %q", r.stderr)
	}
}
