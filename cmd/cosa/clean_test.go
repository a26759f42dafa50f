package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/build"
)

// cleanWorkdir is a workdir with a file in cache/, tmp/ and builds/.
func cleanWorkdir(t *testing.T) string {
	t.Helper()
	wd := initWorkdir(t)
	testutil.WriteTree(t, wd, map[string]string{
		"cache/debs/a.deb":             "deb",
		"cache/objects/0123/disk.raw":  "disk",
		"tmp/repo/config":              "[core]",
		"builds/builds.json":           `{"builds": []}`,
		"builds/1.0/x86_64/meta.json":  "{}",
		"src/config/overlay.d/.keepme": "",
	})
	return wd
}

func TestCleanCLI(t *testing.T) {
	wd := cleanWorkdir(t)
	cfg := snapshot(t, filepath.Join(wd, "src"))
	builds := snapshot(t, filepath.Join(wd, "builds"))
	cosa(t, "-C", wd, "clean").wantOK(t).wantStdout(t, "Emptied cache/, tmp/ in "+wd+"\n")
	for _, d := range []string{"cache", "tmp"} {
		if got := dirEntries(t, filepath.Join(wd, d)); len(got) != 0 {
			t.Errorf("%s/ holds %v after clean", d, got)
		}
	}
	wantUnchanged(t, "builds/ without --all", builds, snapshot(t, filepath.Join(wd, "builds")))

	cosa(t, "-C", wd, "clean", "--all").wantOK(t).wantStdout(t, "Emptied cache/, tmp/, builds/ in "+wd+"\n")
	// builds/.lock is the file clean itself held.
	if got := dirEntries(t, filepath.Join(wd, "builds")); !slices.Equal(got, []string{build.LockFile}) {
		t.Errorf("builds/ holds %v after clean --all", got)
	}
	wantUnchanged(t, "src/", cfg, snapshot(t, filepath.Join(wd, "src")))
	// The workdir still works.
	cosa(t, "-C", wd, "list").wantOK(t)
	if err := os.RemoveAll(wd); err != nil {
		t.Fatal(err)
	}
}

// clean waits for the builds/ lock like every writer, and removes nothing
// when it does not get it.
func TestCleanCLILockHeld(t *testing.T) {
	wd := cleanWorkdir(t)
	d := &build.Dir{Root: filepath.Join(wd, "builds")}
	release, err := d.Lock(context.Background(), time.Second, "test holder", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	before := snapshot(t, wd)
	cosa(t, "-C", wd, "--lock-timeout", "50ms", "clean", "--all").wantCode(t, 1).wantStdout(t, "").
		wantStderrContains(t, "timed out after 50ms waiting for lock on builds/ (held by pid ", "test holder")
	wantUnchanged(t, "workdir after a clean that did not get the lock", before, snapshot(t, wd))
}
