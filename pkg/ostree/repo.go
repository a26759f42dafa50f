package ostree

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/cosa-build/cosa/internal/hostcmd"
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

// run executes ostree with args and returns its stdout. A failure is a
// *hostcmd.Error. The command dies with cosa (hostcmd's Pdeathsig): an
// ostree left running would keep the repo locked and keep writing.
func run(ctx context.Context, args ...string) (string, error) {
	return hostcmd.Output(ctx, "ostree", args...)
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
