package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cosa-build/cosa/pkg/config"
)

// ComposeVersion is part of every input hash: bump it when a change to cosa
// changes what the same inputs compose to, so old builds are not reused.
const ComposeVersion = "cosa-compose-1"

// InputHash is the sha256 of everything a build's OSTree commit depends on
// (docs/architecture.md#the-input-hash): the normalized config, the locked package set, the
// overlay trees and the postprocess scripts. Same hash, same build. The
// normalized config carries hostname, users, the per-arch package lists and
// the repos with their keyrings' sha256, so the keyring files themselves
// need no hashing here.
func InputHash(cfg *config.Config, lock *Lockfile) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", ComposeVersion)
	norm, err := cfg.Normalized()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "config %d\n", len(norm))
	h.Write(norm)
	fmt.Fprintf(h, "packages %s %s %v\n", lock.Arch, lock.Suite, lock.Sources)
	for _, n := range lock.Names() {
		p := lock.Packages[n]
		fmt.Fprintf(h, "%s %s %s %s\n", n, p.Version, p.Arch, p.Sha256)
	}
	for _, s := range cfg.Manifest.Postprocess {
		if err := hashFile(h, "postprocess "+s, filepath.Join(cfg.Dir, s)); err != nil {
			return "", err
		}
	}
	overlays, err := cfg.OverlayDirs()
	if err != nil {
		return "", err
	}
	for _, dir := range overlays {
		fmt.Fprintf(h, "overlay %s\n", filepath.Base(dir))
		if err := hashTree(h, dir); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(h hash.Hash, label, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(h, "%s\n", label)
	_, err = io.Copy(h, f)
	fmt.Fprintf(h, "\n")
	return err
}

// hashTree hashes names, types, permission bits, symlink targets and file
// contents in lexical order; ownership is not hashed because overlays are
// always installed as root.
func hashTree(h hash.Hash, dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "L %s -> %s\n", rel, t)
		case d.IsDir():
			fmt.Fprintf(h, "D %s %o\n", rel, info.Mode().Perm())
		case info.Mode().IsRegular():
			fmt.Fprintf(h, "F %s %o %d\n", rel, info.Mode().Perm(), info.Size())
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: overlays may hold only files, directories and symlinks", path)
		}
		return nil
	})
}
