package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeRawMeta writes a meta.json as another tool (or a bucket) might
// have, bypassing WriteMeta's validation.
func writeRawMeta(t *testing.T, d *Dir, id, arch string, m *Meta, edit func(string) string) {
	t.Helper()
	data, err := m.Dump()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(d.BuildDir(id, arch), 0o755)
	if err := os.WriteFile(d.MetaPath(id, arch), []byte(edit(string(data))), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadMetaValidates(t *testing.T) {
	d, _ := Open(t.TempDir())
	id, arch := "12.20261122.dev.1", "x86_64"
	m := realisticMeta(id)
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"short commit", `"ostree-commit": "` + m.OSTreeCommit + `"`, `"ostree-commit": "abc"`, `meta.json invalid at "/ostree-commit"`},
		{"upper-case commit", `"ostree-commit": "` + m.OSTreeCommit + `"`, `"ostree-commit": "` + strings.ToUpper(m.OSTreeCommit) + `"`, `meta.json invalid at "/ostree-commit"`},
		{"path escapes", `"path": "` + m.Images["qemu"].Path + `"`, `"path": "../../../../etc/passwd"`, `meta.json invalid at "/images/qemu/path"`},
		{"ref is a command", `"ref": "` + m.Ref + `"`, `"ref": "x; reboot"`, `meta.json invalid at "/ref"`},
		{"other build", `"buildid": "` + id + `"`, `"buildid": "12.20261122.dev.2"`, `buildid "12.20261122.dev.2" does not match build "12.20261122.dev.1"`},
		{"other arch", `"coreos-assembler.basearch": "x86_64"`, `"coreos-assembler.basearch": "aarch64"`, `basearch "aarch64" does not match arch "x86_64"`},
	} {
		writeRawMeta(t, d, id, arch, m, func(s string) string {
			if !strings.Contains(s, tc.from) {
				t.Fatalf("%s: %q not in meta.json", tc.name, tc.from)
			}
			return strings.Replace(s, tc.from, tc.to, 1)
		})
		_, err := d.ReadMeta(id, arch)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), d.MetaPath(id, arch)+": ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: ReadMeta = %v, want one line naming %s and %s", tc.name, err, d.MetaPath(id, arch), tc.want)
		}
		if _, err := d.ReadMetaUnchecked(id, arch); err != nil {
			t.Errorf("%s: ReadMetaUnchecked = %v", tc.name, err)
		}
	}
	// UpdateMeta can repair what ReadMeta refuses.
	writeRawMeta(t, d, id, arch, m, func(s string) string {
		return strings.Replace(s, m.OSTreeCommit, "abc", 1)
	})
	if err := d.UpdateMeta(context.Background(), id, arch, func(x *Meta) error { return x.Set("ostree-commit", m.OSTreeCommit) }); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadMeta(id, arch); err != nil {
		t.Errorf("after the repair: %v", err)
	}
}

func TestVerifyArtifact(t *testing.T) {
	ctx := context.Background()
	d, _ := Open(t.TempDir())
	id, arch := "12.20261122.dev.1", "x86_64"
	dir := d.BuildDir(id, arch)
	os.MkdirAll(dir, 0o755)
	data := []byte("a qcow2, honestly")
	sum := sha256.Sum256(data)
	good := Artifact{Path: "x.qcow2", Sha256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
	os.WriteFile(filepath.Join(dir, good.Path), data, 0o644)

	p, err := d.VerifyArtifact(ctx, id, arch, "qemu", good)
	if err != nil || p != filepath.Join(dir, good.Path) {
		t.Fatalf("VerifyArtifact(good) = %q, %v", p, err)
	}

	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, data, 0o600)
	os.Symlink(outside, filepath.Join(dir, "link.qcow2"))
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	with := func(f func(*Artifact)) Artifact { a := good; f(&a); return a }
	for _, tc := range []struct {
		name string
		a    Artifact
		want string
	}{
		{"parent", with(func(a *Artifact) { a.Path = "../../x.qcow2" }), `images.qemu: path "../../x.qcow2" is not a plain file name`},
		{"absolute", with(func(a *Artifact) { a.Path = outside }), "is not a plain file name"},
		{"dot-dot", with(func(a *Artifact) { a.Path = ".." }), "is not a plain file name"},
		{"empty", with(func(a *Artifact) { a.Path = "" }), "is not a plain file name"},
		{"control characters", with(func(a *Artifact) { a.Path = "x\x1b]0;t\x07.qcow2" }), "has control characters"},
		{"symlink", with(func(a *Artifact) { a.Path = "link.qcow2" }), "is a symlink"},
		{"directory", with(func(a *Artifact) { a.Path = "sub" }), "is not a regular file"},
		{"missing", with(func(a *Artifact) { a.Path = "nope.qcow2" }), "no such file"},
		{"size", with(func(a *Artifact) { a.Size++ }), "bytes but meta.json size is"},
		{"sha256", with(func(a *Artifact) { a.Sha256 = strings.Repeat("0", 64) }), "but meta.json sha256 is " + strings.Repeat("0", 64)},
	} {
		_, err := d.VerifyArtifact(ctx, id, arch, "qemu", tc.a)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: VerifyArtifact = %v, want %q", tc.name, err, tc.want)
		}
	}

	// The build's directory itself must not lead elsewhere.
	other := "12.20261122.dev.2"
	os.Symlink(filepath.Dir(outside), filepath.Join(d.Root, other))
	os.Mkdir(filepath.Join(filepath.Dir(outside), arch), 0o755)
	os.WriteFile(filepath.Join(filepath.Dir(outside), arch, good.Path), data, 0o644)
	if _, err := d.VerifyArtifact(ctx, other, arch, "qemu", good); err == nil || !strings.Contains(err.Error(), "refusing to use its artifacts") {
		t.Errorf("build dir through a symlink: %v", err)
	}
}
