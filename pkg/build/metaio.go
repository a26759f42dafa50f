package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// MetaFile is the name of a build's metadata file inside builds/<id>/<arch>.
const MetaFile = "meta.json"

// MetaPath returns builds/<id>/<arch>/meta.json.
func (d *Dir) MetaPath(id, arch string) string {
	return filepath.Join(d.BuildDir(id, arch), MetaFile)
}

func checkIDArch(id, arch string) error {
	if err := ValidBuildID(id); err != nil {
		return err
	}
	return validArch(arch)
}

// ReadMeta reads a build's meta.json for use: the file must be valid
// against our schema and describe this build (its buildid is id and its
// basearch, if set, is arch). Values from it end up in paths, on command
// lines and on the terminal, and a fetched meta.json comes from a bucket
// cosa may not have written, so nothing gets to use one that is not.
func (d *Dir) ReadMeta(id, arch string) (*Meta, error) {
	path, data, err := d.readMetaFile(id, arch)
	if err != nil {
		return nil, err
	}
	m, err := ParseMeta(path, data)
	if err != nil {
		return nil, err
	}
	if err := m.describes(id, arch); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// ReadMetaUnchecked reads a build's meta.json without validating it, for
// inspecting (`cosa meta --dump`) or repairing (UpdateMeta, which validates
// what it writes) a file that ReadMeta refuses.
func (d *Dir) ReadMetaUnchecked(id, arch string) (*Meta, error) {
	path, data, err := d.readMetaFile(id, arch)
	if err != nil {
		return nil, err
	}
	m := &Meta{}
	if err := decodeJSONFile(path, data, m); err != nil {
		return nil, err
	}
	return m, nil
}

// readMetaFile reads a build's meta.json once id and arch are known to be
// plain names, and returns its path for errors.
func (d *Dir) readMetaFile(id, arch string) (string, []byte, error) {
	if err := checkIDArch(id, arch); err != nil {
		return "", nil, err
	}
	path := d.MetaPath(id, arch)
	data, err := os.ReadFile(path)
	return path, data, err
}

// ParseMeta decodes a meta.json read from name (a path or URL, for
// errors) and validates it against our schema.
func ParseMeta(name string, data []byte) (*Meta, error) {
	m := &Meta{}
	if err := decodeJSONFile(name, data, m); err != nil {
		return nil, err
	}
	if err := ValidateMeta(data); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// describes reports whether m can be the meta.json of build id, arch.
func (m *Meta) describes(id, arch string) error {
	if m.BuildID != id {
		return fmt.Errorf("buildid %q does not match build %q", m.BuildID, id)
	}
	if m.BaseArch != "" && m.BaseArch != arch {
		return fmt.Errorf("coreos-assembler.basearch %q does not match arch %q", m.BaseArch, arch)
	}
	return nil
}

// WriteMeta validates m against our schema and atomically writes it as
// builds/<id>/<arch>/meta.json (mode 0644), creating the directory if
// needed. m must describe this build: its buildid must be id and its
// basearch, if set, must be arch. Callers hold the builds/ lock.
func (d *Dir) WriteMeta(id, arch string, m *Meta) error {
	if err := checkIDArch(id, arch); err != nil {
		return err
	}
	if err := m.describes(id, arch); err != nil {
		return fmt.Errorf("meta.json %w", err)
	}
	data, err := m.Dump()
	if err != nil {
		return err
	}
	path := d.MetaPath(id, arch)
	if err := ValidateMeta(data); err != nil {
		return fmt.Errorf("refusing to write %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	// Callers hold the builds/ lock, so a temp of this name is a killed
	// writer's.
	if err := fileutil.RemoveTemps(path); err != nil {
		return err
	}
	return fileutil.WriteFileAtomic(path, data, 0o644)
}

// UpdateMeta is the safe read-modify-write of a meta.json: under the builds/
// lock it re-reads the file, applies fn and writes the result. Concurrent
// buildextend-* processes each adding their own images entry therefore
// never overwrite one another. If fn returns an error nothing is written.
// The read is unchecked so that `cosa meta --set` can repair an invalid
// file; WriteMeta refuses to write anything that is still invalid.
func (d *Dir) UpdateMeta(ctx context.Context, id, arch string, fn func(*Meta) error) error {
	if err := checkIDArch(id, arch); err != nil {
		return err
	}
	purpose := fmt.Sprintf("update %s/%s/%s", id, arch, MetaFile)
	return d.WithLock(ctx, purpose, func() error {
		m, err := d.ReadMetaUnchecked(id, arch)
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
		return d.WriteMeta(id, arch, m)
	})
}

// HasBuild reports whether builds/<id> exists as a directory. builds.json
// can list builds whose directories were removed by hand.
func (d *Dir) HasBuild(id string) bool {
	if ValidBuildID(id) != nil {
		return false
	}
	fi, err := os.Stat(filepath.Join(d.Root, id))
	return err == nil && fi.IsDir()
}
