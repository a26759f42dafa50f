package prune

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosa-build/cosa/pkg/build"
)

// setupBuilds makes builds/ with b1..b5 indexed (b5 newest), "stable" on
// b2, latest -> b5, and a directory for every build except those missing.
func setupBuilds(t *testing.T, missing ...string) *build.Dir {
	t.Helper()
	d, err := build.Open(filepath.Join(t.TempDir(), "builds"))
	if err != nil {
		t.Fatal(err)
	}
	d.LockWait = io.Discard
	idx := build.NewIndex()
	for _, id := range []string{"b1", "b2", "b3", "b4", "b5"} {
		idx.Insert(id, "x86_64")
		if !slices.Contains(missing, id) {
			os.MkdirAll(d.BuildDir(id, "x86_64"), 0o755)
			os.WriteFile(filepath.Join(d.BuildDir(id, "x86_64"), "meta.json"), []byte("{}\n"), 0o644)
		}
	}
	idx.SetTag("stable", "b2", "", time.Unix(0, 0))
	if err := d.WriteIndex(idx); err != nil {
		t.Fatal(err)
	}
	if err := d.SetLatest("b5"); err != nil {
		t.Fatal(err)
	}
	return d
}

func dirNames(t *testing.T, root string) []string {
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestExecute(t *testing.T) {
	d := setupBuilds(t)
	// An interrupted earlier prune left this behind.
	os.MkdirAll(filepath.Join(d.Root, ".deleted-b0-123", "x86_64"), 0o755)

	var refsRemoved []string
	removeRefs := func(id string) error {
		// The ref goes first: at that point the build is still indexed.
		idx, _ := d.ReadIndex()
		if idx.Find(id) == nil {
			t.Errorf("removeRefs(%s) called after the index was written", id)
		}
		refsRemoved = append(refsRemoved, id)
		return nil
	}
	if err := Execute(context.Background(), d, []string{"b5", "b3", "b1"}, removeRefs); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(refsRemoved, []string{"b5", "b3", "b1"}) {
		t.Errorf("refs removed for %v", refsRemoved)
	}
	idx, err := d.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	if got := idx.IDs(); !slices.Equal(got, []string{"b4", "b2"}) {
		t.Errorf("builds.json ids = %v", got)
	}
	if len(idx.Tags) != 1 || idx.Tags[0].Target != "b2" {
		t.Errorf("tags = %+v", idx.Tags)
	}
	if latest, _ := d.Latest(); latest != "b4" {
		t.Errorf("latest = %q, want b4", latest)
	}
	if got := dirNames(t, d.Root); !slices.Equal(got, []string{"b2", "b4"}) {
		t.Errorf("directories = %v, want only b2 b4 (no .deleted-*)", got)
	}
}

func TestExecuteRefusesTaggedAndStopsOnRefError(t *testing.T) {
	d := setupBuilds(t)
	if err := Execute(context.Background(), d, []string{"b2"}, nil); err == nil || !strings.Contains(err.Error(), "tagged stable") {
		t.Errorf("err = %v", err)
	}
	boom := errors.New("ostree said no")
	err := Execute(context.Background(), d, []string{"b3", "b1"}, func(string) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("err = %v", err)
	}
	// Nothing was touched: the ref removal failed before the index write.
	idx, _ := d.ReadIndex()
	if len(idx.Builds) != 5 || len(dirNames(t, d.Root)) != 5 {
		t.Errorf("state changed after a failed removeRefs: %v %v", idx.IDs(), dirNames(t, d.Root))
	}
}

func TestExecuteLastBuildClearsLatest(t *testing.T) {
	d, _ := build.Open(t.TempDir())
	idx := build.NewIndex()
	idx.Insert("only", "x86_64")
	os.MkdirAll(d.BuildDir("only", "x86_64"), 0o755)
	d.WriteIndex(idx)
	d.SetLatest("only")
	if err := Execute(context.Background(), d, []string{"only"}, nil); err != nil {
		t.Fatal(err)
	}
	if latest, err := d.Latest(); latest != "" || err != nil {
		t.Errorf("latest = %q, %v", latest, err)
	}
	if _, err := os.Lstat(filepath.Join(d.Root, "only")); !os.IsNotExist(err) {
		t.Errorf("build dir still there: %v", err)
	}
}

func TestRun(t *testing.T) {
	// b4 is listed but its directory is gone.
	d := setupBuilds(t, "b4")

	remove, keep, err := Run(context.Background(), d, Options{KeepLastN: 2, DryRun: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(remove, []string{"b1"}) || !slices.Equal(keep, []string{"b5", "b4", "b3", "b2"}) {
		t.Errorf("dry run plan: remove %v keep %v", remove, keep)
	}
	if got := dirNames(t, d.Root); len(got) != 4 {
		t.Errorf("dry run changed the disk: %v", got)
	}

	if _, _, err := Run(context.Background(), d, Options{KeepLastN: 1}, nil); err != nil {
		t.Fatal(err)
	}
	idx, _ := d.ReadIndex()
	if got := idx.IDs(); !slices.Equal(got, []string{"b5", "b4", "b2"}) {
		t.Errorf("builds.json = %v (b4 missing on disk must stay listed)", got)
	}
	if got := dirNames(t, d.Root); !slices.Equal(got, []string{"b2", "b5"}) {
		t.Errorf("directories = %v", got)
	}
	if latest, _ := d.Latest(); latest != "b5" {
		t.Errorf("latest = %q", latest)
	}
}
