package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/termsafe"
)

type metaOptions struct {
	Build string
	Arch  string
	Get   []string
	Set   []string
	Dump  bool
}

func newMetaCmd(g *globals) *cobra.Command {
	o := &metaOptions{}
	c := &cobra.Command{
		Use:   "meta (--get KEY | --set KEY=VALUE | --dump) [--build ID]",
		Short: "Read or change a build's meta.json",
		Example: `  cosa meta --get ostree-commit
  cosa meta --get images.qemu.sha256 --build 12.20261122.dev.1
  cosa meta --set summary="release candidate"
  cosa meta --dump | jq .pkgdiff`,
		Args: maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			_, d, id, err := g.openBuild(o.Build)
			if err != nil {
				return err
			}
			if len(o.Set) > 0 {
				for _, kv := range o.Set {
					if !strings.Contains(kv, "=") {
						return usageError{fmt.Errorf("--set %q: want KEY=VALUE", kv)}
					}
				}
				set := map[string]string{}
				if err := d.UpdateMeta(c.Context(), id, o.Arch, func(m *build.Meta) error {
					for _, kv := range o.Set {
						k, v, _ := strings.Cut(kv, "=")
						if err := m.Set(k, v); err != nil {
							return fmt.Errorf("--set %s: %w", k, err)
						}
						set[k] = v
					}
					return nil
				}); err != nil {
					return err
				}
				g.result("meta", map[string]any{"build": id, "arch": o.Arch, "set": set}, "")
				return nil
			}
			if o.Dump {
				// Unchecked: --dump is how to look at a meta.json that
				// other commands refuse.
				m, err := d.ReadMetaUnchecked(id, o.Arch)
				if err != nil {
					return err
				}
				data, err := m.Dump()
				if err != nil {
					return err
				}
				if g.JSON {
					g.result("meta", map[string]any{"build": id, "arch": o.Arch, "meta": json.RawMessage(data)}, "")
					return nil
				}
				_, err = g.Stdout.Write(termsafe.JSON(data))
				return err
			}
			m, err := d.ReadMeta(id, o.Arch)
			if err != nil {
				return err
			}
			values := map[string]any{}
			for _, k := range o.Get {
				v, err := m.Get(k)
				if err != nil {
					return fmt.Errorf("build %s: %w", id, err)
				}
				if g.JSON {
					values[k] = v
					continue
				}
				// Values may come from a fetched meta.json; a newline in
				// one is kept, a control character is shown escaped.
				if s, ok := v.(string); ok {
					fmt.Fprintln(g.Stdout, termsafe.Text(s))
					continue
				}
				b, _ := json.MarshalIndent(v, "", "  ")
				fmt.Fprintf(g.Stdout, "%s\n", termsafe.JSON(b))
			}
			if g.JSON {
				g.result("meta", map[string]any{"build": id, "arch": o.Arch, "values": values}, "")
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.Build, "build", "latest", "build id or tag")
	f.StringVar(&o.Arch, "arch", compose.BaseArch(), "architecture")
	f.StringArrayVar(&o.Get, "get", nil, "print the value at KEY (dotted path, e.g. images.ostree.sha256)")
	f.StringArrayVar(&o.Set, "set", nil, "set KEY=VALUE (VALUE is JSON if it parses, else a string); validated before writing")
	f.BoolVar(&o.Dump, "dump", false, "print the whole meta.json")
	c.MarkFlagsOneRequired("get", "set", "dump")
	c.MarkFlagsMutuallyExclusive("get", "set", "dump")
	return c
}

// resolveBuild maps "latest", an id or a tag to an existing local build id.
func resolveBuild(d *build.Dir, id string) (string, error) {
	if id == "" || id == "latest" {
		l, err := d.Latest()
		if err != nil {
			return "", err
		}
		if l == "" {
			return "", fmt.Errorf("there are no builds yet; run `cosa build`")
		}
		return l, nil
	}
	if build.ValidBuildID(id) == nil && d.HasBuild(id) {
		return id, nil
	}
	// A tag name (completion offers them too); a build of that name wins.
	if target := tagTarget(d, id); target != "" {
		if !d.HasBuild(target) {
			return "", fmt.Errorf("tag %s points at build %s, which is not in %s", id, target, d.Root)
		}
		return target, nil
	}
	if err := build.ValidBuildID(id); err != nil {
		return "", usageError{err}
	}
	return "", fmt.Errorf("build %s is not in %s", id, d.Root)
}

// tagTarget is the build a tag names, or "".
func tagTarget(d *build.Dir, name string) string {
	idx, err := d.ReadIndex()
	if err != nil {
		return ""
	}
	for _, t := range idx.Tags {
		if t.Name == name {
			return t.Target
		}
	}
	return ""
}
