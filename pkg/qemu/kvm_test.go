package qemu

import (
	"os/exec"
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
