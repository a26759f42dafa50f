package assemble

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"

	"github.com/cosa-build/cosa/pkg/build"
)

// artifact hashes a finished file in dir for meta.json.
func artifact(dir, name string) (*build.Artifact, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, err
	}
	return &build.Artifact{Path: name, Sha256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}
