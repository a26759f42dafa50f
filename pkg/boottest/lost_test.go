package boottest

import (
	"strings"
	"testing"
)

// Console excerpts as QEMU's serial port delivers them: CRLF line ends,
// systemd's colour escapes, kernel timestamps.
const (
	maskedTarget = "[    0.000000] Linux version 6.1.0-27-amd64 (debian-kernel@lists.debian.org)\r\n" +
		"[    1.902211] Run /init as init process\r\n" +
		"[    4.118820] systemd[1]: systemd 252.30-1~deb12u2 running in system mode (+PAM +AUDIT +SELINUX)\r\n" +
		"[    4.120116] systemd[1]: Detected virtualization qemu.\r\n" +
		"[    4.120905] systemd[1]: Detected architecture x86-64.\r\n" +
		"[    4.544012] systemd[1]: Failed to isolate default target: Unit default.target is masked.\r\n" +
		"[    4.544300] systemd[1]: Freezing execution.\r\n"
	kernelPanic = "[    2.311042] VFS: Cannot open root device \"LABEL=root\" or unknown-block(0,0): error -6\r\n" +
		"[    2.311990] Please append a correct \"root=\" boot option; here are the available partitions:\r\n" +
		"[    2.312512] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n" +
		"[    2.313100] CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0-27-amd64 #1  Debian 6.1.115-1\r\n"
	emergency = "[\x1b[0;1;31mFAILED\x1b[0m] Failed to mount \x1b[0;1;39mvar.mount\x1b[0m - /var.\r\n" +
		"[\x1b[0;1;38;5;185mDEPEND\x1b[0m] Dependency failed for \x1b[0;1;39mlocal-fs.target\x1b[0m - Local File Systems.\r\n" +
		"[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39memergency.service\x1b[0m - Emergency Shell.\r\n" +
		"You are in emergency mode. After logging in, type \"journalctl -xb\" to view\r\n" +
		"system logs, \"systemctl reboot\" to reboot, \"systemctl default\" or \"exit\"\r\n" +
		"to boot into default mode.\r\n"
	initrdShell = "[  184.002311] dracut-initqueue[301]: Warning: dracut-initqueue: timeout, still waiting for following initqueue hooks:\r\n" +
		"Generating \"/run/initramfs/rdsosreport.txt\"\r\n" +
		"Entering emergency mode. Exit the shell to continue.\r\n"
	// A boot that reaches login although a unit failed: the boot check
	// reports the unit later, but this is no reason to stop the VM.
	normal = "[    0.000000] Linux version 6.1.0-27-amd64 (debian-kernel@lists.debian.org)\r\n" +
		"[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mbasic.target\x1b[0m - Basic System.\r\n" +
		"[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39msome.service\x1b[0m - Some Service.\r\n" +
		"See 'systemctl status some.service' for details.\r\n" +
		"[\x1b[0;1;31mFAILED\x1b[0m] Failed to start systemd-networkd-wait-online.service - Wait for Network to be Configured.\r\n" +
		"[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mrescue-ssh.service\x1b[0m - emergency access helper.\r\n" +
		"[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r\n" +
		"\r\nDebian GNU/Linux 12 debian ttyS0\r\n\r\ndebian login: "
)

func TestLostLine(t *testing.T) {
	for _, tc := range []struct{ name, console, want string }{
		{"masked default target", maskedTarget, "[    4.544012] systemd[1]: Failed to isolate default target: Unit default.target is masked."},
		{"kernel panic", kernelPanic, "[    2.312512] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"},
		{"emergency mode", emergency, `You are in emergency mode. After logging in, type "journalctl -xb" to view`},
		{"initrd emergency shell", initrdShell, "Entering emergency mode. Exit the shell to continue."},
		{"frozen PID 1", "[    3.1] systemd[1]: Caught <SEGV>, dumped core as pid 212.\r\n[    3.2] systemd[1]: Freezing execution.\r\n", "[    3.2] systemd[1]: Freezing execution."},
		{"default target failed", "[    5.0] systemd[1]: Failed to start default target: Transaction for graphical.target/start is destructive.\n", "[    5.0] systemd[1]: Failed to start default target: Transaction for graphical.target/start is destructive."},
		{"normal boot with a failed unit", normal, ""},
		{"nothing yet", "", ""},
	} {
		if got := LostLine(tc.console); got != tc.want {
			t.Errorf("%s: LostLine = %q, want %q", tc.name, got, tc.want)
		}
	}
	// The boot-wait regexp agrees, and FailRE (the after-boot check) still
	// counts the failed unit.
	if LostRE.MatchString(normal) {
		t.Errorf("LostRE matches a normal boot: %q", LostRE.FindString(normal))
	}
	if m := FailRE.FindString(normal); !strings.Contains(m, "Failed to start") {
		t.Errorf("FailRE no longer sees the failed unit: %q", m)
	}
	// The match is the whole line, which is what WaitFor's error shows,
	// and only once the line is complete: stopping the VM on a partial
	// line would lose the rest of the message.
	if m := LostRE.FindString(maskedTarget); !strings.HasPrefix(m, "[    4.544012]") || !strings.HasSuffix(m, "is masked.\r") {
		t.Errorf("LostRE match = %q, want the whole line", m)
	}
	partial := "[    4.544012] systemd[1]: Failed to isolate default target: Unit defa"
	if LostRE.MatchString(partial) {
		t.Errorf("LostRE matches an unfinished line %q", partial)
	}
	if got := LostLine(partial); got != partial {
		t.Errorf("LostLine(%q) = %q: after a timeout the partial line is still worth showing", partial, got)
	}
}
