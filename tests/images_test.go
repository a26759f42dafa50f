package tests

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/fsattr"
	"github.com/cosa-build/cosa/pkg/qemu"
)

// TestImages builds the default config with its qcow2 image and proves the
// image boots (UEFI and BIOS, under TCG when there is no KVM), then adds
// metal and metal4k from the cached tree, concurrently, and re-runs a
// saved manifest as a full cache hit.
func TestImages(t *testing.T) {
	needTools(t, "mmdebstrap", "ostree", "qemu-img", "qemu-system-x86_64", "mkfs.ext4", "mkfs.vfat", "mcopy", "grub-mkimage", "fdisk", "ssh", "ssh-keygen")
	// No cleanup beyond t.TempDir's own os.RemoveAll: a workdir must be
	// deletable as it is, although ostree marks deployments immutable.
	w := t.TempDir()
	mustCosa(t, w, "init")
	seedCache(t, w)
	r := mustCosa(t, w, "build", "--fetch")
	saveSeed(t, w)
	id := latest(t, w)
	// The stage cache holds a deployed tree; the deploy stage cleared the
	// immutable flag ostree set on it.
	filepath.WalkDir(w, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			if imm, ierr := fsattr.IsImmutable(p); imm || ierr != nil {
				t.Errorf("%s: immutable %v, %v: the workdir could not be deleted", p, imm, ierr)
			}
		}
		return nil
	})
	m, _ := readMeta(t, w, id)
	q, ok := m.Images["qemu"]
	if !ok || q.Path != "debian-ostree-"+id+"-qemu.x86_64.qcow2" {
		t.Fatalf("images.qemu = %+v", q)
	}
	arch := filepath.Join(w, "builds", id, "x86_64")
	if sum := sha256File(t, filepath.Join(arch, q.Path)); sum != q.Sha256 {
		t.Errorf("qcow2 sha256 %s, meta says %s", sum, q.Sha256)
	}
	// The default qcow2-compression: zstd-compressed clusters.
	if out, err := exec.Command("qemu-img", "info", filepath.Join(arch, q.Path)).CombinedOutput(); err != nil || !strings.Contains(string(out), "file format: qcow2") ||
		!strings.Contains(string(out), "compression type: zstd") {
		t.Errorf("qemu-img info: %v\n%s", err, out)
	}
	qemuImageTime := stepTime(r.Stderr, `image qemu: \S+ in (\S+)`)
	for _, line := range strings.Split(r.Stderr, "\n") {
		if strings.Contains(line, "] done in") {
			t.Logf("e2e: stage %s", strings.TrimSpace(line))
		}
	}

	// The qcow2 boots with UEFI and with BIOS: multi-user, login prompt,
	// no failed units, the build's commit booted, /usr read-only (the
	// config's tests/basic), all checked by cosa test.
	r = mustCosa(t, w, "test")
	if !strings.Contains(r.Stdout, "4 passed, 0 failed") {
		t.Errorf("cosa test:\n%s", r.Stdout)
	}
	for _, fw := range []string{"uefi", "bios"} {
		var res struct {
			Passed                   bool
			Kernel, MultiUser, Login float64
		}
		data, err := os.ReadFile(filepath.Join(w, "tmp", "test", "boot-"+fw, "result.json"))
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(data, &res)
		res.Kernel, res.MultiUser, res.Login = jsonFloat(data, "kernel_s"), jsonFloat(data, "multi_user_s"), jsonFloat(data, "login_s")
		t.Logf("e2e: %s boot under %s: kernel %.1fs, multi-user %.1fs, login %.1fs", fw, accel(), res.Kernel, res.MultiUser, res.Login)
	}

	// metal reuses the cached deployed tree and disk image.
	t0 := time.Now()
	r = mustCosa(t, w, "--json", "buildextend-metal")
	metalTime := time.Since(t0)
	treeCached := false
	for _, e := range eventsOf(t, r) {
		treeCached = treeCached || (e.Type == "stage-cached" && e.Message == "tree: all 7 stages cached")
	}
	if !treeCached {
		t.Errorf("buildextend-metal did not reuse the cached tree:\n%s", r.Stdout)
	}
	if res := resultOf(t, r, "buildextend-metal"); res["build"] != id || res["changed"] != true || res["platform"] != "metal" {
		t.Errorf("buildextend-metal --json result %v", res)
	} else if a := artifactOf(t, res, "metal"); sha256File(t, filepath.Join(w, a["path"].(string))) != a["sha256"] {
		t.Errorf("buildextend-metal result %v: the file's sha256 differs", a)
	}
	t.Logf("e2e: qemu image step %s; buildextend-metal %s (%.0f%%)", qemuImageTime, metalTime.Round(100*time.Millisecond),
		100*metalTime.Seconds()/qemuImageTime.Seconds())

	// Temps that runs killed inside an atomic write left: their names end
	// in a random suffix, so no later write replaces them. The forced metal
	// must clear its manifest's, and the meta.json update meta.json's.
	m, _ = readMeta(t, w, id)
	killed := []string{
		"." + strings.TrimSuffix(m.Images["metal"].Path, ".raw") + ".manifest.json.tmp-2804400802",
		".meta.json.tmp-1796317873",
	}
	for _, n := range killed {
		if err := os.WriteFile(filepath.Join(arch, n), []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// metal4k and a forced metal at the same time: both end up in meta.json.
	var wg sync.WaitGroup
	for _, args := range [][]string{{"buildextend-metal4k"}, {"buildextend-metal", "--force"}} {
		wg.Add(1)
		go func(args []string) {
			defer wg.Done()
			mustCosa(t, w, args...)
		}(args)
	}
	wg.Wait()
	m, _ = readMeta(t, w, id)
	// The forced metal re-linked the same cache object: rename(2) of one
	// link over another of the same inode leaves the temp name behind
	// unless cosa removes it. The killed runs' temps must be gone too.
	if left, _ := filepath.Glob(filepath.Join(arch, ".*.tmp*")); len(left) > 0 {
		t.Errorf("temporary files left in the build: %v", left)
	}
	for _, p := range []string{"ostree", "qemu", "metal", "metal4k"} {
		a, ok := m.Images[p]
		if !ok {
			t.Errorf("images.%s missing after concurrent buildextends: %v", p, m.Images)
			continue
		}
		if sum := sha256File(t, filepath.Join(arch, a.Path)); sum != a.Sha256 {
			t.Errorf("%s: sha256 %s, meta says %s", p, sum, a.Sha256)
		}
		// Disk images are hard links to the stage cache's objects, not
		// second copies.
		if st, err := os.Stat(filepath.Join(arch, a.Path)); err == nil && p != "ostree" {
			if n := st.Sys().(*syscall.Stat_t).Nlink; n < 2 {
				t.Errorf("%s: %d link(s); want it to share the cache object's blocks", p, n)
			}
		}
	}
	// metal4k: a GPT with 4096-byte logical sectors: the header is at LBA 1,
	// i.e. byte 4096, and fdisk reads four partitions with -b 4096.
	m4k := filepath.Join(arch, m.Images["metal4k"].Path)
	f, err := os.Open(m4k)
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 8)
	f.ReadAt(sig, 4096)
	f.Close()
	if string(sig) != "EFI PART" {
		t.Errorf("metal4k: no GPT header at byte 4096 (got %q)", sig)
	}
	out, err := exec.Command("fdisk", "-b", "4096", "-l", m4k).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Sector size (logical/physical): 4096 bytes") || strings.Count(string(out), m4k) < 5 {
		t.Errorf("metal4k fdisk -b 4096:\n%s", out)
	}

	// The saved manifest re-runs as a full cache hit and reproduces the image.
	manifests, _ := filepath.Glob(filepath.Join(arch, "*-qemu.x86_64.manifest.json"))
	if len(manifests) != 1 {
		t.Fatalf("saved qemu manifest: %v", manifests)
	}
	outDir := t.TempDir()
	r = mustCosa(t, w, "--json", "pipeline", "run", manifests[0], "--output", outDir)
	var started, cached int
	for _, ev := range eventsOf(t, r) {
		switch ev.Type {
		case "stage-start":
			started++
		case "stage-cached":
			cached++
		}
	}
	if res := resultOf(t, r, "pipeline run"); res["stages_run"] != float64(0) || res["pipelines_cached"] != float64(3) {
		t.Errorf("pipeline run --json result %v", res)
	}
	if started != 0 || cached != 3 {
		t.Errorf("pipeline run of a built manifest: %d stages started, %d pipelines cached; want 0 and 3\n%s", started, cached, r.Stdout)
	}
	if sum := sha256File(t, filepath.Join(outDir, "qemu", "disk.qcow2")); sum != q.Sha256 {
		t.Errorf("pipeline run output sha256 %s, the build's qcow2 is %s", sum, q.Sha256)
	}

	// A broken image: init=/bin/false makes the kernel panic once systemd
	// hands over. cosa test must fail with that reason, not a timeout.
	imageYAML := filepath.Join(w, "src", "config", "image.yaml")
	orig, _ := os.ReadFile(imageYAML)
	writeFile(t, imageYAML, string(orig)+"extra-kargs: [init=/bin/false]\n", 0o644)
	mustCosa(t, w, "buildextend-qemu", "--force")
	r = cosa(t, w, "test", "--bios")
	if r.Code != 1 || !strings.Contains(r.Stdout, "FAIL") || !strings.Contains(r.Stdout, "Kernel panic") || !strings.Contains(r.Stdout, "passed, ") {
		t.Errorf("cosa test on a broken image: exit %d\n%s", r.Code, r.Stdout)
	}
	writeFile(t, imageYAML, string(orig), 0o644)
	r = mustCosa(t, w, "--json", "buildextend-qemu", "--force")
	if res := resultOf(t, r, "buildextend-qemu"); res["changed"] != true || artifactOf(t, res, "qemu")["path"] != "builds/"+id+"/x86_64/"+q.Path {
		t.Errorf("buildextend-qemu --force --json result %v", res)
	}

	// Build N+1 (a new overlay file and a root password for the console
	// test), then boot N and upgrade it to N+1 over HTTP.
	cfg := filepath.Join(w, "src", "config")
	writeFile(t, filepath.Join(cfg, "overlay.d", "30-upgrade", "usr", "share", "cosa-upgrade-marker"), "n+1\n", 0o644)
	writeFile(t, filepath.Join(cfg, "postprocess", "90-root-password.sh"), "#!/bin/sh\necho root:cosa | chpasswd\n", 0o755)
	manifest := filepath.Join(cfg, "manifest.yaml")
	data, _ := os.ReadFile(manifest)
	writeFile(t, manifest, strings.Replace(string(data), "  - postprocess/20-ssh-host-keys.sh\n", "  - postprocess/20-ssh-host-keys.sh\n  - postprocess/90-root-password.sh\n", 1), 0o644)
	r = mustCosa(t, w, "build", "--json")
	id1 := latest(t, w)
	if id1 == id {
		t.Fatal("no new build")
	}
	if res := resultOf(t, r, "build"); res["build"] != id1 || res["changed"] != true || artifactOf(t, res, "qemu")["size"] == float64(0) {
		t.Errorf("build --json result %v", res)
	}
	// N+1 booted with its tests and N booted, upgraded and rebooted: two
	// VMs, at once on two CPUs.
	r = mustCosa(t, w, "test", "--uefi", "--upgrade-from", id, "basic")
	if !regexp.MustCompile(`upgrade\s+uefi\s+PASS`).MatchString(r.Stdout) || !strings.Contains(r.Stdout, "3 passed, 0 failed") {
		t.Errorf("upgrade test:\n%s", r.Stdout)
	}

	if data, err := os.ReadFile(filepath.Join(w, "tmp", "test", "upgrade-uefi", "result.json")); err == nil {
		var res struct{ Output string }
		json.Unmarshal(data, &res)
		t.Logf("e2e: upgrade %s -> %s: %s", id, id1, strings.SplitN(res.Output, "\n", 2)[0])
		// The image's path unit must rewrite grub.cfg as soon as ostree
		// deploys, not only the shutdown unit on the way down.
		if !strings.HasPrefix(res.Output, "grub.cfg regenerated after deploy") {
			t.Errorf("grub.cfg was not regenerated right after the deploy: %s", strings.SplitN(res.Output, "\n", 2)[0])
		}
	}

	// cosa run -c: an interactive login on a terminal.
	consoleLogin(t, w)

	// compress and decompress the qcow2 (gzip -1: seconds), then with
	// zstd, which cosa runs in-process on this qcow2 (its clusters are
	// already zstd, and a sample says so): the results name the files as
	// they are on disk, zstd(1) reads what cosa wrote, and each decompress
	// gives back the very file.
	var qemuSum string
	for _, c := range []struct {
		args   []string
		action string
	}{
		{[]string{"compress", "--fast"}, "compressed"}, {[]string{"decompress"}, "decompressed"},
		{[]string{"compress", "--compressor", "zstd"}, "compressed"}, {[]string{"decompress"}, "decompressed"},
	} {
		r = mustCosa(t, w, append([]string{"--json"}, append(c.args, "--artifact", "qemu")...)...)
		a := artifactOf(t, resultOf(t, r, c.args[0]), "qemu")
		p := filepath.Join(w, a["path"].(string))
		if a["action"] != c.action || sha256File(t, p) != a["sha256"] {
			t.Errorf("%s --json: qemu %v", c.args[0], a)
		}
		switch {
		case c.action == "decompressed" && qemuSum == "":
			qemuSum = a["sha256"].(string)
		case c.action == "decompressed" && a["sha256"] != qemuSum:
			t.Errorf("decompress after zstd: sha256 %v, the first decompress gave %s", a["sha256"], qemuSum)
		case strings.HasSuffix(p, ".zst"):
			if out, err := exec.Command("zstd", "-t", "-q", p).CombinedOutput(); err != nil {
				t.Errorf("zstd -t on cosa's output: %v\n%s", err, out)
			}
		}
	}

	// clean --all leaves only the config and the lock files (builds/.lock,
	// cache/objects/.lock), and the workdir can then go with a plain
	// os.RemoveAll.
	mustCosa(t, w, "clean", "--all")
	for d, want := range map[string]int{"cache": 1, "cache/objects": 1, "tmp": 0, "builds": 1} {
		if ents, err := os.ReadDir(filepath.Join(w, d)); err != nil || len(ents) != want {
			t.Errorf("%s/ after clean --all: %d entries, %v", d, len(ents), err)
		}
	}
	if err := os.RemoveAll(w); err != nil {
		t.Errorf("removing the workdir after a build: %v", err)
	}
}

func jsonFloat(data []byte, key string) float64 {
	var m map[string]any
	json.Unmarshal(data, &m)
	f, _ := m[key].(float64)
	return f
}

func accel() string {
	if qemu.KVMUsable() {
		return "KVM"
	}
	return "TCG"
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func stepTime(s, re string) time.Duration {
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	d, _ := time.ParseDuration(m[1])
	return d
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	sum, _ := testutil.FileSHA256(t, path)
	return sum
}
