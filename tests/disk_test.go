package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/prune"
)

// Three builds that each change one overlay file: after each, cache/objects
// holds only what the newest build's images were made from (the older
// builds' objects were evicted), every build's artifacts still match their
// meta.json, no two builds share a file, and pruning one build leaves the
// others whole. A buildextend of the newest build reuses its cached tree.
func TestEvictionKeepsBuildsReadable(t *testing.T) {
	needTools(t, "mmdebstrap", "ostree", "qemu-img", "mkfs.ext4", "mkfs.vfat", "mcopy", "grub-mkimage", "fdisk")
	w := t.TempDir()
	mustCosa(t, w, "init")
	seedCache(t, w)
	changed := filepath.Join(w, "src", "config", "overlay.d", "10-network", "usr", "lib", "systemd", "network", "80-cosa-dhcp.network")
	orig, err := os.ReadFile(changed)
	if err != nil {
		t.Fatal(err)
	}
	d := &build.Dir{Root: filepath.Join(w, "builds")}
	objects := filepath.Join(w, "cache", "objects")
	var ids []string
	for i := 0; i < 3; i++ {
		if i > 0 {
			writeFile(t, changed, string(orig)+fmt.Sprintf("# disk e2e change %d\n", i), 0o644)
		}
		mustCosa(t, w, "build", "--fetch", "--skip-prune")
		if i == 0 {
			saveSeed(t, w)
		}
		ids = append(ids, latest(t, w))
		// From the second build on, the qcow2 writer takes the clusters
		// the last image holds unchanged (most of them).
		if i > 0 {
			log, _ := os.ReadFile(filepath.Join(w, "tmp", "logs", "build.log"))
			m := regexp.MustCompile(`qcow2: (\d+) clusters with data: (\d+) reused, (\d+) compressed`).FindSubmatch(log)
			if m == nil {
				t.Fatalf("build %d: no qcow2 writer line in its log:\n%s", i+1, log)
			}
			all, reused, compressed := atoi(t, string(m[1])), atoi(t, string(m[2])), atoi(t, string(m[3]))
			t.Logf("e2e: build %d qcow2: %d clusters, %d reused, %d compressed", i+1, all, reused, compressed)
			if reused < all*8/10 || compressed == 0 {
				t.Errorf("build %d: qcow2 reused %d of %d clusters and compressed %d; want most reused and the changed ones compressed", i+1, reused, all, compressed)
			}
		}
		checkStore(t, d, objects, ids)
		for _, id := range ids {
			checkArtifacts(t, w, id)
		}
	}
	checkNoSharedFiles(t, w, ids)

	// The newest build's tree and raw disk are still cached: metal is the
	// raw disk, made without running a stage.
	r := mustCosa(t, w, "--json", "buildextend-metal")
	for _, ev := range eventsOf(t, r) {
		if ev.Type == events.StageStart {
			t.Errorf("buildextend-metal of the newest build ran stage %s: its objects were evicted", ev.Stage)
		}
	}
	checkArtifacts(t, w, ids[2])
	// The newest qcow2, made mostly of the last one's clusters, holds the
	// same disk as the raw metal image.
	m2, _ := readMeta(t, w, ids[2])
	arch2 := filepath.Join(w, "builds", ids[2], "x86_64")
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", filepath.Join(arch2, m2.Images["metal"].Path),
		filepath.Join(arch2, m2.Images["qemu"].Path)).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare metal qemu of build %s: %v\n%s", ids[2], err, out)
	}

	// Pruning the middle build (and, with it, evicting anything only it
	// named) leaves the other two whole.
	mustCosa(t, w, "prune", "--build", ids[1])
	checkStore(t, d, objects, []string{ids[0], ids[2]})
	for _, id := range []string{ids[0], ids[2]} {
		checkArtifacts(t, w, id)
	}
	// The qcow2 every build keeps is sound.
	m, _ := readMeta(t, w, ids[0])
	q := filepath.Join(w, "builds", ids[0], "x86_64", m.Images["qemu"].Path)
	if out, err := exec.Command("qemu-img", "check", q).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check %s: %v\n%s", q, err, out)
	}
}

// checkStore: every object in the store is named by the newest build's
// manifests, and none named only by an older build is left.
func checkStore(t *testing.T, d *build.Dir, objects string, ids []string) {
	t.Helper()
	newest, err := prune.BuildObjects(d, ids[len(ids)-1])
	if err != nil {
		t.Fatal(err)
	}
	older := prune.ObjectsOf(d, ids[:len(ids)-1])
	entries, err := os.ReadDir(objects)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		n++
		if older[name] && !newest[name] {
			t.Errorf("object %s of a superseded build is still stored", name[:12])
		}
		if !newest[name] {
			t.Errorf("object %s is not the newest build's", name[:12])
		}
	}
	if n == 0 {
		t.Error("the newest build's objects were evicted too")
	}
}

// checkArtifacts: each artifact of build id has the size and sha256 its
// meta.json records, and mode 0644.
func checkArtifacts(t *testing.T, w, id string) {
	t.Helper()
	m, _ := readMeta(t, w, id)
	if len(m.Images) == 0 {
		t.Fatalf("%s: no images in meta.json", id)
	}
	for name, a := range m.Images {
		p := filepath.Join(w, "builds", id, "x86_64", a.Path)
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s %s: %v", id, name, err)
			continue
		}
		if st.Size() != a.Size || st.Mode().Perm() != 0o644 {
			t.Errorf("%s %s: size %d mode %v, meta says %d", id, name, st.Size(), st.Mode().Perm(), a.Size)
		}
		if sum := sha256File(t, p); sum != a.Sha256 {
			t.Errorf("%s %s: sha256 %s, meta says %s", id, name, sum, a.Sha256)
		}
	}
}

// checkNoSharedFiles: no file of one build is a hard link of another
// build's, so changing or deleting one cannot touch the other.
func checkNoSharedFiles(t *testing.T, w string, ids []string) {
	t.Helper()
	seen := map[uint64]string{}
	for _, id := range ids {
		files, _ := filepath.Glob(filepath.Join(w, "builds", id, "x86_64", "*"))
		for _, f := range files {
			st, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			ino := st.Sys().(*syscall.Stat_t).Ino
			if other, ok := seen[ino]; ok && other != id {
				t.Errorf("%s shares its inode with build %s", f, other)
			}
			seen[ino] = id
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
