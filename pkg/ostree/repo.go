package ostree

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Mode is an OSTree repository mode (see ostree-init(1)).
type Mode string

const (
	// ModeBareUser stores ownership and xattrs in user xattrs, so it works
	// for any user and keeps file content uncompressed for fast checkouts.
	ModeBareUser Mode = "bare-user"
	// ModeBare stores real ownership; needs root.
	ModeBare Mode = "bare"
	// ModeArchive stores zlib-compressed objects; what is shipped and served.
	ModeArchive Mode = "archive"
)

// Repo is an OSTree repository on disk.
type Repo struct {
	Path string
}

// Error is a failed ostree invocation.
type Error struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *Error) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if lines := strings.Split(msg, "\n"); len(lines) > 5 {
		msg = strings.Join(lines[len(lines)-5:], "\n")
	}
	if msg == "" {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("ostree %s: %s", strings.Join(e.Args, " "), msg)
}

func (e *Error) Unwrap() error { return e.Err }

// run executes ostree with args and returns its stdout.
func run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ostree", args...)
	// An ostree left running after cosa is killed would keep the repo
	// locked and keep writing; it dies with its parent instead.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &Error{Args: args, Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
}

// run runs ostree sub on r. Callers put "--" before positional commit and
// ref arguments: those come from meta.json, which may come from a bucket
// cosa did not write, and one starting with "-" must not become an option.
func (r *Repo) run(ctx context.Context, sub string, args ...string) (string, error) {
	return run(ctx, append([]string{sub, "--repo=" + r.Path}, args...)...)
}

// Open returns the repository at path, creating it with mode if it does not exist.
func Open(ctx context.Context, path string, mode Mode) (*Repo, error) {
	r := &Repo{Path: path}
	if _, err := os.Stat(path + "/config"); err == nil {
		return r, nil
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, err
	}
	if _, err := r.run(ctx, "init", "--mode="+string(mode)); err != nil {
		return nil, err
	}
	return r, nil
}

// SetConfig sets key (GROUP.NAME, e.g. "archive.zlib-level") in the
// repository's config file.
func (r *Repo) SetConfig(ctx context.Context, key, value string) error {
	_, err := r.run(ctx, "config", "set", key, value)
	return err
}

// GetConfig reads key (GROUP.NAME) from the repository's config file.
func (r *Repo) GetConfig(ctx context.Context, key string) (string, error) {
	out, err := r.run(ctx, "config", "get", key)
	return strings.TrimSpace(out), err
}

// Version returns the version of the ostree tool, e.g. "2022.7".
func Version(ctx context.Context) (string, error) {
	out, err := run(ctx, "--version")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "Version:"); ok {
			return strings.Trim(strings.TrimSpace(v), "'"), nil
		}
	}
	return "", fmt.Errorf("ostree --version: no Version line in %q", out)
}
