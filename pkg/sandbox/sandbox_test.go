package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// busyboxRoot makes a tiny tree with a static shell to chroot into: the
// host's busybox if it has one, else the test is skipped.
func busyboxRoot(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (apt-get install busybox-static)")
	}
	out, _ := exec.Command("file", "-L", bb).Output()
	if len(out) > 0 && !bytes.Contains(out, []byte("statically linked")) {
		t.Skip("busybox is not static")
	}
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "run", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"sh", "cat", "ls", "id", "touch", "chown", "ip", "stat"} {
		os.Symlink("busybox", filepath.Join(root, "bin", l))
	}
	if err := os.WriteFile(filepath.Join(root, "etc/owned-by-root"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, "etc/owned-by-root"), 0, 0); err != nil {
		t.Fatal(err)
	}
	return root
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 || !InInitialUserNS() {
		t.Skip("needs root in the initial user namespace")
	}
}

func run(t *testing.T, root string, script string, binds ...Bind) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := Run(context.Background(), Spec{Root: root, Chroot: true, Binds: binds,
		Argv: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/bin"}}, &out, &out)
	return out.String(), err
}

func TestChrootSandbox(t *testing.T) {
	needRoot(t)
	root := busyboxRoot(t)
	stage := t.TempDir()
	os.WriteFile(filepath.Join(stage, "in"), []byte("hello"), 0o644)
	os.Chmod(stage, 0o755)
	out, err := run(t, root, `set -e
echo uid=$(id -u)
cat /proc/self/status | grep -E '^(CapBnd|CapEff|CapInh)'
echo dev: $(ls /dev)
echo net: $(ls /sys/class/net)
cat /run/cosa/in; echo
touch /etc/new-file && chown 0:0 /etc/new-file
echo etc-owner: $(stat -c %u /etc/owned-by-root)
echo uidmap: $(cat /proc/self/uid_map)
`, Bind{stage, "/run/cosa"})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Log(out)
	for _, want := range []string{"uid=0", "dev: fd full null ptmx pts random shm stderr stdin stdout tty urandom zero", "net: lo", "hello", "etc-owner: 0",
		"uidmap: 0 " + itoa(idBase()) + " 65536"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// CAP_SYS_ADMIN (21) and CAP_NET_ADMIN (12) are gone from the bounding set.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "CapBnd:") {
			var v uint64
			if _, err := fmtSscanHex(strings.TrimSpace(strings.TrimPrefix(line, "CapBnd:")), &v); err != nil {
				t.Fatal(err)
			}
			if v&(1<<21) != 0 || v&(1<<12) != 0 || v&(1<<0) == 0 {
				t.Errorf("bounding set %x still has SYS_ADMIN/NET_ADMIN or lacks CHOWN", v)
			}
		}
		if strings.HasPrefix(line, "CapInh:") && strings.TrimSpace(strings.TrimPrefix(line, "CapInh:")) != "0000000000000000" {
			t.Errorf("inheritable set not empty: %s", line)
		}
	}
	// A file made by root inside is owned by root on disk (idmapped).
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(root, "etc/new-file"), &st); err != nil || st.Uid != 0 {
		t.Errorf("new file on disk: uid %d, %v; want 0", st.Uid, err)
	}
}

// Root inside is nobody outside: host files reachable through a bind it
// does not own are not writable, and the host's devices are not there.
func TestChrootSandboxIsNotHostRoot(t *testing.T) {
	needRoot(t)
	root := busyboxRoot(t)
	stage := t.TempDir()
	os.Chmod(stage, 0o755)
	canary := filepath.Join(stage, "canary")
	os.WriteFile(canary, []byte("keep"), 0o644)
	out, err := run(t, root, `echo x > /run/cosa/canary; echo rc=$?; ls /dev/vda /dev/sda 2>&1; mount -t tmpfs t /mnt 2>&1; echo mount-rc=$?`, Bind{stage, "/run/cosa"})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if data, _ := os.ReadFile(canary); string(data) != "keep" {
		t.Errorf("sandbox root wrote a host file it does not own: %q", data)
	}
	if !strings.Contains(out, "rc=1") {
		t.Errorf("write did not fail: %s", out)
	}
	if strings.Contains(out, "mount-rc=0") {
		t.Errorf("mount worked without CAP_SYS_ADMIN: %s", out)
	}
}

func TestSandboxRefusesSymlinkedMountPoint(t *testing.T) {
	needRoot(t)
	root := busyboxRoot(t)
	outside := t.TempDir()
	os.RemoveAll(filepath.Join(root, "run"))
	os.Symlink(outside, filepath.Join(root, "run"))
	out, err := run(t, root, "true")
	if err == nil || !strings.Contains(out, "/run is not a directory") {
		t.Errorf("err %v, out %q", err, out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func fmtSscanHex(s string, v *uint64) (int, error) { return fmt.Sscanf(s, "%x", v) }
