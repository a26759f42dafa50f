package boottest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cosa-build/cosa/pkg/qemu"
)

// bootSector is a BIOS boot sector that writes msg to the first serial
// port and halts: a guest whose console says its boot is lost, in a
// second of TCG instead of a real OS's minutes.
func bootSector(msg string) []byte {
	code := []byte{
		0xfa,       // cli
		0x31, 0xc0, // xor ax, ax
		0x8e, 0xd8, // mov ds, ax
		0xbe, 0x16, 0x7c, // mov si, 0x7c16 (msg, right after this code)
		0xba, 0xf8, 0x03, // mov dx, 0x3f8 (COM1)
		0xac,       // loop: lodsb
		0x84, 0xc0, // test al, al
		0x74, 0x03, // jz hang
		0xee,       // out dx, al
		0xeb, 0xf8, // jmp loop
		0xf4,       // hang: hlt
		0xeb, 0xfd, // jmp hang
	}
	img := make([]byte, 1<<20)
	copy(img, code)
	copy(img[len(code):], msg+"\x00")
	img[510], img[511] = 0x55, 0xaa
	return img
}

// The whole path with a real QEMU: the boot check stops the VM as soon as
// the console says the default target could not be started, long before
// BootTimeout, keeps the console, and reports the config's tests as
// skipped.
func TestRunStopsLostBoot(t *testing.T) {
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "lost.img")
	console := "Linux version 6.1.0-27-amd64 (fake)\r\n" +
		"[    4.544012] systemd[1]: Failed to isolate default target: Unit default.target is masked.\r\n" +
		"[    4.544300] systemd[1]: Freezing execution.\r\n"
	if err := os.WriteFile(img, bootSector(console), 0o644); err != nil {
		t.Fatal(err)
	}
	old := BootTimeout
	BootTimeout = 3 * time.Minute
	t.Cleanup(func() { BootTimeout = old })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	results, err := Run(ctx, Options{Image: img, Firmware: qemu.BIOS, OutDir: filepath.Join(dir, "out"),
		Tests: []Test{{Name: "10-check", Path: "/bin/true"}}})
	elapsed := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("results: %+v", results)
	}
	boot := results[0]
	if boot.Passed || !boot.Lost || !strings.Contains(boot.Reason, `the console says "[    4.544012] systemd[1]: Failed to isolate default target: Unit default.target is masked."`) {
		t.Errorf("boot result: %+v", boot)
	}
	if elapsed > time.Minute {
		t.Errorf("the lost boot took %s to be reported; BootTimeout is %s", elapsed, BootTimeout)
	}
	if s := results[1]; !s.Skipped || s.Passed {
		t.Errorf("test after a lost boot: %+v", s)
	}
	data, err := os.ReadFile(boot.ConsoleFile)
	// The VM is stopped right after the line that gave the boot up (what
	// follows may or may not have arrived): that line is kept whole, up to
	// the \r that completed it (its \n may still have been in flight).
	if err != nil || !strings.Contains(string(data), "Failed to isolate default target: Unit default.target is masked.\r") {
		t.Errorf("console file %s: %v\n%s", boot.ConsoleFile, err, data)
	}
	t.Logf("lost boot reported after %s", elapsed.Round(time.Millisecond))
}
