package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/build"
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
			for _, id := range o.Builds {
				if err := build.ValidBuildID(id); err != nil {
					return usageError{err}
				}
			}
			if !o.DryRun {
				if err := needTools("ostree"); err != nil {
					return err
				}
			}
			w, d, err := g.openBuildsDir()
			if err != nil {
				return err
			}
			ctx := c.Context()
			// The OSTree repo is opened (and made, if missing) only once
			// there is something to remove, so that a dry run or a refused
			// plan writes nothing.
			var repo *ostree.Repo
			removeRefs := func(id string) error {
				if repo == nil {
					r, err := ostree.Open(ctx, w.RepoDir(), ostree.ModeBareUser)
					if err != nil {
						return err
					}
					repo = r
				}
				return builder.RefRemover(ctx, repo)(id)
			}
			remove, keep, err := prune.Run(ctx, d, prune.Options{KeepLastN: o.KeepLastN, Builds: o.Builds, DryRun: o.DryRun}, removeRefs)
			if err != nil {
				return err
			}
			verb := "Pruned"
			if o.DryRun {
				verb = "Would prune"
			} else if repo != nil {
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
