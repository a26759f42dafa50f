package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/assemble"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/images"
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
		Example: `  cosa prune --dry-run
  cosa prune --keep-last-n 5
  cosa prune --build 12.20261122.dev.1 --build 12.20261123.dev.1`,
		Args: maxArgs(0),
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
				return assemble.RefRemover(ctx, repo)(id)
			}
			remove, keep, err := prune.Run(ctx, d, prune.Options{KeepLastN: o.KeepLastN, Builds: o.Builds, DryRun: o.DryRun,
				Cache: &images.Store{Dir: w.ObjectsDir()}}, removeRefs)
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
			text := fmt.Sprintf("%s %s; keeping %s", verb, strings.Join(remove, ", "), dash(strings.Join(keep, ", ")))
			if len(remove) == 0 {
				text = fmt.Sprintf("Nothing to prune; keeping %s", strings.Join(keep, ", "))
			}
			g.result("prune", map[string]any{"dry_run": o.DryRun, "pruned": nonNil(remove), "kept": nonNil(keep)}, text)
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&o.KeepLastN, "keep-last-n", assemble.DefaultKeep, "number of newest builds to keep")
	f.StringArrayVar(&o.Builds, "build", nil, "prune exactly this build (repeatable)")
	f.BoolVar(&o.DryRun, "dry-run", false, "only print what would be pruned")
	c.MarkFlagsMutuallyExclusive("keep-last-n", "build")
	return c
}

// nonNil makes an empty list a JSON [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
