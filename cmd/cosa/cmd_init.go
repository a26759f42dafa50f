package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/workdir"
)

type initOptions struct {
	Source string
	Branch string
	Force  bool
}

func newInitCmd(g *globals) *cobra.Command {
	o := &initOptions{}
	c := &cobra.Command{
		Use: "init [SOURCE]",
		Example: `  cosa init                                  # the built-in default config
  cosa init https://example.com/os-config.git --branch stable
  cosa init ../my-config
  cosa -C ~/os init --force ../my-config`,
		Short: "Create a working directory from a config (git URL, local dir, or the built-in default)",
		Args:  maxArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Source = args[0]
			}
			return runInit(c.Context(), g, o)
		},
	}
	c.Flags().BoolVar(&o.Force, "force", false, "initialize a non-empty directory, replacing src/config")
	c.Flags().StringVar(&o.Branch, "branch", "", "git branch to check out (git sources only)")
	return c
}

func runInit(ctx context.Context, g *globals, o *initOptions) error {
	if o.Branch != "" && (o.Source == "" || !workdir.IsGitURL(o.Source)) {
		return usageError{fmt.Errorf("--branch needs a git URL as the source")}
	}
	if o.Source != "" && workdir.IsGitURL(o.Source) {
		if err := needTools("git"); err != nil {
			return err
		}
	}
	// Init checks the config before it writes anything: a bad config
	// fails now, not at the first build, and leaves the directory as it was.
	w, err := workdir.Init(ctx, g.Workdir, workdir.InitOptions{Source: o.Source, Branch: o.Branch, Force: o.Force})
	if err != nil {
		return err
	}
	src := o.Source
	if src == "" {
		src = "the built-in default config"
	}
	g.result("init", map[string]any{"workdir": w.Root, "source": o.Source, "branch": o.Branch},
		fmt.Sprintf("Initialized %s from %s", w.Root, src))
	return nil
}
