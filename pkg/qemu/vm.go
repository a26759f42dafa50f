package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
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
}

// VM is a running QEMU.
type VM struct {
	cmd        *exec.Cmd
	ConsoleLog string
	Started    time.Time

	mu      sync.Mutex
	console strings.Builder
	changed chan struct{} // closed and replaced on every console write
	exited  chan struct{}
	waitErr error
}

// KVMUsable reports whether /dev/kvm can be opened.
func KVMUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

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
	os.Remove(overlay)
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", img, "-F", imageFormat(img), overlay).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("qemu-img create overlay: %v: %s", err, out)
	}
	accel := "tcg"
	if KVMUsable() {
		accel = "kvm"
	}
	args := []string{
		"-machine", "q35,accel=" + accel, "-cpu", "max", "-m", strconv.Itoa(o.MemoryMiB), "-smp", strconv.Itoa(o.CPUs),
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-drive", "if=virtio,format=qcow2,file=" + overlay,
	}
	if o.Firmware == UEFI {
		vars := filepath.Join(o.WorkDir, "OVMF_VARS.fd")
		data, err := os.ReadFile(OVMFVars)
		if err != nil {
			return nil, fmt.Errorf("UEFI needs OVMF (apt-get install ovmf): %w", err)
		}
		if err := os.WriteFile(vars, data, 0o644); err != nil {
			return nil, err
		}
		args = append(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	args = append(args, o.ExtraArgs...)
	cmd := exec.Command("qemu-system-x86_64", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	logPath := filepath.Join(o.WorkDir, "console.txt")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	v := &VM{cmd: cmd, ConsoleLog: logPath, changed: make(chan struct{}), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		logf.Close()
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
		err := cmd.Wait()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
		}
		v.mu.Lock()
		v.waitErr = err
		v.mu.Unlock()
		close(v.exited)
	}()
	return v, nil
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
	for {
		v.mu.Lock()
		text, ch := v.console.String(), v.changed
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
			if m := re.FindString(v.Console()); m != "" {
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
	v.cmd.Process.Kill()
	<-v.exited
}
