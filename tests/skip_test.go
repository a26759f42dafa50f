package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/events"
)

// TestSkipRules proves the two steps a rebuild skips produce what running
// them would have: a reused initramfs (an overlay file dracut does not
// read changed) and a reused commit with its cached image (a postprocess
// script changed only in a comment, so the tree is the same). The build
// that skipped both is compared with `ostree diff` against a build of the
// same inputs with COSA_NO_SKIP=1, and its image is booted once.
//
// COSA_E2E_CACHE may name a cache/ directory holding debs, apt and the lock
// file of an earlier `cosa fetch` of the default config: it is hard-linked
// in and nothing is fetched. Without it, the first build fetches.
func TestSkipRules(t *testing.T) {
	needTools(t, "mmdebstrap", "ostree", "qemu-img", "qemu-system-x86_64", "mkfs.ext4", "mkfs.vfat", "mcopy", "grub-mkimage", "fdisk", "ssh", "ssh-keygen")
	w := t.TempDir()
	mustCosa(t, w, "init")
	// The first build makes no image, and the stage cache keeps only the
	// newest image: a full set of stage objects is several GB.
	first := []string{"--json", "build", "--skip-image"}
	if seed := os.Getenv("COSA_E2E_CACHE"); seed != "" {
		for _, x := range []string{"debs", "apt", "manifest-lock.x86_64.json"} {
			if out, err := exec.Command("cp", "-al", filepath.Join(seed, x), filepath.Join(w, "cache", x)).CombinedOutput(); err != nil {
				t.Fatalf("seeding the package cache: %v\n%s", err, out)
			}
		}
	} else {
		first = append(first, "--fetch")
	}
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
	id1 := latest(t, w)
	m1, _ := readMeta(t, w, id1)
	evs := eventsOf(t, r)
	logTimes("cold build", evs)
	if how, _ := initramfs(evs); len(how) != 1 || how[0] != "dracut" {
		t.Fatalf("cold build initramfs: %v, want one dracut run", how)
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
	if id2 == id1 || m2.OSTreeContentChecksum == m1.OSTreeContentChecksum {
		t.Fatalf("overlay rebuild %s: content %s, the same tree as %s", id2, m2.OSTreeContentChecksum, id1)
	}
	if d := ostreeCmd(t, "diff", repo, m1.OSTreeCommit, m2.OSTreeCommit); strings.TrimSpace(d) != "M    /usr/lib/systemd/network/80-cosa-dhcp.network" {
		t.Errorf("overlay rebuild vs cold build:\n%s\nwant only the changed overlay file", d)
	}

	// 3. A comment in a postprocess script: new inputs, the same tree. The
	// commit of build 2 is reused, and every image pipeline is a cache hit.
	appendTo("postprocess/20-ssh-host-keys.sh", "# skip test: a comment changes no file")
	r = mustCosa(t, w, "--json", "build")
	id3 := latest(t, w)
	m3, _ := readMeta(t, w, id3)
	evs = eventsOf(t, r)
	logTimes("rebuild with an unchanged tree", evs)
	how, stages := initramfs(evs)
	if len(how) != 1 || how[0] != "reused" || stages != 0 {
		t.Errorf("unchanged-tree rebuild: initramfs %v, %d pipeline stages ran; want it reused and none", how, stages)
	}
	if id3 == id2 || m3.RpmOstreeInputHash == m2.RpmOstreeInputHash || m3.OSTreeCommit != m2.OSTreeCommit || m3.OSTreeVersion != id2 {
		t.Fatalf("unchanged-tree rebuild %s: commit %s version %s; want build %s's commit %s", id3, m3.OSTreeCommit, m3.OSTreeVersion, id2, m2.OSTreeCommit)
	}
	if q2, q3 := m2.Images["qemu"], m3.Images["qemu"]; q3.Sha256 != q2.Sha256 || q3.Sha256 == "" {
		t.Errorf("unchanged-tree rebuild qemu image %s, build %s's %s", q3.Sha256, id2, q2.Sha256)
	}
	if got := ostreeCmd(t, "rev-parse", repo, "cosa/builds/"+id3+"/x86_64"); strings.TrimSpace(got) != m3.OSTreeCommit {
		t.Errorf("build ref of %s: %s, meta.json says %s", id3, got, m3.OSTreeCommit)
	}

	// 4. The same inputs with nothing skipped: dracut runs, a new commit,
	// and the same tree to the byte (ostree diff compares content, modes,
	// owners and xattrs).
	t.Setenv("COSA_NO_SKIP", "1")
	r = mustCosa(t, w, "--json", "build", "--force", "--skip-image")
	id4 := latest(t, w)
	m4, _ := readMeta(t, w, id4)
	evs = eventsOf(t, r)
	logTimes("the same inputs, COSA_NO_SKIP=1 (no image)", evs)
	if how, _ := initramfs(evs); len(how) != 1 || how[0] != "dracut" {
		t.Fatalf("COSA_NO_SKIP build initramfs: %v, want a dracut run", how)
	}
	if m4.OSTreeCommit == m3.OSTreeCommit || m4.RpmOstreeInputHash != m3.RpmOstreeInputHash {
		t.Fatalf("COSA_NO_SKIP build %s: commit %s, input hash %s (build %s: %s, %s)", id4, m4.OSTreeCommit, m4.RpmOstreeInputHash, id3, m3.OSTreeCommit, m3.RpmOstreeInputHash)
	}
	if d := ostreeCmd(t, "diff", repo, m3.OSTreeCommit, m4.OSTreeCommit); strings.TrimSpace(d) != "" {
		t.Errorf("the build that skipped dracut and the commit differs from one that did not:\n%s", d)
	}
	if m4.OSTreeContentChecksum != m3.OSTreeContentChecksum {
		t.Errorf("content checksum %s (skipped) vs %s (not skipped)", m3.OSTreeContentChecksum, m4.OSTreeContentChecksum)
	}
	os.Unsetenv("COSA_NO_SKIP")

	// 5. The image of the build that skipped both boots: multi-user, login,
	// no failed units, its commit booted, the config's tests pass.
	r = mustCosa(t, w, "test", "--build", id3, "--uefi")
	if !strings.Contains(r.Stdout, " passed, 0 failed") {
		t.Errorf("cosa test --build %s --uefi:\n%s", id3, r.Stdout)
	}
}
