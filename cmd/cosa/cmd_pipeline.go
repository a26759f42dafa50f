package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/images"
	"github.com/cosa-build/cosa/pkg/workdir"
)

type pipelineRunOptions struct {
	Exports    []string
	Output     string
	Store      string
	OSTreeRepo string
	CacheGiB   int
}

func newPipelineCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "pipeline", Short: "Run image pipeline manifests directly",
		Example: "  cosa pipeline run builds/latest/x86_64/debian-ostree-12.20261122.dev.1-metal.x86_64.manifest.json --output /tmp/out"}
	o := &pipelineRunOptions{}
	run := &cobra.Command{
		Use:   "run MANIFEST.json [--export NAME]... [--output DIR]",
		Short: "Run a pipeline manifest (what buildextend saves next to each image)",
		Example: `  cosa pipeline run builds/latest/x86_64/debian-ostree-12.20261122.dev.1-qemu.x86_64.manifest.json
  cosa pipeline run qemu.manifest.json --export tree --output /tmp/out`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("pipeline run takes exactly one manifest file")}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			m, err := images.LoadManifest(args[0])
			if err != nil {
				return usageError{err}
			}
			store, repo := o.Store, o.OSTreeRepo
			if w, err := workdir.Open(g.Workdir); err == nil {
				if store == "" {
					store = filepath.Join(w.CacheDir(), "objects")
				}
				if repo == "" {
					repo = w.RepoDir()
				}
			}
			if store == "" {
				return usageError{fmt.Errorf("not in a cosa working directory: give --store DIR")}
			}
			exports := o.Exports
			if len(exports) == 0 {
				exports = []string{m.Pipelines[len(m.Pipelines)-1].Name}
			}
			logf, err := os.CreateTemp("", "cosa-pipeline-*.log")
			if err != nil {
				return err
			}
			defer logf.Close()
			en := &images.Engine{
				Store:   &images.Store{Dir: store, MaxSize: int64(o.CacheGiB) << 30},
				Scratch: filepath.Join(filepath.Dir(store), "pipeline-scratch"),
				Sources: images.Sources{OSTreeRepo: repo},
				Events:  g.events(),
				Log:     logf,
			}
			res, err := en.Run(c.Context(), m, exports)
			if err != nil {
				return fmt.Errorf("%w\n(full log: %s)", err, logf.Name())
			}
			defer res.Close()
			exported := map[string]string{}
			var lines []string
			for _, e := range exports {
				dst := res.Exports[e]
				if o.Output != "" {
					dst = filepath.Join(o.Output, e)
					if err := os.MkdirAll(o.Output, 0o755); err != nil {
						return err
					}
					os.RemoveAll(dst)
					if err := hostcmd.Run(c.Context(), "cp", "-a", "--sparse=always", "--reflink=auto", res.Exports[e], dst); err != nil {
						return fmt.Errorf("exporting %s: %w", e, err)
					}
				}
				exported[e] = dst
				lines = append(lines, fmt.Sprintf("exported %s: %s (%d stages run, %d pipelines cached)", e, dst, res.Ran, res.Cached))
			}
			g.result("pipeline run", map[string]any{"exports": exported, "stages_run": res.Ran, "pipelines_cached": res.Cached},
				strings.Join(lines, "\n"))
			return nil
		},
	}
	f := run.Flags()
	f.StringArrayVar(&o.Exports, "export", nil, "pipeline to export (default: the last one); repeatable")
	f.StringVar(&o.Output, "output", "", "copy exported trees to DIR/<pipeline>")
	f.StringVar(&o.Store, "store", "", "object store (default: the workdir's cache/objects)")
	f.StringVar(&o.OSTreeRepo, "ostree-repo", "", "OSTree repo to pull commits from (default: the workdir's tmp/repo)")
	f.IntVar(&o.CacheGiB, "cache-size", 20, "object store size cap in GiB (least recently used objects go first)")
	c.AddCommand(run)
	return c
}
