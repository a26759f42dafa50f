package stress

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cosa-build/cosa/pkg/build"
)

// report collects what a check found: problems fail the case, notes are
// printed with it.
type report struct {
	problems []string
	notes    []string
}

func (r *report) bad(format string, a ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, a...))
}
func (r *report) note(format string, a ...any) { r.notes = append(r.notes, fmt.Sprintf(format, a...)) }

// leftover reports a hidden file left at path: a failure once the next run
// has settled the tree, a note while a killed run may still explain it.
func (r *report) leftover(settled bool, path string) {
	if settled {
		r.bad("leftover %s after the next run", path)
	} else {
		r.note("hidden leftover %s", path)
	}
}

func (r *report) merge(o report) {
	r.problems = append(r.problems, o.problems...)
	r.notes = append(r.notes, o.notes...)
}

// Files a build's arch directory holds besides its images.
var sidecars = []string{build.MetaFile, "commitmeta.json", "pkglist.json"}

func isSidecar(name string) bool {
	return slices.Contains(sidecars, name) || strings.HasSuffix(name, ".manifest.json")
}

// Dot-names that cosa documents as its own under builds/ and that may
// exist at any time: the lock file.
func isDocumentedDotfile(name string) bool { return name == build.LockFile }

// checkWorkdir verifies the builds/ directory. After a kill (settled =
// false) hidden leftovers of the killed run (dot-named temp files, staging
// dirs) and complete files not yet recorded are notes, since the next run
// is documented to clear them; once the next command has run (settled =
// true) they are problems. Everything else is a problem either way.
func (s *stress) checkWorkdir(settled bool) report {
	var r report
	d := &build.Dir{Root: filepath.Join(s.workdir, "builds")}
	idx, err := d.ReadIndex()
	if err != nil {
		r.bad("builds.json: %v", err)
		return r
	}
	if err := idx.Validate(); err != nil {
		r.bad("builds.json invalid: %v", err)
	}
	latest, err := d.Latest()
	if err != nil {
		r.bad("latest: %v", err)
	}
	switch {
	case len(idx.Builds) == 0 && latest != "":
		r.bad("latest -> %s but builds.json lists no builds", latest)
	case len(idx.Builds) > 0 && latest == "":
		r.bad("builds.json lists builds but there is no latest link")
	case latest != "" && idx.Find(latest) == nil:
		r.bad("latest -> %s, which builds.json does not list", latest)
	case latest != "" && !d.HasBuild(latest):
		r.bad("latest -> %s, which does not exist", latest)
	}
	listed := map[string]bool{}
	for _, e := range idx.Builds {
		listed[e.ID] = true
		if !d.HasBuild(e.ID) {
			r.bad("builds.json lists %s but builds/%s is missing", e.ID, e.ID)
			continue
		}
		for _, arch := range e.Arches {
			r.merge(s.checkBuild(d, e.ID, arch, settled))
		}
	}
	ents, err := os.ReadDir(d.Root)
	if err != nil {
		r.bad("%v", err)
		return r
	}
	for _, de := range ents {
		name := de.Name()
		switch {
		case name == build.IndexFile || name == build.LatestLink || isDocumentedDotfile(name):
		case strings.HasPrefix(name, "."):
			r.leftover(settled, "builds/"+name)
		case listed[name]:
		case build.ValidBuildID(name) == nil && de.IsDir():
			// A complete build renamed into place but not yet in
			// builds.json: the next build with that id clears it.
			if settled {
				r.bad("builds/%s is not in builds.json after the next run", name)
			} else {
				r.note("builds/%s not (yet) in builds.json", name)
			}
		default:
			r.bad("unexpected builds/%s", name)
		}
	}
	// A lock nobody can take is a lock a killed process never released.
	d.LockWait = io.Discard
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	release, err := d.Lock(ctx, 30*time.Second, "stress check", nil)
	if err != nil {
		r.bad("builds/.lock: %v", err)
	} else {
		release()
	}
	return r
}

// checkBuild verifies one builds/<id>/<arch>: meta.json parses and
// validates, every image exists with its size and sha256, and nothing
// else is lying around.
func (s *stress) checkBuild(d *build.Dir, id, arch string, settled bool) report {
	var r report
	dir := d.BuildDir(id, arch)
	data, err := os.ReadFile(d.MetaPath(id, arch))
	if err != nil {
		r.bad("%s/%s: %v", id, arch, err)
		return r
	}
	if err := build.ValidateMeta(data); err != nil {
		r.bad("%s/%s: %v", id, arch, err)
	}
	m, err := d.ReadMeta(id, arch)
	if err != nil {
		r.bad("%s/%s: %v", id, arch, err)
		return r
	}
	if m.BuildID != id {
		r.bad("%s/%s/meta.json: buildid %q", id, arch, m.BuildID)
	}
	named := map[string]bool{}
	for name, a := range m.Images {
		named[a.Path] = true
		p := filepath.Join(dir, a.Path)
		sum, size, err := s.hashes.sum(p)
		switch {
		case err != nil:
			r.bad("%s/%s: image %s: %v", id, arch, name, err)
		case size != a.Size:
			r.bad("%s/%s: image %s (%s): size %d, meta.json says %d", id, arch, name, a.Path, size, a.Size)
		case sum != a.Sha256:
			r.bad("%s/%s: image %s (%s): sha256 %s, meta.json says %s", id, arch, name, a.Path, sum[:12], short(a.Sha256))
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		r.bad("%v", err)
		return r
	}
	for _, de := range ents {
		name := de.Name()
		switch {
		case named[name] || isSidecar(name):
		case strings.HasPrefix(name, "."):
			r.leftover(settled, id+"/"+arch+"/"+name)
		case strings.Contains(name, ".tmp") || strings.HasSuffix(name, ".partial"):
			r.bad("visible temporary file %s/%s/%s", id, arch, name)
		default:
			if settled {
				r.bad("%s/%s/%s is not named in meta.json", id, arch, name)
			} else {
				r.note("%s/%s/%s not (yet) named in meta.json", id, arch, name)
			}
		}
	}
	// builds/<id>/ holds arch directories only.
	if top, err := os.ReadDir(filepath.Join(d.Root, id)); err == nil {
		for _, de := range top {
			if !de.IsDir() || strings.HasPrefix(de.Name(), ".") {
				if settled || !strings.HasPrefix(de.Name(), ".") {
					r.bad("unexpected builds/%s/%s", id, de.Name())
				} else {
					r.note("hidden leftover builds/%s/%s", id, de.Name())
				}
			}
		}
	}
	return r
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// hashCache remembers sha256 sums by file identity, so that a 10 GiB
// image that did not change since the last check is not hashed again.
type hashCache map[fileKey]string

type fileKey struct {
	dev, ino              uint64
	size, mtime, ctimeKey int64
}

func (h hashCache) sum(path string) (string, int64, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return "", 0, err
	}
	if !fi.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%s is not a regular file", filepath.Base(path))
	}
	st := fi.Sys().(*syscall.Stat_t)
	k := fileKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctimeKey: st.Ctim.Nano()}
	if s, ok := h[k]; ok {
		return s, fi.Size(), nil
	}
	s, err := sparseSum(path)
	if err != nil {
		return "", 0, err
	}
	h[k] = s
	return s, fi.Size(), nil
}

// lseek whence values for sparse files (Linux).
const (
	seekData = 3
	seekHole = 4
)

// sparseSum hashes a file, feeding holes to the hash from memory instead
// of reading them.
func sparseSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	size := fi.Size()
	h := sha256.New()
	zeros := make([]byte, 1<<20)
	fd := int(f.Fd())
	var off int64
	for off < size {
		data, err := syscall.Seek(fd, off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			data = size
		} else if err != nil {
			return "", err
		}
		for n := data - off; n > 0; {
			c := min(n, int64(len(zeros)))
			h.Write(zeros[:c])
			n -= c
		}
		if data >= size {
			break
		}
		hole, err := syscall.Seek(fd, data, seekHole)
		if err != nil {
			return "", err
		}
		if _, err := f.Seek(data, io.SeekStart); err != nil {
			return "", err
		}
		if _, err := io.CopyN(h, f, hole-data); err != nil {
			return "", err
		}
		off = hole
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkBucket verifies the invariant of an upload prefix in the gateway's
// posix data dir: a builds.json there only lists builds whose meta.json
// and every image are complete (size and sha256 as in that meta.json).
// It returns the ids listed.
func (s *stress) checkBucket(bucket, prefix string) ([]string, report) {
	var r report
	root := filepath.Join(s.gw.dataDir, bucket, filepath.FromSlash(prefix))
	data, err := os.ReadFile(filepath.Join(root, build.IndexFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, r
	}
	if err != nil {
		r.bad("s3 builds.json: %v", err)
		return nil, r
	}
	idx := &build.BuildsIndex{}
	if err := json.Unmarshal(data, idx); err != nil {
		r.bad("s3 builds.json does not parse: %v", err)
		return nil, r
	}
	if err := idx.Validate(); err != nil {
		r.bad("s3 builds.json invalid: %v", err)
	}
	for _, e := range idx.Builds {
		for _, arch := range e.Arches {
			base := filepath.Join(root, e.ID, arch)
			md, err := os.ReadFile(filepath.Join(base, build.MetaFile))
			if err != nil {
				r.bad("s3 builds.json lists %s/%s but its meta.json is missing", e.ID, arch)
				continue
			}
			if err := build.ValidateMeta(md); err != nil {
				r.bad("s3 %s/%s: %v", e.ID, arch, err)
			}
			m := &build.Meta{}
			if err := json.Unmarshal(md, m); err != nil {
				r.bad("s3 %s/%s/meta.json: %v", e.ID, arch, err)
				continue
			}
			for name, a := range m.Images {
				sum, size, err := s.hashes.sum(filepath.Join(base, a.Path))
				switch {
				case err != nil:
					r.bad("s3 builds.json lists %s/%s but image %s: %v", e.ID, arch, name, err)
				case size != a.Size || sum != a.Sha256:
					r.bad("s3 builds.json lists %s/%s but image %s is incomplete (size %d of %d)", e.ID, arch, name, size, a.Size)
				}
			}
		}
	}
	return idx.IDs(), r
}
