package boottest

import (
	"regexp"
	"strings"
)

// lostPatterns are console messages after which a boot can never reach a
// login prompt: waiting out BootTimeout for it only wastes minutes per
// firmware. A unit that failed to start ("Failed to start foo.service") is
// not one of them: the boot carries on and the boot check reports it once
// the system is up.
var lostPatterns = []string{
	`Failed to isolate default target`, // systemd: default.target masked or missing
	`Failed to start default target`,
	`Freezing execution`,         // systemd (PID 1) gave up and froze
	`Kernel panic - not syncing`, // the kernel gave up
	`You are in emergency mode`,  // systemd's emergency.target
	`Entering emergency mode`,    // the initrd's emergency shell
	`Give root password for maintenance`,
	`dracut-initqueue\[\d+\]: Warning: Could not boot`,
}

// lostLineRE matches a console line holding one of lostPatterns, so the
// match is the line to show.
var lostLineRE = regexp.MustCompile(`(?m)^[^\r\n]*(?:` + strings.Join(lostPatterns, "|") + `)[^\r\n]*`)

// LostRE is what the boot waits watch for: such a line once it is complete
// (the console arrives in pieces; stopping the VM in mid-line would cut the
// very message worth showing).
var LostRE = regexp.MustCompile(lostLineRE.String() + `[\r\n]`)

// ansiRE matches the colour and cursor sequences systemd writes to the
// console ("[\x1b[0;32m  OK  \x1b[0m]").
var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// LostLine returns the first console line saying the boot is lost, without
// terminal escapes and surrounding blanks, or "".
func LostLine(console string) string {
	m := lostLineRE.FindString(console)
	if m == "" {
		return ""
	}
	return strings.TrimSpace(ansiRE.ReplaceAllString(m, ""))
}
