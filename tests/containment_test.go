package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestContainment is issue #10 end to end: a config cosa did not write
// cannot reach the host, scripts run as an unprivileged id in a minimal
// sandbox, and the whole flow works as an ordinary user with the same
// result as root.
func TestContainment(t *testing.T) {
	needTools(t, "mmdebstrap", "ostree", "apt-get", "tar", "runuser", "useradd", "newuidmap", "qemu-system-x86_64")

	// 1. Rootless: init, fetch, build with the qcow2, metal, a boot, compress,
	// clean, all as a user who has subordinate ids and no sudo.
	u := rootlessUser(t)
	base, err := os.MkdirTemp("/var/tmp", "cosa-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	bin := filepath.Join(base, "cosa")
	copyFile(t, cosaBin, bin, 0o755)
	uw := filepath.Join(base, "w")
	if err := os.Mkdir(uw, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{base, uw} {
		if err := os.Chown(p, u.uid, u.gid); err != nil {
			t.Fatal(err)
		}
	}
	mustAs(t, u, bin, uw, "init")
	mustAs(t, u, bin, uw, "build", "--fetch")
	uid := latest(t, uw)
	umeta := checkBuild(t, uw, uid)
	mustAs(t, u, bin, uw, "buildextend-metal")
	r := mustAs(t, u, bin, uw, "test", "--uefi")
	if !regexp.MustCompile(`(?m)^\d+ passed, 0 failed`).MatchString(r.Stdout + r.Stderr) {
		t.Errorf("rootless boot test: %s", tail(r.Stdout+r.Stderr, 20))
	}
	r = mustAs(t, u, bin, uw, "--json", "compress")
	if res := resultOf(t, r, "compress"); res["build"] != uid || artifactOf(t, res, "qemu")["action"] != "compressed" {
		t.Errorf("rootless compress result %v", res)
	}
	// What the user's build holds on the host belongs to the user or to
	// the user's subordinate ids, never to root.
	rootOwned := findOwnedBy(t, uw, 0)
	if len(rootOwned) > 0 {
		t.Errorf("a rootless build left root-owned files: %v", rootOwned[:min(5, len(rootOwned))])
	}

	// 2. The same inputs as root (the rootless lock file pins the packages):
	// the commit has the same content, owners and modes included.
	rw := t.TempDir()
	mustCosa(t, rw, "init")
	copyFile(t, filepath.Join(uw, "cache", "manifest-lock.x86_64.json"), filepath.Join(rw, "src", "config", "manifest-lock.x86_64.json"), 0o644)
	mustCosa(t, rw, "build", "--fetch", "--skip-image")
	rmeta := checkBuild(t, rw, latest(t, rw))
	ucs := contentChecksum(t, filepath.Join(uw, "tmp", "repo"), umeta.OSTreeCommit)
	rcs := contentChecksum(t, filepath.Join(rw, "tmp", "repo"), rmeta.OSTreeCommit)
	if ucs != rcs {
		cmp := filepath.Join(t.TempDir(), "cmp")
		ostreeCmd(t, "init", "--repo="+cmp, "--mode=bare-user")
		ostreeCmd(t, "--repo="+cmp, "pull-local", filepath.Join(uw, "tmp", "repo"), umeta.OSTreeCommit)
		ostreeCmd(t, "--repo="+cmp, "pull-local", filepath.Join(rw, "tmp", "repo"), rmeta.OSTreeCommit)
		t.Errorf("rootless and root commits differ in content:\n%s", tail(ostreeCmd(t, "--repo="+cmp, "diff", rmeta.OSTreeCommit, umeta.OSTreeCommit), 40))
	}
	for path, want := range map[string]string{"/usr/bin/passwd": "-04755 0 0", "/usr/etc/shadow": "-00640 0 42"} {
		if got := ostreeCmd(t, "--repo="+filepath.Join(uw, "tmp", "repo"), "ls", umeta.OSTreeCommit, path); !strings.HasPrefix(strings.TrimSpace(got), want) {
			t.Errorf("rootless commit: %s is %q, want %q", path, got, want)
		}
	}

	// 3. A hostile overlay: /tmp and /etc/machine-id link at host files.
	// The build is refused with the path named, and the host files keep
	// their bytes and modes.
	canaryDir := filepath.Join(t.TempDir(), "etc")
	canaryFile := filepath.Join(filepath.Dir(canaryDir), "shadow")
	writeFile(t, filepath.Join(canaryDir, "passwd"), "root:x:0:0::/root:/bin/sh\n", 0o644)
	writeFile(t, canaryFile, "root:secret:1::::::\n", 0o640)
	checkCanaries := func(when string) {
		t.Helper()
		if fi, err := os.Stat(canaryDir); err != nil || fi.Mode() != os.ModeDir|0o755 {
			t.Errorf("%s: canary dir %v %v", when, fi.Mode(), err)
		}
		if data, err := os.ReadFile(filepath.Join(canaryDir, "passwd")); err != nil || string(data) != "root:x:0:0::/root:/bin/sh\n" {
			t.Errorf("%s: canary dir content %q %v", when, data, err)
		}
		if fi, err := os.Stat(canaryFile); err != nil || fi.Mode() != 0o640 {
			t.Errorf("%s: canary file %v %v", when, fi.Mode(), err)
		}
		if data, err := os.ReadFile(canaryFile); err != nil || string(data) != "root:secret:1::::::\n" {
			t.Errorf("%s: canary file content %q %v", when, data, err)
		}
	}
	ov := filepath.Join(rw, "src", "config", "overlay.d", "90-hostile")
	if err := os.MkdirAll(filepath.Join(ov, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	symlink(t, canaryDir, filepath.Join(ov, "tmp"))
	symlink(t, canaryFile, filepath.Join(ov, "etc", "machine-id"))
	r = cosa(t, rw, "build", "--skip-image")
	checkCanaries("after the refused build")
	if r.Code != 1 || !strings.Contains(r.Stderr, "/tmp is not a directory") {
		t.Errorf("hostile overlay: exit %d, stderr %q; want exit 1 naming /tmp", r.Code, tail(r.Stderr, 5))
	}

	// 4. Without the /tmp link the build goes through: machine-id is a new
	// empty file in the commit, the host file is untouched, and a
	// postprocess script reports what its sandbox looks like.
	os.Remove(filepath.Join(ov, "tmp"))
	cfg := filepath.Join(rw, "src", "config")
	writeFile(t, filepath.Join(cfg, "postprocess", "90-probe.sh"), `#!/bin/sh
set -eu
{
  echo "uid_map: $(tr -s ' ' < /proc/self/uid_map | sed 's/^ //')"
  grep '^CapBnd' /proc/self/status
  echo "dev: $(ls /dev | tr '\n' ' ')"
  echo "aws: ${AWS_SECRET_ACCESS_KEY:-unset}"
  if mount -t tmpfs probe /mnt 2>/dev/null; then echo "mount: yes"; else echo "mount: no"; fi
  if [ -e /dev/vda ] || [ -e /dev/sda ] || [ -e /dev/loop0 ]; then echo "disks: yes"; else echo "disks: no"; fi
} > /usr/lib/cosa-e2e-probe
`, 0o755)
	manifest := filepath.Join(cfg, "manifest.yaml")
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, manifest, strings.Replace(string(data), "  - postprocess/20-ssh-host-keys.sh\n", "  - postprocess/20-ssh-host-keys.sh\n  - postprocess/90-probe.sh\n", 1), 0o644)
	cmd := exec.Command(cosaBin, "build", "--skip-image")
	cmd.Dir = rw
	cmd.Env = append(os.Environ(), "AWS_SECRET_ACCESS_KEY=e2e-secret-must-not-leak")
	out, err := cmd.CombinedOutput()
	checkCanaries("after the build")
	if err != nil {
		t.Fatalf("build with a machine-id link: %v\n%s", err, tail(string(out), 30))
	}
	meta := checkBuild(t, rw, latest(t, rw))
	repo := "--repo=" + filepath.Join(rw, "tmp", "repo")
	if got := ostreeCmd(t, repo, "ls", meta.OSTreeCommit, "/usr/etc/machine-id"); !strings.HasPrefix(got, "-00644 0 0      0 ") {
		t.Errorf("machine-id in the commit: %q", got)
	}
	probe := ostreeCmd(t, repo, "cat", meta.OSTreeCommit, "/usr/lib/cosa-e2e-probe")
	t.Logf("sandbox probe:\n%s", probe)
	m := regexp.MustCompile(`uid_map: 0 (\d+) (\d+)`).FindStringSubmatch(probe)
	if m == nil || m[1] == "0" || m[2] != "65536" {
		t.Errorf("script's root is not an unprivileged id on the host: %q", m)
	}
	if m := regexp.MustCompile(`CapBnd:\s+([0-9a-f]+)`).FindStringSubmatch(probe); m == nil {
		t.Error("no CapBnd line")
	} else if v, _ := strconv.ParseUint(m[1], 16, 64); v&(1<<21) != 0 || v&(1<<12) != 0 || v&(1<<16) != 0 {
		t.Errorf("bounding set %s keeps SYS_ADMIN, NET_ADMIN or SYS_MODULE", m[1])
	}
	for _, want := range []string{"dev: fd full null ptmx pts random shm stderr stdin stdout tty urandom zero \n", "aws: unset\n", "mount: no\n", "disks: no\n"} {
		if !strings.Contains(probe, want) {
			t.Errorf("probe lacks %q", want)
		}
	}

	// 5. A CI job deletes the workdir: as the user, after cosa clean --all
	// (what the user's subordinate ids own can only go from inside cosa's
	// namespace), a plain rm -rf works.
	mustAs(t, u, bin, uw, "clean", "--all")
	if out, err := exec.Command("runuser", "-u", u.name, "--", "rm", "-rf", uw).CombinedOutput(); err != nil {
		t.Errorf("rm -rf of the rootless workdir after cosa clean --all: %v\n%s", err, tail(string(out), 10))
	}
}

type testUser struct {
	name     string
	uid, gid int
}

// rootlessUser makes (once per machine) an ordinary user with 65536
// subordinate ids, as adduser does on a desktop.
func rootlessUser(t *testing.T) testUser {
	t.Helper()
	const name = "cosa-rootless"
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v\n%s", err, out)
		}
	}
	sub, _ := os.ReadFile("/etc/subuid")
	if !regexp.MustCompile(`(?m)^` + name + `:`).Match(sub) {
		if out, err := exec.Command("usermod", "--add-subuids", "300000-365535", "--add-subgids", "300000-365535", name).CombinedOutput(); err != nil {
			t.Fatalf("usermod: %v\n%s", err, out)
		}
	}
	lu, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(lu.Uid)
	gid, _ := strconv.Atoi(lu.Gid)
	return testUser{name, uid, gid}
}

// mustAs runs cosa as u in dir and fails the test unless it exits 0.
func mustAs(t *testing.T, u testUser, bin, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command("runuser", append([]string{"-u", u.name, "--", bin}, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/home/" + u.name, "LANG=C.UTF-8"}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	t0 := time.Now()
	err := cmd.Run()
	r := result{Stdout: so.String(), Stderr: se.String()}
	t.Logf("e2e: (as %s) cosa %s -> %v in %s\n%s%s", u.name, strings.Join(args, " "), err, time.Since(t0).Round(100*time.Millisecond), tail(r.Stdout, 10), tail(r.Stderr, 10))
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	}
	checkJSONOutput(t, args, r)
	if err != nil {
		t.Fatalf("(as %s) cosa %s: %v\nstdout:\n%s\nstderr:\n%s", u.name, strings.Join(args, " "), err, tail(r.Stdout, 20), tail(r.Stderr, 60))
	}
	return r
}

func contentChecksum(t *testing.T, repo, commit string) string {
	t.Helper()
	m := regexp.MustCompile(`ContentChecksum:\s+([0-9a-f]{64})`).FindStringSubmatch(ostreeCmd(t, "--repo="+repo, "show", commit))
	if m == nil {
		t.Fatalf("no content checksum for %s in %s", commit, repo)
	}
	return m[1]
}

// findOwnedBy lists paths under dir (not following links) owned by uid.
func findOwnedBy(t *testing.T, dir string, uid int) []string {
	t.Helper()
	out, err := exec.Command("find", dir, "-xdev", "-uid", fmt.Sprint(uid)).Output()
	if err != nil {
		t.Fatalf("find: %v", err)
	}
	return strings.Fields(string(out))
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
