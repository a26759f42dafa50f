package images

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
)

// FileSum is the sha256 and size of one file in a stored object.
type FileSum struct {
	Sha256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Partial, while Sha256 is still empty, is how far a hash that was
	// stopped got: whoever needs the sum goes on from there.
	Partial *PartialSum `json:"partial,omitempty"`
}

// PartialSum is a sha256 stopped after the first Offset bytes of a file:
// the hash's own state (crypto/sha256's MarshalBinary), and the inode and
// mtime of the file it was taken over, so that it is never resumed over
// another file that got the same object id.
type PartialSum struct {
	Offset  int64  `json:"offset"`
	State   []byte `json:"state"`
	Ino     uint64 `json:"ino"`
	MtimeNs int64  `json:"mtime_ns"`
}

// Objects never change once stored, so a file's checksum is computed at
// most once and kept beside the object in <id>.sums.json. Hashing a 10 GiB
// raw disk costs seconds even when it is mostly holes (SHA-256 has no
// shortcut for runs of zeros); every later artifact made from the same
// object skips that.
var sumsMu sync.Mutex

func (s *Store) sumsPath(id string) string { return filepath.Join(s.Dir, id+".sums.json") }

func (s *Store) readSums(id string) map[string]FileSum {
	m := map[string]FileSum{}
	if data, err := os.ReadFile(s.sumsPath(id)); err == nil {
		json.Unmarshal(data, &m) // a damaged sidecar is just a cache miss
	}
	return m
}

// Sum returns the recorded checksum of file in object id, if any. When
// there is none, the FileSum may still hold a Partial one.
func (s *Store) Sum(id, file string) (FileSum, bool) {
	sumsMu.Lock()
	defer sumsMu.Unlock()
	fs, ok := s.readSums(id)[file]
	if ok && fs.Sha256 == "" {
		return fs, false
	}
	return fs, ok
}

// SetSum records the checksum of file in object id (temp file + rename,
// so readers in other processes see the old or the new sidecar, whole).
func (s *Store) SetSum(id, file string, sum FileSum) error {
	sumsMu.Lock()
	defer sumsMu.Unlock()
	if _, err := os.Stat(s.Path(id)); err != nil {
		return err
	}
	m := s.readSums(id)
	if sum.Sha256 == "" && m[file].Sha256 != "" {
		return nil // a stopped hash never replaces a finished one
	}
	m[file] = sum
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir, ".tmp-sums-"+id+"-"+randHex(4))
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.sumsPath(id)); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
