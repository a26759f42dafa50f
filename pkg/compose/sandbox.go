package compose

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/cosa-build/cosa/pkg/sandbox"
)

// Bind is a host directory made visible inside the sandbox.
type Bind = sandbox.Bind

// sandboxEnv is the whole environment a sandboxed command gets: nothing
// of the caller's (AWS_* and the like) reaches code from packages.
var sandboxEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", "SYSTEMD_OFFLINE=1",
}

// RunInRoot runs argv chrooted into root in a sandbox (pkg/sandbox): its
// own user namespace where root is an unprivileged id on the host, no
// network, a minimal /dev, its own pid namespace so nothing it starts can
// outlive it. Output goes to out; on failure the error carries the
// output's last lines.
func RunInRoot(ctx context.Context, root string, binds []Bind, argv []string, out io.Writer) error {
	tail := &tailWriter{max: 40}
	w := io.Writer(tail)
	if out != nil {
		w = io.MultiWriter(out, tail)
	}
	err := sandbox.Run(ctx, sandbox.Spec{Root: root, Chroot: true, Binds: binds, Argv: argv, Env: sandboxEnv}, w, w)
	if err != nil {
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
