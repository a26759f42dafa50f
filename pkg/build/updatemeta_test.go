package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
)

// Several buildextend-* processes add their own images entry at the same
// time; none may lose another's.
func TestUpdateMetaConcurrentWritersKeepAllImages(t *testing.T) {
	root := t.TempDir()
	id, arch := "12.20261122.dev.1", "x86_64"
	base, _ := Open(root)
	m := realisticMeta(id)
	delete(m.Images, "qemu")
	if err := base.WriteMeta(id, arch, m); err != nil {
		t.Fatal(err)
	}

	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := &Dir{Root: root, LockWait: io.Discard} // a separate Dir, like a separate process
			name := fmt.Sprintf("platform%d", i)
			errs <- d.UpdateMeta(context.Background(), id, arch, func(m *Meta) error {
				m.Images[name] = Artifact{Path: name + ".img", Sha256: hex64(name), Size: int64(i + 1)}
				return nil
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	got, err := base.ReadMeta(id, arch)
	if err != nil {
		t.Fatal(err)
	}
	for i := range writers {
		if a, ok := got.Images[fmt.Sprintf("platform%d", i)]; !ok || a.Size != int64(i+1) {
			t.Errorf("images.platform%d lost: %+v", i, got.Images)
		}
	}
	if _, ok := got.Images["ostree"]; !ok || len(got.Images) != writers+1 {
		t.Errorf("images = %v", got.Images)
	}
}

func TestUpdateMetaErrorsWriteNothing(t *testing.T) {
	d, _ := Open(t.TempDir())
	d.LockWait = io.Discard
	id, arch := "a", "x86_64"
	if err := d.WriteMeta(id, arch, realisticMeta(id)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := d.UpdateMeta(context.Background(), id, arch, func(m *Meta) error {
		m.Summary = "changed"
		return boom
	}); !errors.Is(err, boom) {
		t.Errorf("err = %v", err)
	}
	if err := d.UpdateMeta(context.Background(), id, arch, func(m *Meta) error {
		m.OSTreeCommit = "short"
		return nil
	}); err == nil {
		t.Error("UpdateMeta wrote an invalid meta")
	}
	got, _ := d.ReadMeta(id, arch)
	if got.Summary != realisticMeta(id).Summary || got.OSTreeCommit != realisticMeta(id).OSTreeCommit {
		t.Errorf("meta changed: %+v", got)
	}
	if err := d.UpdateMeta(context.Background(), "missing", arch, func(*Meta) error { return nil }); err == nil {
		t.Error("UpdateMeta on a missing build succeeded")
	}
}
