package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/events"
)

// TestSkipRules proves that what a rebuild skips is what running it would
// have made: a reused initramfs (an overlay file dracut does not read
// changed), a commit that hashes only the paths changed since the
// previous build's commit, and no new build at all when new inputs make
// the same tree (a postprocess script changed only in a comment). The
// build that skipped dracut and went over the previous commit is compared
// with `ostree diff` against a build of the latest inputs with
// COSA_NO_SKIP=1, and its image is booted once.
//
// The package cache and base root come from the run's seed (seedCache)
// when an earlier test saved one.
func TestSkipRules(t *testing.T) {
	needTools(t, "mmdebstrap", "ostree", "qemu-img", "qemu-system-x86_64", "mkfs.ext4", "mkfs.vfat", "mcopy", "grub-mkimage", "fdisk", "ssh", "ssh-keygen")
	w := t.TempDir()
	mustCosa(t, w, "init")
	// The first build makes no image, and the stage cache keeps only the
	// newest image: a full set of stage objects is several GB.
	first := []string{"--json", "build", "--skip-image", "--fetch"}
	seedCache(t, w)
	imageYAML := filepath.Join(w, "src", "config", "image.yaml")
	data, err := os.ReadFile(imageYAML)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, imageYAML, string(data)+"cache-size: 1\n", 0o644)
	repo := "--repo=" + filepath.Join(w, "tmp", "repo")
	cfg := filepath.Join(w, "src", "config")
	appendTo := func(rel, line string) {
		t.Helper()
		p := filepath.Join(cfg, rel)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := os.Stat(p)
		writeFile(t, p, string(data)+line+"\n", info.Mode().Perm())
	}
	// initramfs reports how the build made each initramfs: "dracut" or
	// "reused"; stages counts the pipeline stages that ran.
	initramfs := func(evs []events.Event) (how []string, stages int) {
		for _, e := range evs {
			switch {
			case e.Type == events.StepFinish && strings.HasPrefix(e.Step, "compose: initramfs for "):
				if strings.Contains(e.Step, "reused") {
					how = append(how, "reused")
				} else {
					how = append(how, "dracut")
				}
			case e.Type == events.StageFinish:
				stages++
			}
		}
		return how, stages
	}
	// over reports the build whose commit the build's commit went over,
	// hashing only the changed paths; "" if it hashed the whole tree.
	over := func(evs []events.Event) string {
		for _, e := range evs {
			if e.Type == events.StepFinish && strings.HasPrefix(e.Step, "commit: ostree commit to ") {
				if _, after, ok := strings.Cut(e.Step, ", over build "); ok {
					return strings.Fields(after)[0]
				}
			}
		}
		return ""
	}
	logTimes := func(name string, evs []events.Event) {
		var b strings.Builder
		for _, e := range evs {
			if e.Type == events.StepFinish || e.Type == events.StageFinish {
				what := e.Step
				if what == "" {
					what = e.Pipeline + " " + e.Stage
				}
				fmt.Fprintf(&b, "  %6.1fs %s\n", e.DurationS, what)
			}
		}
		t.Logf("e2e: %s, step times:\n%s", name, b.String())
	}

	// 1. The first build makes and caches the initramfs.
	r := mustCosa(t, w, first...)
	saveSeed(t, w)
	id1 := latest(t, w)
	m1, _ := readMeta(t, w, id1)
	evs := eventsOf(t, r)
	logTimes("cold build", evs)
	if how, _ := initramfs(evs); len(how) != 1 || how[0] != "dracut" {
		t.Fatalf("cold build initramfs: %v, want one dracut run", how)
	}
	// The cold build's dracut copies its files in-process (the preload of
	// pkg/compose/fastcopy.go) and asks the program of fastldd.go, not the
	// ldd script, for libraries (make deps installs the C compiler that
	// builds both); the COSA_NO_SKIP build's (step 4) runs as dracut
	// comes, and step 4 wants the same tree: the same initramfs to the byte.
	fastPaths := func(evs []events.Event) string {
		for _, e := range evs {
			if e.Type == events.StepFinish && strings.HasPrefix(e.Step, "compose: initramfs for ") && !strings.Contains(e.Step, ": reused") && strings.HasSuffix(e.Step, ")") {
				if i := strings.LastIndex(e.Step, " ("); i > 0 {
					return e.Step[i+2 : len(e.Step)-1]
				}
			}
		}
		return ""
	}
	if got := fastPaths(evs); got != "in-process copies, direct ldd" {
		t.Errorf("cold build: dracut ran with %q, want the in-process copies and the direct ldd", got)
	}
	if b := over(evs); b != "" {
		t.Errorf("cold build: committed over build %s", b)
	}

	// 2. An overlay file dracut does not read: the initramfs is reused, the
	// tree is new.
	appendTo("overlay.d/10-network/usr/lib/systemd/network/80-cosa-dhcp.network", "# skip test: changed")
	r = mustCosa(t, w, "--json", "build")
	id2 := latest(t, w)
	m2, _ := readMeta(t, w, id2)
	evs = eventsOf(t, r)
	logTimes("rebuild after one overlay file changed", evs)
	if how, _ := initramfs(evs); len(how) != 1 || how[0] != "reused" {
		t.Fatalf("overlay rebuild initramfs: %v, want it reused", how)
	}
	if b := over(evs); b != id1 {
		t.Errorf("overlay rebuild: committed over %q, want over build %s", b, id1)
	}
	if id2 == id1 || m2.OSTreeContentChecksum == m1.OSTreeContentChecksum {
		t.Fatalf("overlay rebuild %s: content %s, the same tree as %s", id2, m2.OSTreeContentChecksum, id1)
	}
	if d := ostreeCmd(t, "diff", repo, m1.OSTreeCommit, m2.OSTreeCommit); strings.TrimSpace(d) != "M    /usr/lib/systemd/network/80-cosa-dhcp.network" {
		t.Errorf("overlay rebuild vs cold build:\n%s\nwant only the changed overlay file", d)
	}

	// 3. A comment in a postprocess script: new inputs, the same tree. No
	// new build: build 2 stays the latest, the config's ref on its commit.
	appendTo("postprocess/20-ssh-host-keys.sh", "# skip test: a comment changes no file")
	r = mustCosa(t, w, "--json", "build")
	evs = eventsOf(t, r)
	logTimes("rebuild with an unchanged tree", evs)
	how, stages := initramfs(evs)
	if len(how) != 1 || how[0] != "reused" || stages != 0 || over(evs) != id2 {
		t.Errorf("unchanged-tree rebuild: initramfs %v, %d pipeline stages ran, committed over %q; want it reused, none, over %s", how, stages, over(evs), id2)
	}
	if res := resultOf(t, r, "build"); res["build"] != id2 || res["changed"] != false || res["commit"] != m2.OSTreeCommit ||
		!strings.Contains(r.Stderr, "No changes in the tree since build "+id2) {
		t.Fatalf("unchanged-tree rebuild: result %v; want build %s unchanged\nstderr: %s", res, id2, r.Stderr)
	}
	if ids := readIndex(t, w).IDs(); len(ids) != 2 || latest(t, w) != id2 {
		t.Fatalf("unchanged-tree rebuild: builds %v, latest %s", ids, latest(t, w))
	}
	manifest, err := os.ReadFile(filepath.Join(cfg, "manifest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ref := regexp.MustCompile(`(?m)^ref: (\S+)$`).FindSubmatch(manifest)
	if ref == nil {
		t.Fatal("no ref: in the default manifest")
	}
	if got := ostreeCmd(t, "rev-parse", repo, string(ref[1])); strings.TrimSpace(got) != m2.OSTreeCommit {
		t.Errorf("config ref after the unchanged-tree rebuild: %s, want build %s's %s", got, id2, m2.OSTreeCommit)
	}

	// 4. The same inputs with nothing skipped: dracut runs (without the
	// in-process copies and the direct ldd), a new commit, and the same tree to the byte
	// (ostree diff compares content, modes, owners and xattrs).
	t.Setenv("COSA_NO_SKIP", "1")
	r = mustCosa(t, w, "--json", "build", "--force", "--skip-image")
	id4 := latest(t, w)
	m4, _ := readMeta(t, w, id4)
	evs = eventsOf(t, r)
	logTimes("the same inputs, COSA_NO_SKIP=1 (no image)", evs)
	if how, _ := initramfs(evs); len(how) != 1 || how[0] != "dracut" || over(evs) != "" || fastPaths(evs) != "" {
		t.Fatalf("COSA_NO_SKIP build: initramfs %v (fast paths %q), committed over %q; want a dracut run as dracut comes and the whole tree hashed", how, fastPaths(evs), over(evs))
	}
	if id4 == id2 || m4.OSTreeCommit == m2.OSTreeCommit {
		t.Fatalf("COSA_NO_SKIP build %s: commit %s, the same as build %s", id4, m4.OSTreeCommit, id2)
	}
	if d := ostreeCmd(t, "diff", repo, m2.OSTreeCommit, m4.OSTreeCommit); strings.TrimSpace(d) != "" {
		t.Errorf("the build that skipped dracut and hashing the unchanged paths differs from one that did not:\n%s", d)
	}
	if m4.OSTreeContentChecksum != m2.OSTreeContentChecksum {
		t.Errorf("content checksum %s (skipped) vs %s (not skipped)", m2.OSTreeContentChecksum, m4.OSTreeContentChecksum)
	}
	os.Unsetenv("COSA_NO_SKIP")

	// 5. The image of the build that skipped both boots: multi-user, login,
	// no failed units, its commit booted, the config's tests pass.
	r = mustCosa(t, w, "test", "--build", id2, "--uefi")
	if !strings.Contains(r.Stdout, " passed, 0 failed") {
		t.Errorf("cosa test --build %s --uefi:\n%s", id2, r.Stdout)
	}
}
