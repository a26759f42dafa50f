package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/termsafe"
)

// listEntry is one row of `cosa list`, and its JSON form.
type listEntry struct {
	ID        string   `json:"id"`
	Arches    []string `json:"arches"`
	Timestamp string   `json:"timestamp,omitempty"`
	Commit    string   `json:"ostree-commit,omitempty"`
	Tags      []string `json:"tags"`
	OnDisk    bool     `json:"on-disk"`
}

func newListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List builds, newest first",
		Example: `  cosa list
  cosa list --json | jq -r '.result[0].id'`,
		Args: maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			_, d, err := g.openBuildsDir()
			if err != nil {
				return err
			}
			idx, err := d.ReadIndex()
			if err != nil {
				return err
			}
			// Tags by target in one pass: TagsOf per build is builds x tags,
			// and a fetched builds.json can list tens of thousands of each.
			tagsOf := map[string][]string{}
			for _, t := range idx.Tags {
				tagsOf[t.Target] = append(tagsOf[t.Target], t.Name)
			}
			rows := []listEntry{}
			for _, b := range idx.Builds {
				e := listEntry{ID: b.ID, Arches: b.Arches, Tags: tagsOf[b.ID], OnDisk: d.HasBuild(b.ID)}
				if e.Tags == nil {
					e.Tags = []string{}
				}
				if e.OnDisk && len(b.Arches) > 0 {
					if m, err := d.ReadMeta(b.ID, b.Arches[0]); err == nil {
						e.Timestamp, e.Commit = m.BuildTimestamp, m.OSTreeCommit
					}
				}
				rows = append(rows, e)
			}
			if g.JSON {
				g.result("list", map[string]any{"builds": rows}, "")
				return nil
			}
			if len(rows) == 0 {
				fmt.Fprintln(g.Stdout, "No builds.")
				return nil
			}
			tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BUILD\tARCHES\tTIMESTAMP\tCOMMIT\tTAGS")
			for _, r := range rows {
				commit := r.Commit
				if len(commit) > 12 {
					commit = commit[:12]
				}
				if !r.OnDisk {
					commit = "(not on disk)"
				}
				// Every field may come from a fetched builds.json or meta.json.
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", termsafe.String(r.ID), termsafe.String(strings.Join(r.Arches, ",")),
					termsafe.String(dash(r.Timestamp)), termsafe.String(dash(commit)), termsafe.String(dash(strings.Join(r.Tags, ","))))
			}
			return tw.Flush()
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
