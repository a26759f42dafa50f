package qemu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/internal/hostcmd"
)

func startTestVM(t *testing.T, extra ...string) (*VM, error) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return Start(context.Background(), Options{Image: img, Firmware: BIOS, MemoryMiB: 64, CPUs: 1,
		WorkDir: dir, ExtraArgs: extra})
}

// TestVMKill: a paused VM ends when killed, and Wait reports it.
func TestVMKill(t *testing.T) {
	vm, err := startTestVM(t, "-S")
	if err != nil {
		t.Fatal(err)
	}
	vm.Kill()
	select {
	case <-vm.Exited():
	default:
		t.Fatal("Kill returned before QEMU exited")
	}
	if err := vm.Wait(context.Background()); err == nil {
		t.Error("a killed VM reported success")
	}
}

// TestVMErrorNamesQEMU: QEMU refusing its arguments is a *hostcmd.Error
// carrying what QEMU said.
func TestVMErrorNamesQEMU(t *testing.T) {
	vm, err := startTestVM(t, "-no-such-option")
	if err != nil {
		t.Fatal(err)
	}
	err = vm.Wait(context.Background())
	var he *hostcmd.Error
	if !errors.As(err, &he) || he.ExitCode != 1 || !strings.Contains(he.Stderr, "no-such-option") {
		t.Fatalf("Wait = %v", err)
	}
}
