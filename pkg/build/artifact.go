package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/termsafe"
)

// CheckArtifactPath reports why p, an images.*.path from meta.json, cannot
// name a file of the build, or nil. It must be a plain file name: meta.json
// may come from a bucket cosa did not write, and a path such as
// "../../../.ssh/id_rsa" would otherwise be read, booted or uploaded.
func CheckArtifactPath(p string) error {
	if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "/\\\x00") || filepath.Base(p) != p {
		return fmt.Errorf("path %q is not a plain file name", p)
	}
	// The name is printed (cosa compress, errors): no terminal controls.
	if termsafe.String(p) != p {
		return fmt.Errorf("path %q has control characters", p)
	}
	return nil
}

// ArtifactPath returns where artifact name (its meta.json entry a) of build
// id, arch is, after checking that it is a plain file name and that the
// build's directory resolves to builds/<id>/<arch> itself, not through a
// symlink to somewhere else. It does not look at the file; VerifyArtifact
// does.
func (d *Dir) ArtifactPath(id, arch, name string, a Artifact) (string, error) {
	if err := checkIDArch(id, arch); err != nil {
		return "", err
	}
	if err := CheckArtifactPath(a.Path); err != nil {
		return "", fmt.Errorf("%s: images.%s: %w", d.MetaPath(id, arch), name, err)
	}
	root, err := filepath.EvalSymlinks(d.Root)
	if err != nil {
		return "", err
	}
	dir := d.BuildDir(id, arch)
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	if real != filepath.Join(root, id, arch) {
		return "", fmt.Errorf("%s resolves to %s, outside %s; refusing to use its artifacts", dir, real, root)
	}
	return filepath.Join(dir, a.Path), nil
}

// VerifyArtifact returns the path of artifact name of build id, arch once
// the file there is a regular file (not a symlink) whose size and sha256
// are the ones meta.json records. This is what makes a file that cosa
// boots, tests or uploads the one the build made; the caller should use it
// right away, since nothing stops the file changing afterwards.
func (d *Dir) VerifyArtifact(ctx context.Context, id, arch, name string, a Artifact) (string, error) {
	p, err := d.ArtifactPath(id, arch, name, a)
	if err != nil {
		return "", err
	}
	// O_NOFOLLOW: the file itself must not be a symlink either, and the
	// check and the hash must be of the same file.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if fi, lerr := os.Lstat(p); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return "", fmt.Errorf("artifact %s: %s is a symlink; refusing to use it", name, p)
		}
		return "", fmt.Errorf("artifact %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("artifact %s: %s is not a regular file", name, p)
	}
	if fi.Size() != a.Size {
		return "", fmt.Errorf("artifact %s: %s is %d bytes but meta.json size is %d", name, p, fi.Size(), a.Size)
	}
	sum, n, err := fileutil.SHA256Reader(fileutil.ContextReader(ctx, f))
	if err != nil {
		return "", fmt.Errorf("artifact %s: reading %s: %w", name, p, err)
	}
	if n != a.Size {
		return "", fmt.Errorf("artifact %s: %s is %d bytes but meta.json size is %d", name, p, n, a.Size)
	}
	if sum != a.Sha256 {
		return "", fmt.Errorf("artifact %s: %s has sha256 %s but meta.json sha256 is %s", name, p, sum, a.Sha256)
	}
	return p, nil
}
