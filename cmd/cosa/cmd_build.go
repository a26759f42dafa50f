package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/assemble"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/platform"
	"github.com/cosa-build/cosa/pkg/workdir"
)

type buildOptions struct {
	Force     bool
	Version   string
	SkipPrune bool
	Fetch     bool
	SkipImage bool
}

func newBuildCmd(g *globals) *cobra.Command {
	o := &buildOptions{}
	c := &cobra.Command{
		Use:   "build",
		Short: "Compose the OS, commit it to OSTree and record a new build (offline; no-op if inputs are unchanged)",
		Example: `  cosa build
  cosa build --fetch
  cosa build --skip-image        # only the OSTree commit, no qemu image
  cosa build --force --version 12.20261201.dev.0`,
		Args: maxArgs(0),
		Annotations: map[string]string{argsHint: "to make only the OSTree commit (no disk image) use --skip-image; " +
			"images are added with cosa buildextend-PLATFORM"},
		RunE: func(c *cobra.Command, args []string) error {
			if o.Version != "" {
				if err := build.ValidBuildID(o.Version); err != nil {
					return usageError{fmt.Errorf("--version: %w", err)}
				}
			}
			w, cfg, err := g.openConfig()
			if err != nil {
				return err
			}
			tools := []string{"mmdebstrap", "ostree", "tar"}
			if o.Fetch {
				tools = append(tools, "apt-get")
			}
			if err := needTools(tools...); err != nil {
				return err
			}
			if o.Fetch {
				fr, err := runFetch(c.Context(), g, w, cfg, &fetchOptions{})
				if err != nil {
					return err
				}
				g.note(fr.text())
			}
			logPath := filepath.Join(w.TmpDir(), "logs", "build.log")
			logf := &lazyLog{path: logPath}
			defer logf.Close()
			var imgs []platform.Platform
			if !o.SkipImage {
				imgs = []platform.Platform{platform.Must(platform.Qemu)}
			}
			res, err := assemble.Build(c.Context(), assemble.Options{
				Workdir: w, Config: cfg, Arch: compose.BaseArch(),
				Force: o.Force, Version: o.Version, SkipPrune: o.SkipPrune, Images: imgs, Events: g.events(),
				LockTimeout: g.LockTimeout, LockWait: g.Stderr, Progress: g.progress(), Out: g.summaryOut(), Log: logf,
			})
			if err != nil {
				// Point at the log only if a tool wrote to it; errors found
				// before that (say, no `cosa fetch` yet) stand on their own.
				if logf.written {
					return fmt.Errorf("%w\n(full log: %s)", err, logPath)
				}
				return err
			}
			return buildResult(g, w, res, compose.BaseArch())
		},
	}
	f := c.Flags()
	f.BoolVar(&o.Force, "force", false, "build even if the inputs, or the tree they make, are unchanged")
	f.StringVar(&o.Version, "version", "", "build id to use instead of <prefix>.<YYYYMMDD>.<stream>.<n>")
	f.BoolVar(&o.SkipPrune, "skip-prune", false, "do not prune old builds afterwards")
	f.BoolVar(&o.Fetch, "fetch", false, "run cosa fetch first (needs the network)")
	f.BoolVar(&o.SkipImage, "skip-image", false, "only make the OSTree commit, no qemu image")
	return c
}

// buildResult ends `cosa build`: the build (new or, unchanged, the
// latest), its commit and every artifact meta.json records. The text was
// already printed by the builder.
func buildResult(g *globals, w *workdir.Workdir, res *assemble.Result, arch string) error {
	payload := map[string]any{"build": res.BuildID, "arch": arch, "changed": !res.Unchanged, "commit": res.Commit}
	d, err := g.buildsDir(w)
	if err != nil {
		return err
	}
	m, err := d.ReadMeta(res.BuildID, arch)
	if err != nil {
		return err
	}
	payload["artifacts"] = artifactRefs(res.BuildID, arch, m)
	if len(res.Pruned) > 0 {
		payload["pruned"] = res.Pruned
	}
	g.result("build", payload, "")
	return nil
}

// lazyLog is a log file created (truncating the previous one) on the first
// write, so that a command failing before it runs anything, such as a build
// without a package cache, leaves the workdir and the last log as they were.
type lazyLog struct {
	path    string
	f       *os.File
	err     error
	written bool
}

func (l *lazyLog) Write(p []byte) (int, error) {
	if l.f == nil && l.err == nil {
		if l.err = os.MkdirAll(filepath.Dir(l.path), 0o755); l.err == nil {
			l.f, l.err = os.Create(l.path)
		}
	}
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.f.Write(p)
	if n > 0 {
		l.written = true
	}
	return n, err
}

// Close closes the file if it was created.
func (l *lazyLog) Close() error {
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}
