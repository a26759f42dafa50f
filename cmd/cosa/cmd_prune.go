package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/builder"
	"github.com/cosa-build/cosa/pkg/ostree"
	"github.com/cosa-build/cosa/pkg/prune"
)

type pruneOptions struct {
	KeepLastN int
	Builds    []string
	DryRun    bool
}

func newPruneCmd(g *globals) *cobra.Command {
	o := &pruneOptions{}
	c := &cobra.Command{
		Use:   "prune [--keep-last-n N | --build ID...] [--dry-run]",
		Short: "Delete old local builds and their OSTree commits (tagged builds are kept)",
		Args:  maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if o.KeepLastN < 1 {
				return usageError{fmt.Errorf("--keep-last-n must be at least 1")}
			}
			w, err := g.openWorkdir()
			if err != nil {
				return err
			}
			d, err := g.buildsDir(w)
			if err != nil {
				return err
			}
			ctx := c.Context()
			repo, err := ostree.Open(ctx, w.RepoDir(), ostree.ModeBareUser)
			if err != nil {
				return err
			}
			remove, keep, err := prune.Run(ctx, d, prune.Options{KeepLastN: o.KeepLastN, Builds: o.Builds, DryRun: o.DryRun},
				builder.RefRemover(ctx, repo))
			if err != nil {
				return err
			}
			verb := "Pruned"
			if o.DryRun {
				verb = "Would prune"
			} else if len(remove) > 0 {
				if err := repo.PruneRefsOnly(ctx); err != nil {
					return err
				}
			}
			if len(remove) == 0 {
				fmt.Fprintf(g.Stdout, "Nothing to prune; keeping %s\n", strings.Join(keep, ", "))
				return nil
			}
			fmt.Fprintf(g.Stdout, "%s %s; keeping %s\n", verb, strings.Join(remove, ", "), dash(strings.Join(keep, ", ")))
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&o.KeepLastN, "keep-last-n", builder.DefaultKeep, "number of newest builds to keep")
	f.StringArrayVar(&o.Builds, "build", nil, "prune exactly this build (repeatable)")
	f.BoolVar(&o.DryRun, "dry-run", false, "only print what would be pruned")
	return c
}
