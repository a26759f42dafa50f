package tests

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosa-build/cosa/pkg/qemu"
)

// bootCheckUnit runs once the system is up and prints what the test needs
// to the serial console: the system state, whether /usr is read-only, and
// the booted deployment. The test adds it to the config as an overlay, the
// way a user would add any unit.
const bootCheckUnit = `[Unit]
Description=cosa boot check (test)
After=multi-user.target

[Service]
Type=simple
ExecStart=/usr/libexec/cosa-boot-check
StandardOutput=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
`

const bootCheckScript = `#!/bin/sh
state=$(systemctl is-system-running --wait)
echo "COSA-CHECK state=$state"
if touch /usr/.cosa-rw-test 2>/dev/null; then echo "COSA-CHECK usr=rw"; rm -f /usr/.cosa-rw-test; else echo "COSA-CHECK usr=ro"; fi
ostree admin status | sed -n 's/^\* [^ ]* \([0-9a-f]\{64\}\)\.[0-9]*.*/COSA-CHECK booted=\1/p'
systemctl --failed --no-legend --plain | sed 's/^/COSA-CHECK failed-unit: /'
echo COSA-CHECK-END
`

var failRE = regexp.MustCompile(`Kernel panic[^\n]*|emergency mode|Failed to start[^\n]*|Give root password`)

// TestImages builds the default config with its qcow2 image and proves the
// image boots (UEFI and BIOS, under TCG when there is no KVM), then adds
// metal and metal4k from the cached tree, concurrently, and re-runs a
// saved manifest as a full cache hit.
func TestImages(t *testing.T) {
	needTools(t, "mmdebstrap", "ostree", "qemu-img", "qemu-system-x86_64", "mkfs.ext4", "mkfs.vfat", "mcopy", "grub-mkimage", "fdisk")
	w := t.TempDir()
	mustCosa(t, w, "init")
	cfg := filepath.Join(w, "src", "config")
	writeFile(t, filepath.Join(cfg, "overlay.d", "90-boot-check", "usr", "lib", "systemd", "system", "cosa-boot-check.service"), bootCheckUnit, 0o644)
	writeFile(t, filepath.Join(cfg, "overlay.d", "90-boot-check", "usr", "libexec", "cosa-boot-check"), bootCheckScript, 0o755)
	manifest := filepath.Join(cfg, "manifest.yaml")
	data, _ := os.ReadFile(manifest)
	writeFile(t, manifest, strings.Replace(string(data), "    - ssh.service\n", "    - ssh.service\n    - cosa-boot-check.service\n", 1), 0o644)

	r := mustCosa(t, w, "build", "--fetch")
	id := latest(t, w)
	m, _ := readMeta(t, w, id)
	q, ok := m.Images["qemu"]
	if !ok || q.Path != "debian-ostree-"+id+"-qemu.x86_64.qcow2" {
		t.Fatalf("images.qemu = %+v", q)
	}
	arch := filepath.Join(w, "builds", id, "x86_64")
	if sum := sha256File(t, filepath.Join(arch, q.Path)); sum != q.Sha256 {
		t.Errorf("qcow2 sha256 %s, meta says %s", sum, q.Sha256)
	}
	if out, err := exec.Command("qemu-img", "info", filepath.Join(arch, q.Path)).CombinedOutput(); err != nil || !strings.Contains(string(out), "file format: qcow2") {
		t.Errorf("qemu-img info: %v\n%s", err, out)
	}
	qemuImageTime := stepTime(r.Stderr, `image qemu: \S+ in (\S+)`)

	for _, fw := range []qemu.Firmware{qemu.UEFI, qemu.BIOS} {
		t.Run("boot-"+string(fw), func(t *testing.T) {
			bootAndCheck(t, filepath.Join(arch, q.Path), fw, m.OSTreeCommit)
		})
	}

	// metal reuses the cached deployed tree and disk image.
	t0 := time.Now()
	r = mustCosa(t, w, "buildextend-metal")
	metalTime := time.Since(t0)
	if !strings.Contains(r.Stderr, "tree: all 7 stages cached") {
		t.Errorf("buildextend-metal did not reuse the cached tree:\n%s", r.Stderr)
	}
	t.Logf("e2e: qemu image step %s; buildextend-metal %s (%.0f%%)", qemuImageTime, metalTime.Round(100*time.Millisecond),
		100*metalTime.Seconds()/qemuImageTime.Seconds())

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
	for _, p := range []string{"ostree", "qemu", "metal", "metal4k"} {
		a, ok := m.Images[p]
		if !ok {
			t.Errorf("images.%s missing after concurrent buildextends: %v", p, m.Images)
			continue
		}
		if sum := sha256File(t, filepath.Join(arch, a.Path)); sum != a.Sha256 {
			t.Errorf("%s: sha256 %s, meta says %s", p, sum, a.Sha256)
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
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("--json line %q: %v", line, err)
		}
		switch ev["event"] {
		case "stage-start":
			started++
		case "stage-cached":
			cached++
		}
	}
	if started != 0 || cached != 3 {
		t.Errorf("pipeline run of a built manifest: %d stages started, %d pipelines cached; want 0 and 3\n%s", started, cached, r.Stdout)
	}
	if sum := sha256File(t, filepath.Join(outDir, "qemu", "disk.qcow2")); sum != q.Sha256 {
		t.Errorf("pipeline run output sha256 %s, the build's qcow2 is %s", sum, q.Sha256)
	}
}

// bootAndCheck boots img and checks the guest's report.
func bootAndCheck(t *testing.T, img string, fw qemu.Firmware, commit string) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()
	vm, err := qemu.Start(ctx, qemu.Options{Image: img, Firmware: fw, WorkDir: t.TempDir(), ExtraArgs: []string{"-nic", "user,model=virtio-net-pci,restrict=on"}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	mark := func(re string) time.Duration {
		if _, err := vm.WaitFor(ctx, regexp.MustCompile(re), failRE); err != nil {
			t.Fatalf("%s boot: %v\n--- console tail ---\n%s", fw, err, tail(vm.Console(), 40))
		}
		return time.Since(vm.Started)
	}
	kernel := mark(`Linux version`)
	multi := mark(`Reached target[^\n]*Multi-User System`)
	login := mark(`login: `)
	mark(`COSA-CHECK-END`)
	con := vm.Console()
	for _, want := range []string{"COSA-CHECK state=running", "COSA-CHECK usr=ro", "COSA-CHECK booted=" + commit} {
		if !strings.Contains(con, want) {
			t.Errorf("%s: console lacks %q", fw, want)
		}
	}
	if strings.Contains(con, "COSA-CHECK failed-unit") {
		t.Errorf("%s: failed units:\n%s", fw, grepLines(con, "failed-unit"))
	}
	t.Logf("e2e: %s boot under %s: kernel %.1fs, multi-user %.1fs, login %.1fs", fw, accel(), kernel.Seconds(), multi.Seconds(), login.Seconds())
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
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, bufio.NewReader(f)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
