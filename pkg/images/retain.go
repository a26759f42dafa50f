package images

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// ManifestObjects is every object id a manifest can leave in the store:
// the id of each of its stages (only checkpoints and pipeline ends are
// ever stored, but any of them may be, depending on the engine version
// that ran it).
func ManifestObjects(m *Manifest) (map[string]bool, error) {
	ids, err := m.IDs()
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, pids := range ids {
		for _, id := range pids {
			set[id] = true
		}
	}
	return set, nil
}

// removeObject takes object id out of the store so that an interruption
// at any point leaves it either whole under its name or gone: the
// checksum sidecar goes first (an object without one is only a cache
// miss, while a sidecar outliving its object could vouch for a different
// object stored later under the id), then the tree leaves its name in one
// rename and is deleted as a .tmp- leftover, which Clean finishes off if
// this process dies.
func (s *Store) removeObject(id string) error {
	gone, err := s.detachObject(id)
	if err != nil || gone == "" {
		return err
	}
	return fileutil.RemoveAll(gone)
}

// detachObject is the first half of removeObject: it returns the .tmp-
// name the object now has ("" if there was none), for the caller to
// delete.
func (s *Store) detachObject(id string) (string, error) {
	if err := os.Remove(s.sumsPath(id)); err != nil && !os.IsNotExist(err) {
		return "", err
	}
	gone := filepath.Join(s.Dir, ".tmp-evict-"+id+"-"+randHex(4))
	if err := os.Rename(s.Path(id), gone); err != nil {
		if os.IsNotExist(err) {
			return "", nil
		}
		return "", err
	}
	return gone, nil
}

// EvictObjects removes the objects in drop that are stored, and returns
// their ids, sorted. It needs the store to itself: when any engine run
// (another build, a buildextend, a pipeline run) holds the store, it
// removes nothing and reports busy, because that run may be reading any
// object; the next call retries. Files hard-linked out of an object (the
// image artifacts in builds/) keep their data: eviction only unlinks.
func (s *Store) EvictObjects(drop map[string]bool) (evicted []string, busy bool, err error) {
	if len(drop) == 0 {
		return nil, false, nil
	}
	release, busy, err := s.TryLockExclusive()
	if err != nil || busy {
		return nil, busy, err
	}
	defer release()
	s.Clean()
	ids := make([]string, 0, len(drop))
	for id := range drop {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var gone []string
	for _, id := range ids {
		if !validObjectID(id) {
			continue
		}
		if _, err := os.Lstat(s.Path(id)); err != nil {
			continue
		}
		g, err := s.detachObject(id)
		if err != nil {
			return evicted, false, err
		}
		if g != "" {
			gone = append(gone, g)
		}
		evicted = append(evicted, id)
	}
	// Out of the store's namespace already; deleted side by side: a raw
	// disk's blocks (kernel time freeing and discarding them) and a
	// deployed tree's 30,000 names each take a while. A rebuild's
	// eviction of three objects: 1.0 to 1.2 s one after the other, 0.8
	// to 1.0 s side by side.
	errs := make([]error, len(gone))
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(2, runtime.NumCPU()))
	for i, g := range gone {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = fileutil.RemoveAll(g)
		}()
	}
	wg.Wait()
	return evicted, false, errors.Join(errs...)
}

// validObjectID keeps an id read from a build's manifest from naming
// anything but an object (the lock, a sidecar, a path elsewhere): ids are
// sha256 in hex.
func validObjectID(id string) bool {
	b, err := hex.DecodeString(id)
	return err == nil && len(b) == 32
}
