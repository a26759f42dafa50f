package workdir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/config"
	defaultconfig "github.com/cosa-build/cosa/src/config"
)

// InitOptions configure Init.
type InitOptions struct {
	Source string // git URL, local directory, or "" for the embedded default
	Branch string // git branch (git sources only)
	Force  bool   // allow a non-empty dir; replaces src/config
}

// IsGitURL tells a git remote from a local path.
func IsGitURL(s string) bool {
	if strings.Contains(s, "://") {
		return true
	}
	// scp-like git@host:path, but not a local path containing ':'
	if i := strings.Index(s, ":"); i > 0 && !strings.Contains(s[:i], "/") {
		if _, err := os.Stat(s); err != nil {
			return true
		}
	}
	return false
}

// Init creates the working directory layout at dir and fills src/config.
// The config is fetched into a temp dir outside the workdir and checked
// there; only a config that loads is moved in (renamed into place), so a
// bad or unreachable source leaves dir exactly as it was: not created, or
// not touched. Config errors name the files in the source.
func Init(ctx context.Context, dir string, o InitOptions) (w *Workdir, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if o.Branch != "" && (o.Source == "" || !IsGitURL(o.Source)) {
		return nil, fmt.Errorf("--branch needs a git URL as the source")
	}
	switch entries, err := os.ReadDir(abs); {
	case err == nil && len(entries) > 0 && !o.Force:
		return nil, fmt.Errorf("%s is not empty; use --force to initialize it anyway (src/config is then replaced)", abs)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}

	fetched, err := os.MkdirTemp("", "cosa-init-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(fetched)
	target := filepath.Join(fetched, "config")
	// display is how config errors name the source's files.
	display := ""
	switch {
	case o.Source == "":
		err = writeFS(defaultconfig.FS, target)
	case IsGitURL(o.Source):
		display = "."
		args := []string{"clone", "--quiet", "--recurse-submodules"}
		if o.Branch != "" {
			args = append(args, "--branch", o.Branch)
		}
		args = append(args, "--", o.Source, target)
		c := hostcmd.Command("git", args...)
		c.Display = "git clone " + o.Source
		err = c.Run(ctx)
	default:
		display = o.Source
		var st os.FileInfo
		if st, err = os.Stat(o.Source); err == nil && !st.IsDir() {
			err = fmt.Errorf("%s is not a directory", o.Source)
		}
		// Copy the tree a symlinked source points at, not the link.
		var src string
		if err == nil {
			src, err = filepath.EvalSymlinks(o.Source)
		}
		if err == nil {
			err = copyTree(src, target)
		}
	}
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(target, "manifest.yaml")); err != nil {
		return nil, fmt.Errorf("the config source %q has no manifest.yaml", o.Source)
	}
	if _, err := config.LoadAs(target, display); err != nil {
		if display == "." {
			// Files of a clone are named as in the repository.
			return nil, fmt.Errorf("%s: %w", o.Source, err)
		}
		return nil, err
	}

	// On failure from here on, remove the directories made here
	// (innermost first; only empty ones go, so nothing else is touched).
	var created []string
	defer func() {
		if err != nil {
			for i := len(created) - 1; i >= 0; i-- {
				os.Remove(created[i])
			}
		}
	}()
	if err := mkdirAllTrack(filepath.Join(abs, "src"), &created); err != nil {
		return nil, err
	}
	w = &Workdir{Root: abs, dir: dir}
	staging, err := os.MkdirTemp(filepath.Join(abs, "src"), ".config-new-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(staging)
	staged := filepath.Join(staging, "config")
	if err := os.Rename(target, staged); err != nil {
		// The temp dir is on another filesystem.
		if err := copyTree(target, staged); err != nil {
			return nil, err
		}
	}
	final := w.ConfigDir()
	old := ""
	if _, err := os.Lstat(final); err == nil {
		old = filepath.Join(staging, "old")
		if err := os.Rename(final, old); err != nil {
			return nil, err
		}
	}
	if err := os.Rename(staged, final); err != nil {
		if old != "" {
			os.Rename(old, final) // put the previous config back
		}
		return nil, err
	}
	if err := w.makeDirs(); err != nil {
		return nil, err
	}
	return w, nil
}

// mkdirAllTrack is os.MkdirAll that appends the directories it creates to
// *created, outermost first.
func mkdirAllTrack(dir string, created *[]string) error {
	var missing []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil || p == filepath.Dir(p) {
			break
		}
		missing = append(missing, p)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		*created = append(*created, missing[i])
	}
	return nil
}

// writeFS writes an embedded tree.
func writeFS(fsys fs.FS, dst string) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out := filepath.Join(dst, p)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		// embed drops file modes: anything starting with "#!" is a script
		// (postprocess, tests, helpers shipped in overlays) and must stay
		// executable.
		mode := os.FileMode(0o644)
		if bytes.HasPrefix(data, []byte("#!")) {
			mode = 0o755
		}
		return os.WriteFile(out, data, mode)
	})
}

// copyTree copies a directory tree keeping modes and symlinks as they are.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, out)
		case info.IsDir():
			return os.MkdirAll(out, info.Mode().Perm())
		case info.Mode().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, in); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		default:
			return fmt.Errorf("%s: cannot copy %s", p, info.Mode().Type())
		}
	})
}
