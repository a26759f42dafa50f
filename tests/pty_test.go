package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// openPTY opens a pseudo-terminal pair with the kernel's ptmx interface
// (posix_openpt + unlockpt + ptsname without libc).
func openPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		master.Close()
		return nil, nil, e
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		master.Close()
		return nil, nil, e
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

// terminal collects what appears on a pty master.
type terminal struct {
	mu      sync.Mutex
	text    strings.Builder
	changed chan struct{}
}

func (tm *terminal) read(f *os.File) {
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		tm.mu.Lock()
		tm.text.Write(buf[:n])
		close(tm.changed)
		tm.changed = make(chan struct{})
		tm.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// waitFor blocks until s appears after offset from, returning the offset
// just past it.
func (tm *terminal) waitFor(ctx context.Context, from int, s string) (int, error) {
	for {
		tm.mu.Lock()
		text, ch := tm.text.String(), tm.changed
		tm.mu.Unlock()
		if i := strings.Index(text[from:], s); i >= 0 {
			return from + i + len(s), nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for %q: %v; terminal tail:\n%s", s, ctx.Err(), tail(text, 15))
		}
	}
}

// consoleLogin runs `cosa run -c` on a pty like a user at a terminal: the
// login prompt appears, root logs in with the password the build set, a
// command runs in the guest, and Ctrl-A X ends QEMU and cosa.
func consoleLogin(t *testing.T, w string) {
	master, slave, err := openPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	cmd := exec.Command(cosaBin, "run", "-c", "--bios")
	cmd.Dir = w
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	tm := &terminal{changed: make(chan struct{})}
	go tm.read(master)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Second)
	defer cancel()
	t0 := time.Now()
	step := func(from int, want, send string) int {
		t.Helper()
		off, err := tm.waitFor(ctx, from, want)
		if err != nil {
			cmd.Process.Kill()
			t.Fatal(err)
		}
		if send != "" {
			master.WriteString(send)
		}
		return off
	}
	off := step(0, "login: ", "root\r")
	off = step(off, "Password: ", "cosa\r")
	off = step(off, "# ", "echo COSA-$((6*7))\r")
	step(off, "COSA-42", "\x01x") // Ctrl-A X: QEMU's escape to quit
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("cosa run -c exited with %v", err)
		}
	case <-ctx.Done():
		cmd.Process.Kill()
		t.Fatal("cosa run -c did not exit after Ctrl-A X")
	}
	t.Logf("e2e: interactive console login and command via cosa run -c in %s", time.Since(t0).Round(time.Second))
}
