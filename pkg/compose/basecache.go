package compose

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/fileutil"
)

// The base root cache keeps the tree mmdebstrap made, keyed on everything
// that decides it, so a rebuild whose packages did not change (an overlay,
// a postprocess script or a kernel argument did) copies it instead of
// installing every package again: mmdebstrap was 30 of the 52 s of a cold
// build on 2 cores, a copy of its tree is about 3 s.
//
// Only the newest base is kept: a config that changes its packages makes
// the old one useless, and each is about as big as the root (~600 MB).

// baseFormat changes whenever what goes into the cached tree changes, so
// old entries are never restored into a build that expects new ones.
const baseFormat = 1

// BaseCacheDir is where the cached base trees live.
func BaseCacheDir(cacheDir string) string { return filepath.Join(cacheDir, "rootfs") }

// BaseKey is the cache key of the tree mmdebstrap makes for a manifest and
// lock: its arguments (with the root and package paths left out, they
// differ per build) and the locked packages with their checksums.
func BaseKey(m *config.Manifest, lock *Lockfile) string {
	h := sha256.New()
	data, _ := json.Marshal(struct {
		Format   int                      `json:"format"`
		Args     []string                 `json:"args"`
		Suite    string                   `json:"suite"`
		Arch     string                   `json:"arch"`
		Packages map[string]LockedPackage `json:"packages"`
		Index    string                   `json:"index"`
	}{baseFormat, MmdebstrapArgs(m, lock.Suite, "ROOT", "DEBS"), lock.Suite, lock.Arch, lock.Packages, lock.IndexSha256})
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// hasBase reports whether a cached tree for key exists.
func hasBase(cacheDir, key string) bool {
	_, err := os.Stat(filepath.Join(BaseCacheDir(cacheDir), key))
	return err == nil
}

// restoreBase copies the cached tree for key to root (which must not
// exist) and returns the entry's instance id (see baseInstance).
func restoreBase(ctx context.Context, cacheDir, key, root string) (string, error) {
	if _, err := os.Lstat(root); err == nil {
		return "", fmt.Errorf("restoring the cached base root: %s already exists", root)
	}
	if err := copyTree(ctx, filepath.Join(BaseCacheDir(cacheDir), key), root); err != nil {
		os.RemoveAll(root)
		return "", fmt.Errorf("restoring the cached base root: %w", err)
	}
	return baseInstance(cacheDir, key), nil
}

// baseInstance names one stored base tree: its key and a random token
// written when it was stored. mmdebstrap is not byte-for-byte
// reproducible, so what was derived from one stored tree (a cached
// initramfs) must not be taken for another tree with the same key. ""
// when the entry has no token (stored by an older cosa): nothing is
// reused then.
func baseInstance(cacheDir, key string) string {
	data, err := os.ReadFile(filepath.Join(BaseCacheDir(cacheDir), key+instanceSuffix))
	tok := strings.TrimSpace(string(data))
	if err != nil || len(tok) != 32 {
		return ""
	}
	return key + "/" + tok
}

// instanceSuffix names the file beside a base entry that holds its token.
const instanceSuffix = ".instance"

// saveBase stores a copy of root as the cached tree for key. The copy is
// made under a temporary name and renamed, so a killed build never leaves
// a half tree under a key; every other entry (older keys, leftovers of
// killed copies) is removed. It returns the instance id of the stored
// copy, which holds what root holds; "" if an entry for key was there
// already (its tree is another mmdebstrap run's, not root's).
func saveBase(ctx context.Context, cacheDir, key, root string) (string, error) {
	dir := BaseCacheDir(cacheDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if e.Name() != key && e.Name() != key+instanceSuffix {
			if err := RemoveTree(filepath.Join(dir, e.Name())); err != nil {
				return "", err
			}
		}
	}
	final := filepath.Join(dir, key)
	if _, err := os.Stat(final); err == nil {
		return "", nil
	}
	// A token first: it names the tree about to be renamed into place, and
	// an old token beside no tree is replaced here.
	tok := make([]byte, 16)
	rand.Read(tok)
	if err := fileutil.WriteFileAtomic(filepath.Join(dir, key+instanceSuffix), []byte(hex.EncodeToString(tok)+"\n"), 0o644); err != nil {
		return "", err
	}
	tmp := filepath.Join(dir, ".tmp-"+key)
	if err := copyTree(ctx, root, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("caching the base root: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	return baseInstance(cacheDir, key), nil
}

// copyTree copies src to dst (which must not exist) keeping owners, modes,
// times, hard links, xattrs (file capabilities) and device nodes; cp never
// follows the tree's symlinks, which point into the image, not the host.
func copyTree(ctx context.Context, src, dst string) error {
	return fileutil.CopyTree(ctx, src, dst, "--reflink=auto")
}
