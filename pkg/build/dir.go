package build

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// Names inside the builds/ directory.
const (
	IndexFile  = "builds.json"
	LatestLink = "latest"
	LockFile   = ".lock"
)

// DefaultLockTimeout is how long the helpers that lock on their own
// (UpdateMeta, WithLock) wait for builds/.lock when Dir.LockTimeout is 0.
const DefaultLockTimeout = 10 * time.Minute

// Dir is a builds/ directory.
type Dir struct {
	// Root is the builds/ directory itself.
	Root string
	// LockTimeout bounds how long UpdateMeta and WithLock wait for the
	// lock; 0 means DefaultLockTimeout.
	LockTimeout time.Duration
	// LockWait receives the one-line "waiting for lock" notice from
	// UpdateMeta and WithLock; nil means os.Stderr.
	LockWait io.Writer
}

// Open returns the builds/ directory at buildsDir, creating it if missing.
func Open(buildsDir string) (*Dir, error) {
	if err := os.MkdirAll(buildsDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating builds directory: %w", err)
	}
	return &Dir{Root: filepath.Clean(buildsDir)}, nil
}

// BuildDir returns builds/<id>/<arch>. It does not check the id; callers that
// take ids from users should use ValidBuildID first.
func (d *Dir) BuildDir(id, arch string) string {
	return filepath.Join(d.Root, id, arch)
}

func (d *Dir) indexPath() string { return filepath.Join(d.Root, IndexFile) }

// ReadIndex reads builds.json. A missing file is an empty index, which is
// the state of a workdir before its first build.
func (d *Dir) ReadIndex() (*BuildsIndex, error) {
	path := d.indexPath()
	data, err := readFileMax(path, MaxIndexBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return NewIndex(), nil
	}
	if err != nil {
		return nil, err
	}
	idx := &BuildsIndex{}
	if err := decodeJSONFile(path, data, idx); err != nil {
		return nil, err
	}
	if idx.SchemaVersion == "" {
		idx.SchemaVersion = IndexSchemaVersion
	}
	if idx.Builds == nil {
		idx.Builds = []BuildEntry{}
	}
	// An index WriteIndex would refuse (a build id such as "../../etc", a
	// tag on a missing build) is reported now, naming the file, rather
	// than half-way through a command that then cannot write it back.
	if err := idx.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return idx, nil
}

// readFileMax is os.ReadFile that refuses, naming the file, one larger
// than limit bytes, without reading more than that.
func readFileMax(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes; cosa accepts at most that", path, limit)
	}
	return data, nil
}

// WriteIndex stamps idx with the current time, validates it and atomically
// replaces builds.json. Callers hold the lock.
func (d *Dir) WriteIndex(idx *BuildsIndex) error {
	if idx.SchemaVersion == "" {
		idx.SchemaVersion = IndexSchemaVersion
	}
	if idx.Builds == nil {
		// "builds": null would break readers that iterate it.
		idx.Builds = []BuildEntry{}
	}
	if err := idx.Validate(); err != nil {
		return fmt.Errorf("refusing to write %s: %w", d.indexPath(), err)
	}
	idx.Timestamp = time.Now().UTC().Format(time.RFC3339)
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	// Every writer of builds.json holds the lock, so a temp of this name
	// is a killed writer's.
	if err := fileutil.RemoveTemps(d.indexPath()); err != nil {
		return err
	}
	return fileutil.WriteFileAtomic(d.indexPath(), append(data, '\n'), 0o644)
}

// Latest returns the build id the latest symlink points at, or "" if there
// is no such symlink.
func (d *Dir) Latest() (string, error) {
	target, err := os.Readlink(filepath.Join(d.Root, LatestLink))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if err := ValidBuildID(target); err != nil {
		return "", fmt.Errorf("%s/%s: %w", d.Root, LatestLink, err)
	}
	return target, nil
}

// SetLatest points the latest symlink at id. The link is created under a
// temporary name and renamed over "latest", so readers never find it missing.
// Callers hold the lock.
func (d *Dir) SetLatest(id string) error {
	if err := ValidBuildID(id); err != nil {
		return err
	}
	link := filepath.Join(d.Root, LatestLink)
	if err := fileutil.RemoveTemps(link); err != nil {
		return err
	}
	tmp := filepath.Join(d.Root, "."+LatestLink+".tmp-"+randomSuffix())
	if err := os.Symlink(id, tmp); err != nil {
		return fmt.Errorf("updating latest: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("updating latest: %w", err)
	}
	return fileutil.SyncDir(d.Root)
}

// ClearLatest removes the latest symlink, if any.
func (d *Dir) ClearLatest() error {
	err := os.Remove(filepath.Join(d.Root, LatestLink))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// randomSuffix makes temporary names unique across concurrent processes.
func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
