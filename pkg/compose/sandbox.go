package compose

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/cosa-build/cosa/internal/hostcmd"
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
	tail := hostcmd.NewTail(40)
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
