package boottest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/qemu"
)

// UpgradeOptions describe an upgrade test: boot FromImage, update the
// guest to ToCommit from ToArchive (a build's exported archive-repo
// tarball) handed to the guest as an extra read-only disk and added as an
// ostree remote, reboot, and check ToCommit is what runs.
//
// Why a disk and not HTTP: QEMU's user networking can only forward a
// guest connection to a host socket once (guestfwd is a single chardev),
// and ostree pull opens many; a disk needs no network at all.
type UpgradeOptions struct {
	FromImage string
	ToArchive string
	ToCommit  string
	Ref       string
	Firmware  qemu.Firmware
	OutDir    string
}

// repoLabel is the filesystem label of the disk holding the new commit.
const repoLabel = "cosa-upgrade"

// Upgrade runs the upgrade test; the result is named "upgrade".
func Upgrade(ctx context.Context, o UpgradeOptions) (r Result, err error) {
	fw := string(o.Firmware)
	r = Result{Name: "upgrade", Firmware: fw}
	t0 := time.Now()
	vmDir := filepath.Join(o.OutDir, "vm-upgrade-"+fw)
	repo := filepath.Join(vmDir, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		return r, err
	}
	if err := hostcmd.Run(ctx, "tar", "--no-same-owner", "--no-same-permissions", "-xf", o.ToArchive, "-C", repo); err != nil {
		return r, fmt.Errorf("unpacking %s: %w", o.ToArchive, err)
	}
	repoImg := filepath.Join(vmDir, "repo.img")
	if err := makeRepoDisk(ctx, repo, repoImg); err != nil {
		return r, err
	}

	ssh, err := qemu.NewSSH(ctx, vmDir)
	if err != nil {
		return r, err
	}
	// The guest's reboot ends QEMU (-no-reboot) and a new QEMU starts the
	// same disk overlay and UEFI variables: a cold power cycle. An
	// in-place warm reset once hung OVMF under TCG in CI (no output after
	// "reboot: machine restart" for the whole boot timeout), and a reset
	// proves nothing a power cycle does not.
	vmOpts := qemu.Options{Image: o.FromImage, Firmware: o.Firmware, WorkDir: vmDir,
		Network: true, SSHPort: ssh.Port, AuthorizedKey: ssh.Key.Public,
		ExtraArgs: []string{"-drive", "if=virtio,format=raw,readonly=on,file=" + repoImg}}
	vm, err := qemu.Start(ctx, vmOpts)
	if err != nil {
		return r, err
	}
	defer func() { vm.Kill() }()
	defer func() {
		r.Duration = time.Since(t0).Seconds()
		writeResult(o.OutDir, vm.ConsoleLog, &r)
	}()
	fail := func(format string, args ...any) (Result, error) {
		r.Reason = fmt.Sprintf(format, args...)
		r.Output = tail(vm.Console(), 30)
		return r, nil
	}
	if b := Boot(ctx, vm, ssh, fw, ""); !b.Passed {
		r.Lost = b.Lost
		return fail("first boot: %s", b.Reason)
	}
	// Pull and deploy the new commit the way a machine in the field would.
	cmd := fmt.Sprintf("set -e; mkdir -p /run/%[1]s; mount -o ro /dev/disk/by-label/%[1]s /run/%[1]s; "+
		"ostree remote add --if-not-exists --no-gpg-verify %[1]s file:///run/%[1]s; "+
		"ostree pull %[1]s %[2]s; os=$(ostree admin status | sed -n 's/^\\* \\([^ ]*\\) .*/\\1/p'); "+
		"ostree admin deploy --os=\"$os\" %[1]s:%[2]s", repoLabel, o.Ref)
	uctx, ucancel := context.WithTimeout(ctx, 10*time.Minute)
	defer ucancel()
	if out, code, err := ssh.Run(uctx, nil, cmd); err != nil || code != 0 {
		return fail("pull and deploy in the guest (exit %d, %v):\n%s", code, err, out)
	}
	// The image's path unit regenerates grub.cfg from the new BLS entries
	// right away (its shutdown unit would do it at reboot otherwise);
	// record whether the newest entry became GRUB's default before reboot.
	check := `e=$(ls /boot/loader/entries/ostree-*.conf | sort -t- -k2,2nr | head -1)
		o=$(sed -n 's/^options .*\(ostree=[^ ]*\).*/\1/p' "$e")
		for i in $(seq 30); do
			case "$(grep -m1 '^  linux ' /boot/grub/grub.cfg)" in *"$o"*) echo "grub.cfg regenerated after deploy"; exit 0;; esac
			sleep 1
		done; echo "grub.cfg not yet regenerated after deploy; relying on the shutdown unit"`
	preReboot, _, _ := ssh.Run(uctx, nil, check)
	ssh.Run(ctx, nil, "systemctl --no-block reboot")
	sctx, scancel := context.WithTimeout(ctx, BootTimeout)
	defer scancel()
	if err := vm.Wait(sctx); err != nil && sctx.Err() != nil {
		return fail("the guest did not shut down for its reboot: %v", err)
	}
	if m := FailRE.FindString(vm.Console()); m != "" {
		return fail("console shows %s", m)
	}
	vmOpts.Resume = true
	next, err := qemu.Start(ctx, vmOpts)
	if err != nil {
		return r, err
	}
	vm = next // the deferred Kill and result writer now see the second boot
	bctx, cancel := bootContext(ctx, vm.ConsoleLen)
	defer cancel()
	if _, err := vm.WaitFor(bctx, loginRE, LostRE); err != nil {
		if line := LostLine(vm.Console()); line != "" {
			vm.Kill()
			r.Lost = true
			return fail("second boot lost, VM stopped: the console says %q", line)
		}
		return fail("second boot: %v", budgetErr(bctx, err))
	}
	if err := ssh.WaitReady(bctx); err != nil {
		return fail("ssh after reboot: %v", budgetErr(bctx, err))
	}
	out, _, err := ssh.Run(bctx, nil, "ostree admin status")
	if err != nil {
		return fail("ostree admin status: %v", err)
	}
	if bootedCommit(out) != o.ToCommit {
		return fail("after the upgrade the booted deployment is not %s:\n%s", o.ToCommit, strings.TrimSpace(out))
	}
	r.Passed = true
	r.Output = strings.TrimSpace(preReboot) + "\n" + strings.TrimSpace(out)
	return r, nil
}

// makeRepoDisk writes dir into a fresh ext4 image (no mount needed).
func makeRepoDisk(ctx context.Context, dir, img string) error {
	var size int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil {
			size += info.Size() + 4096
		}
		return nil
	})
	size = size*13/10 + 64<<20
	if err := hostcmd.Run(ctx, "mkfs.ext4", "-q", "-F", "-L", repoLabel, "-d", dir, img,
		fmt.Sprintf("%dk", size>>10)); err != nil {
		return fmt.Errorf("the upgrade disk: %w", err)
	}
	return nil
}
