package qemu

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cosa-build/cosa/internal/hostcmd"
)

// SSHKey is a throwaway key pair made for one VM.
type SSHKey struct {
	Private string // path
	Public  string // the public key line
}

// NewSSHKey makes an ed25519 key pair in dir with ssh-keygen.
func NewSSHKey(ctx context.Context, dir string) (*SSHKey, error) {
	priv := filepath.Join(dir, "id_ed25519")
	os.Remove(priv)
	os.Remove(priv + ".pub")
	if err := hostcmd.Run(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cosa", "-f", priv); err != nil {
		return nil, fmt.Errorf("%w (ssh-keygen is in openssh-client)", err)
	}
	pub, err := os.ReadFile(priv + ".pub")
	if err != nil {
		return nil, err
	}
	return &SSHKey{Private: priv, Public: strings.TrimSpace(string(pub))}, nil
}

// SSH runs commands as root (or User) in a guest reachable on a loopback
// port.
type SSH struct {
	Port int
	Key  *SSHKey
	// User logs in; "" is root.
	User string
}

// NewSSH makes a key pair in dir and picks a free loopback port: what a
// VM needs (Options.SSHPort, Options.AuthorizedKey) for the host to reach
// it over ssh.
func NewSSH(ctx context.Context, dir string) (*SSH, error) {
	key, err := NewSSHKey(ctx, dir)
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return &SSH{Port: port, Key: key}, nil
}

// Args is the ssh command line (without the remote command).
func (s *SSH) Args() []string {
	return []string{"ssh", "-i", s.Key.Private, "-p", strconv.Itoa(s.Port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", cmp.Or(s.User, "root") + "@127.0.0.1"}
}

// Run runs cmd in the guest with stdin, returning combined output and
// the remote exit code (-1 when ssh itself failed).
func (s *SSH) Run(ctx context.Context, stdin io.Reader, cmd string) (string, int, error) {
	args := s.Args()
	c := hostcmd.Command(args[0], append(args[1:], cmd)...)
	var out bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = stdin, &out, &out
	err := c.Run(ctx)
	if ee, ok := err.(*hostcmd.Error); ok && ee.ExitCode >= 0 {
		// ssh exits 255 for its own errors.
		if ee.ExitCode == 255 {
			return out.String(), -1, fmt.Errorf("ssh: %s", strings.TrimSpace(out.String()))
		}
		return out.String(), ee.ExitCode, nil
	}
	if err != nil {
		return out.String(), -1, err
	}
	return out.String(), 0, nil
}

// WaitReady retries a trivial command until sshd accepts the key or ctx
// ends. sshd comes up some seconds after the login prompt under TCG.
func (s *SSH) WaitReady(ctx context.Context) error {
	delay := 500 * time.Millisecond
	var last error
	for {
		_, code, err := s.Run(ctx, nil, "true")
		if err == nil && code == 0 {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("guest ssh never became ready: %v", last)
		case <-time.After(delay):
		}
		if delay < 4*time.Second {
			delay *= 2
		}
	}
}
