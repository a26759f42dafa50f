package boottest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cosa-build/cosa/pkg/qemu"
)

// UpgradeOptions describe an upgrade test: boot FromImage, update the
// guest to ToCommit served from ToArchive (a build's exported archive-repo
// tarball) over HTTP, reboot, and check ToCommit is what runs.
type UpgradeOptions struct {
	FromImage string
	ToArchive string
	ToCommit  string
	Ref       string
	Firmware  qemu.Firmware
	OutDir    string
}

// guestRepoAddr is where the guest sees the host's HTTP server: a QEMU
// guestfwd, so the guest still reaches nothing else.
const guestRepoAddr = "10.0.2.100:8080"

// Upgrade runs the upgrade test; the result is named "upgrade".
func Upgrade(ctx context.Context, o UpgradeOptions) (Result, error) {
	fw := string(o.Firmware)
	r := Result{Name: "upgrade", Firmware: fw}
	t0 := time.Now()
	vmDir := filepath.Join(o.OutDir, "vm-upgrade-"+fw)
	repo := filepath.Join(vmDir, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		return r, err
	}
	if out, err := exec.CommandContext(ctx, "tar", "-xf", o.ToArchive, "-C", repo).CombinedOutput(); err != nil {
		return r, fmt.Errorf("unpacking %s: %v: %s", o.ToArchive, err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(repo))}
	go srv.Serve(l)
	defer srv.Close()

	key, err := qemu.NewSSHKey(ctx, vmDir)
	if err != nil {
		return r, err
	}
	port, err := qemu.FreePort()
	if err != nil {
		return r, err
	}
	vm, err := qemu.Start(ctx, qemu.Options{Image: o.FromImage, Firmware: o.Firmware, WorkDir: vmDir, Reboot: true,
		Network: true, SSHPort: port, AuthorizedKey: key.Public,
		GuestForwards: map[string]string{guestRepoAddr: l.Addr().String()}})
	if err != nil {
		return r, err
	}
	defer vm.Kill()
	ssh := &qemu.SSH{Port: port, Key: key}
	defer func() {
		r.Duration = time.Since(t0).Seconds()
		writeResult(o.OutDir, vm.ConsoleLog, r)
	}()
	fail := func(format string, args ...any) (Result, error) {
		r.Reason = fmt.Sprintf(format, args...)
		r.Output = tail(vm.Console(), 30)
		return r, nil
	}
	if b := Boot(ctx, vm, ssh, fw, ""); !b.Passed {
		return fail("first boot: %s", b.Reason)
	}
	// Pull and deploy the new commit the way a machine in the field would.
	cmd := fmt.Sprintf("set -e; ostree remote add --if-not-exists --no-gpg-verify cosa-upgrade http://%s; "+
		"ostree pull cosa-upgrade %s; os=$(ostree admin status | sed -n 's/^\\* \\([^ ]*\\) .*/\\1/p'); "+
		"ostree admin deploy --os=\"$os\" cosa-upgrade:%s", guestRepoAddr, o.Ref, o.Ref)
	if out, code, err := ssh.Run(ctx, nil, cmd); err != nil || code != 0 {
		return fail("pull and deploy in the guest (exit %d, %v):\n%s", code, err, out)
	}
	// The image's path unit regenerates grub.cfg from the new BLS entries;
	// wait (in the guest) until the newest entry is GRUB's default.
	wait := `for i in $(seq 60); do
		e=$(ls /boot/loader/entries/ostree-*.conf | sort -t- -k2,2nr | head -1)
		o=$(sed -n 's/^options .*\(ostree=[^ ]*\).*/\1/p' "$e")
		first=$(grep -m1 '^  linux ' /boot/grub/grub.cfg)
		case "$first" in *"$o"*) exit 0;; esac
		sleep 1
	done; echo "grub.cfg was not regenerated:"; cat /boot/grub/grub.cfg; exit 1`
	if out, code, err := ssh.Run(ctx, nil, wait); err != nil || code != 0 {
		return fail("grub.cfg after deploy (exit %d, %v):\n%s", code, err, out)
	}
	mark := vm.ConsoleLen()
	ssh.Run(ctx, nil, "systemctl --no-block reboot")
	bctx, cancel := context.WithTimeout(ctx, BootTimeout)
	defer cancel()
	if _, err := vm.WaitFrom(bctx, mark, loginRE, FailRE); err != nil {
		return fail("second boot: %v", err)
	}
	if err := ssh.WaitReady(bctx); err != nil {
		return fail("ssh after reboot: %v", err)
	}
	out, _, err := ssh.Run(bctx, nil, "ostree admin status")
	if err != nil {
		return fail("ostree admin status: %v", err)
	}
	if bootedCommit(out) != o.ToCommit {
		return fail("after the upgrade the booted deployment is not %s:\n%s", o.ToCommit, strings.TrimSpace(out))
	}
	r.Passed = true
	r.Output = strings.TrimSpace(out)
	return r, nil
}
