package boottest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cosa-build/cosa/pkg/qemu"
)

// BootTimeout is the budget for one boot to a login prompt (TCG boots take
// 50-145 s on 2 cores; docs/architecture.md#booting-and-testing), which a
// boot still writing to its console may overrun (see BootStall).
var BootTimeout = 300 * time.Second

// FailRE matches console lines that mean the boot went wrong; checked once
// the system is up. LostRE (a subset) is what ends a boot early.
var FailRE = regexp.MustCompile(`Kernel panic[^\r\n]*|You are in emergency mode[^\r\n]*|Entering emergency mode[^\r\n]*|Failed to start[^\r\n]*|Give root password for maintenance[^\r\n]*|dracut-initqueue\[\d+\]: Warning: Could not boot[^\r\n]*`)

var (
	kernelRE = regexp.MustCompile(`Linux version`)
	loginRE  = regexp.MustCompile(`login: `)
)

// Test is one executable from the config's tests directory.
type Test struct {
	Name string
	Path string
}

// Discover lists executable files in dir (sorted), matching pattern (a
// shell glob on the name; "" = all).
func Discover(dir, pattern string) ([]Test, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var tests []Test
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode()&0o111 == 0 {
			continue
		}
		if pattern != "" {
			if ok, _ := filepath.Match(pattern, e.Name()); !ok {
				continue
			}
		}
		tests = append(tests, Test{Name: e.Name(), Path: filepath.Join(dir, e.Name())})
	}
	sort.Slice(tests, func(i, j int) bool { return tests[i].Name < tests[j].Name })
	return tests, nil
}

// Result is one test's outcome, written as result.json.
type Result struct {
	Name     string  `json:"name"`
	Firmware string  `json:"firmware"`
	Passed   bool    `json:"passed"`
	Reason   string  `json:"reason,omitempty"`
	Duration float64 `json:"duration_s"`
	Output   string  `json:"output,omitempty"`
	// Boot timings, for the boot test: seconds since QEMU started.
	// MultiUser is from the guest's own clock (see Boot).
	Kernel    float64 `json:"kernel_s,omitempty"`
	MultiUser float64 `json:"multi_user_s,omitempty"`
	Login     float64 `json:"login_s,omitempty"`
	// Lost: the console said the boot could not succeed (LostRE), so the
	// VM was stopped then instead of at the timeout.
	Lost bool `json:"lost,omitempty"`
	// Skipped: not run because the boot failed.
	Skipped bool `json:"skipped,omitempty"`
	// ConsoleFile is the saved serial console of the VM that ran it.
	ConsoleFile string `json:"console_file,omitempty"`
}

// Options configure Run.
type Options struct {
	Image    string
	Firmware qemu.Firmware
	Tests    []Test
	Commit   string // the OSTree commit the image must boot
	OutDir   string // tmp/test
	Log      io.Writer
}

// Run boots the image once and runs the boot checks and every test in it.
// The first result is always "boot"; if it fails, the tests are reported
// as not run.
func Run(ctx context.Context, o Options) ([]Result, error) {
	fw := string(o.Firmware)
	vmDir := filepath.Join(o.OutDir, "vm-"+fw)
	if err := os.MkdirAll(vmDir, 0o755); err != nil {
		return nil, err
	}
	ssh, err := qemu.NewSSH(ctx, vmDir)
	if err != nil {
		return nil, err
	}
	vm, err := qemu.Start(ctx, qemu.Options{Image: o.Image, Firmware: o.Firmware, WorkDir: vmDir,
		Network: true, SSHPort: ssh.Port, AuthorizedKey: ssh.Key.Public})
	if err != nil {
		return nil, err
	}
	defer vm.Kill()

	boot := Boot(ctx, vm, ssh, fw, o.Commit)
	results := []Result{boot}
	for _, t := range o.Tests {
		if !boot.Passed {
			results = append(results, Result{Name: t.Name, Firmware: fw, Reason: "not run: the boot failed", Skipped: true})
			continue
		}
		results = append(results, runTest(ctx, ssh, t, fw))
	}
	if boot.Lost {
		// Nothing to shut down cleanly: stop it now.
		vm.Kill()
	} else {
		// Power off cleanly so the console shows the shutdown too.
		poweroff(ctx, vm, ssh)
	}
	for i := range results {
		if err := writeResult(o.OutDir, vm.ConsoleLog, &results[i]); err != nil {
			return results, err
		}
	}
	return results, nil
}

// Boot waits for the guest to come up and checks it is healthy and, when
// commit is given, booted from that OSTree commit.
func Boot(ctx context.Context, vm *qemu.VM, ssh *qemu.SSH, fw, commit string) (r Result) {
	r = Result{Name: "boot", Firmware: fw}
	t0 := time.Now()
	defer func() { r.Duration = time.Since(t0).Seconds() }()
	bctx, cancel := bootContext(ctx, vm.ConsoleLen)
	defer cancel()
	fail := func(what string, err error) Result {
		r.Reason = fmt.Sprintf("%s: %v", what, budgetErr(bctx, err))
		r.Output = tail(vm.Console(), 30)
		r.Duration = time.Since(t0).Seconds()
		return r
	}
	// The console shows the kernel and then the login prompt; systemd's
	// "Reached target ... Multi-User System" line is not always there:
	// once the serial getty takes the console, systemd 252 can lose status
	// lines (seen under TCG with UEFI: no "Started ssh.service" and no
	// multi-user line, though the guest reached both). So multi-user is
	// asked of the guest itself, over ssh.
	for _, step := range []struct {
		re  *regexp.Regexp
		dst *float64
	}{{kernelRE, &r.Kernel}, {loginRE, &r.Login}} {
		if _, err := vm.WaitFor(bctx, step.re, LostRE); err != nil {
			if line := LostLine(vm.Console()); line != "" {
				vm.Kill()
				r.Lost = true
				r.Reason = fmt.Sprintf("boot lost after %.0fs, VM stopped: the console says %q", time.Since(vm.Started).Seconds(), line)
				r.Output = tail(vm.Console(), 30)
				return r
			}
			return fail("waiting for "+step.re.String(), err)
		}
		*step.dst = time.Since(vm.Started).Seconds()
	}
	if err := ssh.WaitReady(bctx); err != nil {
		return fail("ssh", err)
	}
	out, _, err := ssh.Run(bctx, nil, "systemctl is-system-running --wait; systemctl show --value -p ActiveEnterTimestampMonotonic multi-user.target; systemctl --failed --no-legend --plain")
	if err != nil {
		return fail("systemctl", err)
	}
	lines := strings.SplitN(out, "\n", 3)
	for len(lines) < 3 {
		lines = append(lines, "")
	}
	if state := strings.TrimSpace(lines[0]); state != "running" {
		r.Reason = fmt.Sprintf("system state is %q, not running; failed units:\n%s", state, strings.TrimSpace(lines[2]))
		r.Output = tail(vm.Console(), 30)
		return r
	}
	// The guest's monotonic clock starts with its kernel, which the
	// console showed r.Kernel seconds after QEMU started.
	us, err := strconv.ParseInt(strings.TrimSpace(lines[1]), 10, 64)
	if err != nil || us <= 0 {
		r.Reason = fmt.Sprintf("the system is running but multi-user.target is not active (entered at %q)", strings.TrimSpace(lines[1]))
		r.Output = tail(vm.Console(), 30)
		return r
	}
	r.MultiUser = r.Kernel + float64(us)/1e6
	if m := FailRE.FindString(vm.Console()); m != "" {
		r.Reason = "console shows " + m
		return r
	}
	if commit != "" {
		out, _, err := ssh.Run(bctx, nil, "ostree admin status")
		if err != nil {
			return fail("ostree admin status", err)
		}
		if got := bootedCommit(out); got != commit {
			r.Reason = fmt.Sprintf("booted deployment is %q, want the build's commit %s:\n%s", got, commit, strings.TrimSpace(out))
			return r
		}
	}
	r.Passed = true
	return r
}

func runTest(ctx context.Context, ssh *qemu.SSH, t Test, fw string) Result {
	r := Result{Name: t.Name, Firmware: fw}
	t0 := time.Now()
	data, err := os.ReadFile(t.Path)
	if err != nil {
		r.Reason = err.Error()
		return r
	}
	remote := "/run/cosa-tests/" + t.Name
	if _, code, err := ssh.Run(ctx, bytes.NewReader(data), "mkdir -p /run/cosa-tests && cat > "+remote+" && chmod 0755 "+remote); err != nil || code != 0 {
		r.Reason = fmt.Sprintf("copying the test into the guest failed (exit %d): %v", code, err)
		return r
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	out, code, err := ssh.Run(tctx, nil, remote)
	r.Duration = time.Since(t0).Seconds()
	r.Output = tail(out, 50)
	switch {
	case err != nil:
		r.Reason = "ssh: " + err.Error()
	case code != 0:
		r.Reason = fmt.Sprintf("exit status %d", code)
	default:
		r.Passed = true
	}
	return r
}

func poweroff(ctx context.Context, vm *qemu.VM, ssh *qemu.SSH) {
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	ssh.Run(pctx, nil, "systemctl --no-block poweroff")
	vm.Wait(pctx)
}

// writeResult saves r and the console next to it, and records where the
// console went in r.
func writeResult(outDir, consoleLog string, r *Result) error {
	dir := filepath.Join(outDir, r.Name+"-"+r.Firmware)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	con, _ := os.ReadFile(consoleLog)
	r.ConsoleFile = filepath.Join(dir, "console.txt")
	if err := os.WriteFile(r.ConsoleFile, con, 0o644); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	return os.WriteFile(filepath.Join(dir, "result.json"), append(b, '\n'), 0o644)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var bootedRE = regexp.MustCompile(`(?m)^\* \S+ ([0-9a-f]{64})\.\d+`)

// bootedCommit finds the booted deployment's commit in `ostree admin status`.
func bootedCommit(status string) string {
	if m := bootedRE.FindStringSubmatch(status); m != nil {
		return m[1]
	}
	return ""
}
