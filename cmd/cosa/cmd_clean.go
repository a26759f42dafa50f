package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/workdir"
)

func newCleanCmd(g *globals) *cobra.Command {
	o := workdir.CleanOptions{}
	c := &cobra.Command{
		Use:   "clean [--all] [--keep-packages]",
		Short: "Empty cache/ and tmp/ (--all: builds/ too); src/config is kept",
		Example: `  cosa clean
  cosa clean --keep-packages     # keep the downloaded packages: no network for the next build
  cosa clean --all               # builds/ too`,
		Args: maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			w, d, err := g.openBuildsDir()
			if err != nil {
				return err
			}
			// The same lock as build, fetch and prune: none of them may
			// find its cache or scratch dir emptied half way.
			return d.WithLock(c.Context(), "cosa clean", func() error {
				done, err := w.Clean(o)
				if err != nil {
					return err
				}
				kept := ""
				if o.KeepPackages {
					kept = " (kept the fetched packages)"
				}
				g.result("clean", map[string]any{"workdir": w.Root, "emptied": nonNil(done), "all": o.All, "kept_packages": o.KeepPackages},
					fmt.Sprintf("Emptied %s in %s%s", strings.Join(done, ", "), w.Root, kept))
				return nil
			})
		},
	}
	c.Flags().BoolVar(&o.All, "all", false, "also delete every build in builds/")
	c.Flags().BoolVar(&o.KeepPackages, "keep-packages", false, "keep what cosa fetch downloaded (cache/apt, cache/debs, the package lock), so the next build needs no network")
	return c
}
