package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/fileutil"
)

// LockFormat is bumped when the lock file's meaning changes.
const LockFormat = 1

// LockedPackage pins one .deb.
type LockedPackage struct {
	Version  string `json:"version"`
	Arch     string `json:"arch"`
	Sha256   string `json:"sha256"`
	Size     int64  `json:"size"`
	Filename string `json:"filename"` // name inside cache/debs
}

// Lockfile is manifest-lock.<arch>.json: the exact package set of a build.
type Lockfile struct {
	Format int    `json:"format"`
	Arch   string `json:"arch"`  // basearch
	Suite  string `json:"suite"` // the suite mmdebstrap is told
	// Sources are the apt source lines the packages came from; they become
	// the image's own apt sources.
	Sources []string `json:"sources"`
	// PackageInputs is a hash of the config keys that decide the package set;
	// build refuses a cache fetched for a different package set.
	PackageInputs string                   `json:"package-inputs"`
	Packages      map[string]LockedPackage `json:"packages"`
	// IndexSha256 is the sha256 of the flat repo's Packages index written
	// next to the debs, so build can check the index was not changed either.
	IndexSha256 string `json:"index-sha256"`
}

// LockName is the lock file's name for an arch.
func LockName(arch string) string { return "manifest-lock." + arch + ".json" }

// ReadLock reads a lock file; a missing file gives an error wrapping os.ErrNotExist.
func ReadLock(path string) (*Lockfile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var l Lockfile
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if l.Format != LockFormat {
		return nil, fmt.Errorf("%s: format: unsupported lock format %d (want %d)", path, l.Format, LockFormat)
	}
	if len(l.Packages) == 0 {
		return nil, fmt.Errorf("%s: packages: empty package set", path)
	}
	for name, p := range l.Packages {
		if len(p.Sha256) != 64 || p.Version == "" || p.Filename == "" || strings.ContainsAny(p.Filename, "/\x00") {
			return nil, fmt.Errorf("%s: packages.%s: needs version, a 64-hex sha256 and a plain filename", path, name)
		}
	}
	return &l, nil
}

// Marshal renders the lock file (sorted keys, trailing newline).
func (l *Lockfile) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Names returns the package names, sorted.
func (l *Lockfile) Names() []string {
	names := make([]string, 0, len(l.Packages))
	for n := range l.Packages {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// PackageInputs hashes what decides the package set: distro, variant,
// packages (with arch's own), exclusions and the repos (with their
// keyrings' sha256). Overlays or postprocess changes do not need a fetch.
func PackageInputs(m *config.Manifest, arch string) string {
	// Fields added later are omitted when empty, so configs that do not
	// use them keep their value and need no new fetch.
	am := m.ForArch(arch)
	in := struct {
		Arch     string
		Distro   config.Distro
		Packages []string
		Exclude  []string
		Repos    []config.Repo `json:",omitempty"`
	}{arch, m.Distro, sortedCopy(am.Packages), sortedCopy(m.ExcludePackages), am.Repos}
	b, _ := json.Marshal(in)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

// VerifyCache checks that every locked deb is in debsDir with its sha256 and
// that the repo index is the one fetch wrote. It is what lets build run
// offline with confidence; it reads every byte, which costs ~0.5 s for 150 MB.
func (l *Lockfile) VerifyCache(debsDir string) error {
	idx, _, err := fileutil.SHA256File(filepath.Join(debsDir, "Packages"))
	if err != nil {
		return fmt.Errorf("package cache has no index (%v); run `cosa fetch`", err)
	}
	if idx != l.IndexSha256 {
		return fmt.Errorf("%s does not match the lock file; run `cosa fetch`", filepath.Join(debsDir, "Packages"))
	}
	// The hashes are computed on every core (this is on the cold build's
	// critical path: ~140 MB of .debs), then checked in name order, so the
	// error names the same package whatever the scheduling.
	names := l.Names()
	type result struct {
		sum string
		err error
	}
	results := make([]result, len(names))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.NumCPU(), len(names)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				sum, _, err := fileutil.SHA256File(filepath.Join(debsDir, l.Packages[names[i]].Filename))
				results[i] = result{sum, err}
			}
		}()
	}
	for i := range names {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, name := range names {
		p, r := l.Packages[name], results[i]
		if r.err != nil {
			return fmt.Errorf("package %s %s is not in the cache (%v); run `cosa fetch`", name, p.Version, r.err)
		}
		if r.sum != p.Sha256 {
			return fmt.Errorf("package %s: %s has sha256 %s, the lock file says %s; run `cosa fetch`", name, p.Filename, r.sum, p.Sha256)
		}
	}
	return nil
}
