package assemble

import (
	"path/filepath"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/fileutil"
)

// artifact hashes a finished file in dir for meta.json.
func artifact(dir, name string) (*build.Artifact, error) {
	sum, n, err := fileutil.SHA256File(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	return &build.Artifact{Path: name, Sha256: sum, Size: n}, nil
}
