package compose

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
)

// sandboxScript runs inside fresh mount/pid/net/uts/ipc namespaces: it gives
// the root the API filesystems programs expect, binds the host directories
// asked for, then chroots. Everything it mounts dies with the namespace, so a
// crash leaves no mounts behind on the host.
const sandboxScript = `set -e
R="$1"; shift
mount --make-rprivate /
mount -t proc proc "$R/proc"
mount -t sysfs -o ro sysfs "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
while [ "$1" != "--" ]; do
  mkdir -p "$R$2"
  mount --bind "$1" "$R$2"
  shift 2
done
shift
exec chroot "$R" "$@"
`

// Bind is a host directory made visible inside the sandbox.
type Bind struct{ Host, Guest string }

// RunInRoot runs argv chrooted into root, with no network (a new network
// namespace holds only a down loopback) and its own pid namespace, so
// nothing it starts can outlive it. Output goes to out; on failure the error
// carries the output's last lines.
func RunInRoot(ctx context.Context, root string, binds []Bind, argv []string, out io.Writer) error {
	args := []string{"-c", sandboxScript, "cosa-sandbox", root}
	for _, b := range binds {
		args = append(args, b.Host, b.Guest)
	}
	args = append(args, "--")
	args = append(args, argv...)
	cmd := exec.CommandContext(ctx, "/bin/sh", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		// If cosa is killed, the sandbox goes too, taking every process
		// in its pid namespace with it.
		Pdeathsig: syscall.SIGKILL,
	}
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", "SYSTEMD_OFFLINE=1",
	}
	tail := &tailWriter{max: 40}
	w := io.Writer(tail)
	if out != nil {
		w = io.MultiWriter(out, tail)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s (in %s): %v\n%s", strings.Join(argv, " "), root, err, tail.String())
	}
	return nil
}

// tailWriter keeps the last max lines written to it.
type tailWriter struct {
	max   int
	lines []string
	part  string
}

func (t *tailWriter) Write(p []byte) (int, error) {
	s := t.part + string(p)
	parts := strings.Split(s, "\n")
	t.part = parts[len(parts)-1]
	t.lines = append(t.lines, parts[:len(parts)-1]...)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	l := t.lines
	if t.part != "" {
		l = append(l, t.part)
	}
	return strings.Join(l, "\n")
}
