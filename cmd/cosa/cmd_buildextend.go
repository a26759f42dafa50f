package main

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/extend"
	"github.com/cosa-build/cosa/pkg/images"
)

type buildextendOptions struct {
	Build string
	Force bool
}

// newBuildextendCmds makes one buildextend-<platform> command per platform.
func newBuildextendCmds(g *globals) []*cobra.Command {
	var cmds []*cobra.Command
	for _, p := range images.Platforms() {
		p := p
		o := &buildextendOptions{}
		c := &cobra.Command{
			Use:   "buildextend-" + string(p) + " [--build ID] [--force]",
			Short: "Add the " + string(p) + " disk image to a build",
			Args:  maxArgs(0),
			RunE: func(c *cobra.Command, args []string) error {
				w, err := g.openWorkdir()
				if err != nil {
					return err
				}
				cfg, err := w.LoadConfig()
				if err != nil {
					return err
				}
				d, err := g.buildsDir(w)
				if err != nil {
					return err
				}
				id, err := resolveBuild(d, o.Build)
				if err != nil {
					return err
				}
				logf, err := openLog(w.TmpDir(), "buildextend-"+string(p)+".log")
				if err != nil {
					return err
				}
				defer logf.Close()
				return extend.BuildExtend(c.Context(), extend.Options{
					Workdir: w, Config: cfg, Dir: d, BuildID: id, Arch: compose.BaseArch(), Platform: p, Force: o.Force,
					Events: g.events(), Log: logf, Out: g.Stdout,
				})
			},
		}
		c.Flags().StringVar(&o.Build, "build", "latest", "build id")
		c.Flags().BoolVar(&o.Force, "force", false, "rebuild the image even if the build has one")
		cmds = append(cmds, c)
	}
	return cmds
}

func (g *globals) events() *images.Printer {
	if g.JSON {
		return &images.Printer{W: g.Stdout, JSON: true}
	}
	return &images.Printer{W: g.Stderr}
}

func openLog(tmp, name string) (*os.File, error) {
	dir := filepath.Join(tmp, "logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return os.Create(filepath.Join(dir, name))
}
