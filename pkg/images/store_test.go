package images

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStoreSumsSidecar(t *testing.T) {
	s := &Store{Dir: t.TempDir(), MaxSize: 1}
	if err := s.SetSum("abc", "disk.raw", FileSum{Sha256: "00", Size: 1}); err == nil {
		t.Fatal("SetSum on a missing object succeeded")
	}
	os.MkdirAll(filepath.Join(s.Dir, "abc"), 0o755)
	os.WriteFile(filepath.Join(s.Dir, "abc", "disk.raw"), []byte("x"), 0o644)
	if _, ok := s.Sum("abc", "disk.raw"); ok {
		t.Fatal("sum before it was set")
	}
	if err := s.SetSum("abc", "disk.raw", FileSum{Sha256: "aa", Size: 1}); err != nil {
		t.Fatal(err)
	}
	s.SetSum("abc", "other", FileSum{Sha256: "bb", Size: 2})
	if got, ok := s.Sum("abc", "disk.raw"); !ok || got.Sha256 != "aa" || got.Size != 1 {
		t.Fatalf("Sum = %+v %v", got, ok)
	}
	// A stopped hash is kept, is not a sum, and never replaces one.
	part := &PartialSum{Offset: 7, State: []byte("state"), Ino: 3, MtimeNs: 4}
	s.SetSum("abc", "part", FileSum{Size: 9, Partial: part})
	if got, ok := s.Sum("abc", "part"); ok || got.Partial == nil || got.Partial.Offset != 7 || string(got.Partial.State) != "state" {
		t.Fatalf("Sum of a stopped hash = %+v %v", got, ok)
	}
	s.SetSum("abc", "disk.raw", FileSum{Size: 1, Partial: part})
	if got, ok := s.Sum("abc", "disk.raw"); !ok || got.Sha256 != "aa" {
		t.Fatalf("a stopped hash replaced a sum: %+v %v", got, ok)
	}
	s.SetSum("abc", "part", FileSum{Sha256: "cc", Size: 9})
	if got, ok := s.Sum("abc", "part"); !ok || got.Sha256 != "cc" || got.Partial != nil {
		t.Fatalf("a sum did not replace a stopped hash: %+v %v", got, ok)
	}
	// A damaged sidecar is a miss, not an error.
	os.WriteFile(s.sumsPath("abc"), []byte("{not json"), 0o644)
	if _, ok := s.Sum("abc", "disk.raw"); ok {
		t.Fatal("damaged sidecar gave a sum")
	}
	s.SetSum("abc", "disk.raw", FileSum{Sha256: "aa", Size: 1})
	// Eviction takes the sidecar with the object.
	if ev, err := s.Evict(nil); err != nil || len(ev) != 1 {
		t.Fatalf("Evict = %v %v", ev, err)
	}
	if _, err := os.Stat(s.sumsPath("abc")); !os.IsNotExist(err) {
		t.Fatalf("sidecar left after eviction: %v", err)
	}
}

// A run that starts while another is active must not clean the other's
// work in progress; the first run alone does.
func TestStoreCleansOnlyWhenAlone(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	tmp := filepath.Join(s.Dir, ".tmp-inprogress")
	os.MkdirAll(tmp, 0o755)
	cleaned := 0
	a, err := s.use(func() { cleaned++ })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) || cleaned != 1 {
		t.Fatalf("first run alone did not clean (%v, %d)", err, cleaned)
	}
	os.MkdirAll(tmp, 0o755) // a's commit in progress
	b, err := s.use(func() { cleaned++ })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); err != nil || cleaned != 1 {
		t.Fatalf("second run removed the first's work in progress (%v, %d)", err, cleaned)
	}
	if b.tryExclusive() {
		t.Fatal("exclusive while another run holds the store")
	}
	a.release()
	if !b.tryExclusive() {
		t.Fatal("not exclusive once alone")
	}
	b.release()
}
