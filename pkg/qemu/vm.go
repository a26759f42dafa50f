package qemu

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cosa-build/cosa/internal/hostcmd"
)

// Firmware selects how the VM boots.
type Firmware string

const (
	BIOS Firmware = "bios" // SeaBIOS, QEMU's default
	UEFI Firmware = "uefi" // OVMF
)

// OVMF firmware files from Debian's ovmf package (4 MiB variant).
var (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Options describe a VM.
type Options struct {
	Image     string // qcow2 or raw disk image; never modified
	Firmware  Firmware
	MemoryMiB int
	CPUs      int
	WorkDir   string // overlay, firmware vars and console log go here
	ExtraArgs []string

	// Network: user-mode networking restricted to the host forwards below
	// (the guest reaches nothing else). SSHPort > 0 forwards
	// 127.0.0.1:SSHPort to the guest's port 22.
	Network bool
	SSHPort int
	// AuthorizedKey is an SSH public key for root, handed to the guest as a
	// systemd credential in SMBIOS type 11 (systemd's provision.conf
	// writes it to /root/.ssh/authorized_keys): nothing in the image changes.
	AuthorizedKey string
	// QMPSocket, if set, is where QEMU listens for QMP.
	QMPSocket string
	// Interactive connects the serial console (multiplexed with the QEMU
	// monitor: Ctrl-A X quits, Ctrl-A C switches) to this process's
	// terminal instead of capturing it; it is still logged.
	Interactive bool
	// Reboot lets a guest reboot instead of QEMU exiting.
	Reboot bool
	// Resume starts the machine again from the disk overlay and UEFI
	// variables a previous Start left in WorkDir, appending to its console
	// log: a cold power cycle of the same machine.
	Resume bool
}

// VM is a running QEMU.
type VM struct {
	kill       context.CancelFunc
	ConsoleLog string
	Started    time.Time

	mu      sync.Mutex
	console strings.Builder
	changed chan struct{} // closed and replaced on every console write
	exited  chan struct{}
	waitErr error
}

// KVMUsable reports whether QEMU can really run a guest with KVM here.
// An openable /dev/kvm is not enough, and neither is QEMU starting with
// accel=kvm: nested setups hand out /dev/kvm and then abort at vCPU setup
// ("failed to set MSR"), and some sandboxes serve a /dev/kvm on CPUs
// without VMX/SVM that runs firmware and GRUB but never gets a Linux
// kernel to print a line (seen on this project's CI machines: SeaBIOS and
// GRUB run, then nothing for 300 s). So KVM is used only when the CPU
// advertises hardware virtualization, /dev/kvm opens, and QEMU creates
// the machine. COSA_ACCEL=tcg|kvm overrides the probe. The answer is
// cached for the process.
func KVMUsable() bool {
	kvmOnce.Do(func() {
		switch os.Getenv("COSA_ACCEL") {
		case "kvm":
			kvmOK = true
			return
		case "tcg":
			return
		}
		if !cpuHasVirt("/proc/cpuinfo") {
			return
		}
		f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
		if err != nil {
			return
		}
		f.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := hostcmd.Command("qemu-system-x86_64", "-machine", "q35,accel=kvm", "-cpu", "max", "-m", "128",
			"-nodefaults", "-display", "none", "-S", "-qmp", "stdio")
		cmd.Stdin = strings.NewReader(`{"execute":"qmp_capabilities"}` + "\n" + `{"execute":"quit"}` + "\n")
		kvmOK = cmd.Run(ctx) == nil
	})
	return kvmOK
}

// cpuHasVirt reports whether the CPU flags in cpuinfo include Intel VT-x
// (vmx) or AMD-V (svm).
func cpuHasVirt(cpuinfo string) bool {
	data, err := os.ReadFile(cpuinfo)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, flags, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != "flags" {
			continue
		}
		for _, f := range strings.Fields(flags) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
	}
	return false
}

var (
	kvmOnce sync.Once
	kvmOK   bool
)

func imageFormat(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "raw"
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err == nil && string(magic) == "QFI\xfb" {
		return "qcow2"
	}
	return "raw"
}

// Start boots the VM. The console is read from QEMU's stdout (serial on
// stdio), so waiting for console output is event-driven.
func Start(ctx context.Context, o Options) (*VM, error) {
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 2048
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return nil, err
	}
	img, err := filepath.Abs(o.Image)
	if err != nil {
		return nil, err
	}
	overlay := filepath.Join(o.WorkDir, "overlay.qcow2")
	if o.Resume {
		if _, err := os.Stat(overlay); err != nil {
			return nil, fmt.Errorf("resuming a VM: %w", err)
		}
	} else {
		os.Remove(overlay)
		if err := hostcmd.Run(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", img, "-F", imageFormat(img), overlay); err != nil {
			return nil, fmt.Errorf("overlay: %w", err)
		}
	}
	accel := "tcg"
	if KVMUsable() {
		accel = "kvm"
	}
	logPath := filepath.Join(o.WorkDir, "console.txt")
	args := []string{
		"-machine", "q35,accel=" + accel, "-cpu", "max", "-m", strconv.Itoa(o.MemoryMiB), "-smp", strconv.Itoa(o.CPUs),
		"-display", "none", "-drive", "if=virtio,format=qcow2,file=" + overlay,
	}
	if o.Interactive {
		args = append(args, "-chardev", "stdio,id=con0,mux=on,signal=off,logfile="+logPath,
			"-serial", "chardev:con0", "-mon", "chardev=con0,mode=readline")
	} else {
		args = append(args, "-monitor", "none", "-serial", "stdio")
	}
	if !o.Reboot {
		args = append(args, "-no-reboot")
	}
	if o.Network {
		nic := "user,model=virtio-net-pci,restrict=on"
		if o.SSHPort > 0 {
			nic += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:22", o.SSHPort)
		}
		args = append(args, "-nic", nic)
	} else {
		args = append(args, "-nic", "none")
	}
	if o.AuthorizedKey != "" {
		enc := base64.StdEncoding.EncodeToString([]byte(strings.TrimSpace(o.AuthorizedKey) + "\n"))
		args = append(args, "-smbios", "type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root="+enc)
	}
	if o.QMPSocket != "" {
		args = append(args, "-qmp", "unix:"+o.QMPSocket+",server=on,wait=off")
	}
	if o.Firmware == UEFI {
		vars := filepath.Join(o.WorkDir, "OVMF_VARS.fd")
		if _, err := os.Stat(vars); err != nil || !o.Resume {
			data, err := os.ReadFile(OVMFVars)
			if err != nil {
				return nil, fmt.Errorf("UEFI needs OVMF (apt-get install ovmf): %w", err)
			}
			if err := os.WriteFile(vars, data, 0o644); err != nil {
				return nil, err
			}
		}
		args = append(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	args = append(args, o.ExtraArgs...)
	cmd := hostcmd.Command("qemu-system-x86_64", args...)
	cmd.Display = "qemu-system-x86_64"
	// The VM outlives Start's ctx: Kill ends it.
	vmCtx, kill := context.WithCancel(context.Background())
	v := &VM{kill: kill, ConsoleLog: logPath, changed: make(chan struct{}), exited: make(chan struct{})}
	if o.Interactive {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Start(vmCtx); err != nil {
			kill()
			return nil, err
		}
		v.Started = time.Now()
		go v.reap(cmd)
		return v, nil
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		kill()
		return nil, err
	}
	logFlags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if o.Resume {
		logFlags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	logf, err := os.OpenFile(logPath, logFlags, 0o644)
	if err != nil {
		stdout.Close()
		kill()
		return nil, err
	}
	if err := cmd.Start(vmCtx); err != nil {
		stdout.Close()
		logf.Close()
		kill()
		return nil, err
	}
	v.Started = time.Now()
	go func() {
		r := bufio.NewReader(stdout)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				logf.Write(buf[:n])
				v.mu.Lock()
				v.console.Write(buf[:n])
				close(v.changed)
				v.changed = make(chan struct{})
				v.mu.Unlock()
			}
			if err != nil {
				break
			}
		}
		logf.Close()
		stdout.Close()
		v.reap(cmd)
	}()
	return v, nil
}

// reap waits for QEMU and records how it ended.
func (v *VM) reap(cmd *hostcmd.Cmd) {
	err := cmd.Wait()
	v.kill()
	v.mu.Lock()
	v.waitErr = err
	v.mu.Unlock()
	close(v.exited)
}

// Console returns everything the guest printed so far.
func (v *VM) Console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.String()
}

// ErrExited means QEMU ended before the awaited output appeared.
var ErrExited = errors.New("QEMU exited")

// WaitFor blocks until re matches the console, failRE matches (an error
// naming the match), QEMU exits, or ctx ends.
func (v *VM) WaitFor(ctx context.Context, re, failRE *regexp.Regexp) (string, error) {
	return v.WaitFrom(ctx, 0, re, failRE)
}

// ConsoleLen is how many bytes of console output have arrived; pass it to
// WaitFrom to look only at what comes next (after a reboot, say).
func (v *VM) ConsoleLen() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.Len()
}

// WaitFrom is WaitFor over the console output from byte offset from on.
func (v *VM) WaitFrom(ctx context.Context, from int, re, failRE *regexp.Regexp) (string, error) {
	for {
		v.mu.Lock()
		text, ch := v.console.String()[from:], v.changed
		v.mu.Unlock()
		if failRE != nil {
			if m := failRE.FindString(text); m != "" {
				return "", fmt.Errorf("console shows %q", m)
			}
		}
		if m := re.FindString(text); m != "" {
			return m, nil
		}
		select {
		case <-ch:
		case <-v.exited:
			// One last look at what arrived before the exit.
			if m := re.FindString(v.Console()[from:]); m != "" {
				return m, nil
			}
			v.mu.Lock()
			err := v.waitErr
			v.mu.Unlock()
			return "", fmt.Errorf("%w (%v) before %q appeared", ErrExited, err, re)
		case <-ctx.Done():
			return "", fmt.Errorf("%w waiting for %q", ctx.Err(), re)
		}
	}
}

// Kill stops QEMU at once and waits for it.
func (v *VM) Kill() {
	v.kill()
	<-v.exited
}

// Wait blocks until QEMU exits or ctx ends.
func (v *VM) Wait(ctx context.Context) error {
	select {
	case <-v.exited:
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.waitErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Exited is closed when QEMU has exited.
func (v *VM) Exited() <-chan struct{} { return v.exited }

// FreePort asks the kernel for a free TCP port on loopback.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
