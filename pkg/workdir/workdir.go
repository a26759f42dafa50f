// Package workdir knows the layout of a cosa working directory
// (docs/architecture.md#the-working-directory) and how `cosa init` creates one.
package workdir

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/config"
)

// Workdir is a cosa working directory.
type Workdir struct {
	Root string // absolute

	// dir is the workdir as the caller spelled it (e.g. "." or "../w"),
	// so that config errors name files the way the user can open them.
	// Empty means Root.
	dir string
}

// ConfigDir is src/config.
func (w *Workdir) ConfigDir() string { return filepath.Join(w.Root, "src", "config") }

// CacheDir is cache/: packages, indexes and the pipeline stage cache.
func (w *Workdir) CacheDir() string { return filepath.Join(w.Root, "cache") }

// TmpDir is tmp/: scratch space and the shared OSTree repo.
func (w *Workdir) TmpDir() string { return filepath.Join(w.Root, "tmp") }

// RepoDir is tmp/repo, the OSTree repo all builds commit to.
func (w *Workdir) RepoDir() string { return filepath.Join(w.Root, "tmp", "repo") }

// BuildsDir is builds/.
func (w *Workdir) BuildsDir() string { return filepath.Join(w.Root, "builds") }

// Open finds the workdir at dir: it must hold src/config/manifest.yaml.
// Missing cache/, tmp/ and builds/ are created, so a config checked out by
// hand (or this repository itself) works without `cosa init`.
func Open(dir string) (*Workdir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	w := &Workdir{Root: abs, dir: dir}
	if _, err := os.Stat(filepath.Join(w.ConfigDir(), config.ManifestFile)); err != nil {
		return nil, fmt.Errorf("%s is not a cosa working directory (no src/config/%s); run `cosa init` first", abs, config.ManifestFile)
	}
	if err := w.makeDirs(); err != nil {
		return nil, err
	}
	return w, nil
}

// makeDirs creates cache/, tmp/ and builds/.
func (w *Workdir) makeDirs() error {
	for _, d := range []string{w.CacheDir(), w.TmpDir(), w.BuildsDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// LoadConfig loads src/config. Errors name files under the workdir as it
// was given to Open or Init ("src/config/manifest.yaml" for ".",
// "/abs/w/src/config/manifest.yaml" for "/abs/w"), which is a path the user
// can open from where they ran cosa, as docs/config.md promises.
func (w *Workdir) LoadConfig() (*config.Config, error) {
	return config.Load(w.displayConfigDir())
}

// displayConfigDir is src/config under the workdir as the caller spelled
// it. A relative spelling is used only while it still names Root from the
// current directory; otherwise (or if the current directory is gone) the
// absolute path is.
func (w *Workdir) displayConfigDir() string {
	if w.dir != "" && !filepath.IsAbs(w.dir) {
		if abs, err := filepath.Abs(w.dir); err == nil && abs == w.Root {
			return filepath.Join(w.dir, "src", "config")
		}
	}
	return w.ConfigDir()
}

// GitInfo describes the config's git state for meta.json.
type GitInfo struct {
	Rev   string // empty if the config is not a git checkout
	Dirty bool
}

// ConfigGit reads the config repo's HEAD and whether it has changes.
func (w *Workdir) ConfigGit(ctx context.Context) GitInfo {
	dir := w.ConfigDir()
	if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		return GitInfo{}
	}
	rev, err := hostcmd.Output(ctx, "git", "-C", dir, "rev-parse", "HEAD")
	if err != nil {
		return GitInfo{}
	}
	st, err := hostcmd.Output(ctx, "git", "-C", dir, "status", "--porcelain")
	return GitInfo{Rev: strings.TrimSpace(rev), Dirty: err != nil || len(strings.TrimSpace(st)) > 0}
}
