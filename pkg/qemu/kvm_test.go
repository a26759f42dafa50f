package qemu

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKVMProbeAgreesWithQEMU: whatever KVMUsable says, QEMU must agree when
// asked to boot nothing with that accelerator.
func TestKVMProbeAgreesWithQEMU(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	accel := "tcg"
	if KVMUsable() {
		accel = "kvm"
	}
	cmd := exec.Command("qemu-system-x86_64", "-machine", "q35,accel="+accel, "-cpu", "max", "-m", "128",
		"-nodefaults", "-display", "none", "-S", "-qmp", "stdio")
	cmd.Stdin = strings.NewReader(`{"execute":"qmp_capabilities"}` + "\n" + `{"execute":"quit"}` + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("KVMUsable()=%v but QEMU with accel=%s fails: %v\n%s", accel == "kvm", accel, err, out)
	}
}

func TestCPUHasVirt(t *testing.T) {
	dir := t.TempDir()
	for name, c := range map[string]struct {
		info string
		want bool
	}{
		"intel":     {"processor\t: 0\nflags\t\t: fpu vme vmx sse2\n", true},
		"amd":       {"processor\t: 0\nflags\t\t: fpu svm sse2\n", true},
		"none":      {"processor\t: 0\nflags\t\t: fpu vme sse2 avx512f sha_ni\n", false},
		"substring": {"flags\t\t: fpu vmxx nosvm\n", false},
		"bug line":  {"bugs\t\t: vmx\nflags\t\t: fpu\n", false},
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(c.info), 0o644)
		if got := cpuHasVirt(p); got != c.want {
			t.Errorf("%s: cpuHasVirt = %v, want %v", name, got, c.want)
		}
	}
	if cpuHasVirt(filepath.Join(dir, "missing")) {
		t.Error("a missing cpuinfo means virtualization")
	}
}
