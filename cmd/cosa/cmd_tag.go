package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/termsafe"
)

type tagOptions struct {
	Tag         string
	Build       string
	Description string
}

func newTagCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "tag",
		Short: "Name builds (tagged builds are never pruned)",
		Example: `  cosa tag update --tag stable --build 12.20261122.dev.1
  cosa tag list
  cosa tag delete --tag stable`,
		// Without RunE, cobra prints help and exits 0 for `cosa tag bogus`.
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath())}
			}
			return c.Help()
		},
	}
	o := &tagOptions{}
	update := &cobra.Command{
		Use:   "update --tag NAME [--build ID]",
		Short: "Create a tag or move it to a build",
		Example: `  cosa tag update --tag stable                      # the latest build
  cosa tag update --tag stable --build 12.20261122.dev.1 --description "passed QA"`,
		Args: maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return runTag(g, c, "update", o)
		},
	}
	update.Flags().StringVar(&o.Tag, "tag", "", "tag name")
	update.Flags().StringVar(&o.Build, "build", "latest", "build id")
	update.Flags().StringVar(&o.Description, "description", "", "free text kept with the tag")
	del := &cobra.Command{
		Use:     "delete --tag NAME",
		Short:   "Delete a tag",
		Example: "  cosa tag delete --tag stable",
		Args:    maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return runTag(g, c, "delete", o)
		},
	}
	del.Flags().StringVar(&o.Tag, "tag", "", "tag name")
	list := &cobra.Command{
		Use:   "list",
		Short: "List tags",
		Example: `  cosa tag list
  cosa tag list --json`,
		Args: maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return runTag(g, c, "list", o)
		},
	}
	c.AddCommand(update, del, list)
	return c
}

func runTag(g *globals, c *cobra.Command, verb string, o *tagOptions) error {
	if verb != "list" && o.Tag == "" {
		return usageError{fmt.Errorf("--tag is required")}
	}
	if verb == "update" {
		if err := build.ValidTagName(o.Tag); err != nil {
			return usageError{err}
		}
		if o.Build != "latest" {
			if err := build.ValidBuildID(o.Build); err != nil {
				return usageError{err}
			}
		}
	}
	_, d, err := g.openBuildsDir()
	if err != nil {
		return err
	}
	if verb == "list" {
		idx, err := d.ReadIndex()
		if err != nil {
			return err
		}
		if g.JSON {
			tags := idx.Tags
			if tags == nil {
				tags = []build.Tag{}
			}
			g.result("tag list", map[string]any{"tags": tags}, "")
			return nil
		}
		if len(idx.Tags) == 0 {
			fmt.Fprintln(g.Stdout, "No tags.")
			return nil
		}
		tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TAG\tBUILD\tCREATED\tDESCRIPTION")
		for _, t := range idx.Tags {
			// Tags, descriptions included, may come from a fetched builds.json.
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", termsafe.String(t.Name), termsafe.String(t.Target),
				termsafe.String(t.Created), termsafe.String(dash(t.Description)))
		}
		return tw.Flush()
	}
	var payload map[string]any
	err = d.WithLock(c.Context(), "cosa tag", func() error {
		idx, err := d.ReadIndex()
		if err != nil {
			return err
		}
		if verb == "delete" {
			if !idx.DeleteTag(o.Tag) {
				return fmt.Errorf("no tag named %q", o.Tag)
			}
			payload = map[string]any{"tag": o.Tag}
		} else {
			id := o.Build
			if id == "latest" {
				if id, err = resolveBuild(d, id); err != nil {
					return err
				}
			}
			if idx.Find(id) == nil {
				return fmt.Errorf("build %s is not in builds.json", id)
			}
			if err := idx.SetTag(o.Tag, id, o.Description, time.Now()); err != nil {
				return err
			}
			payload = map[string]any{"tag": o.Tag, "build": id, "description": o.Description}
		}
		return d.WriteIndex(idx)
	})
	if err != nil {
		return err
	}
	g.result("tag "+verb, payload, "")
	return nil
}
