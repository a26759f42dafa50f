package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/termsafe"
)

func newConfigCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Show or check the config (src/config or a given directory)",
		Long: `Show or check a cosa config without building anything and without the
network. DIR defaults to the working directory's src/config; see
docs/config.md for the keys.`,
		Example: `  cosa config validate
  cosa config show`,
	}
	c.AddCommand(newConfigShowCmd(g), newConfigValidateCmd(g))
	return c
}

// loadConfigArg loads DIR when given, else the workdir's config.
func (g *globals) loadConfigArg(args []string) (*config.Config, string, error) {
	if len(args) == 1 {
		cfg, err := config.Load(args[0])
		return cfg, args[0], err
	}
	w, err := g.openWorkdir()
	if err != nil {
		return nil, "", err
	}
	cfg, err := w.LoadConfig()
	return cfg, w.ConfigDir(), err
}

// configShowResult is the --json result of `cosa config show`.
type configShowResult struct {
	Config   string           `json:"config"`
	Files    []string         `json:"files"`
	Manifest []config.Setting `json:"manifest"`
	Image    []config.Setting `json:"image"`
}

func newConfigShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show [DIR]",
		Short: "Print the merged config with the file:line each value came from",
		Long: `Print the config as cosa sees it: manifest.yaml merged with its includes
and image.yaml, defaults applied, each value followed by the file and line
it came from ("default" when the key was not given). The output is YAML
that loads back to the same config. Under --json the result event lists
every value as {key, value, file, line} (line 0 and "default": true for a
default).`,
		Example: `  cosa config show
  cosa config show path/to/config
  cosa config show --json | jq '.result.manifest[] | select(.key == "distro.suite")'`,
		Args: maxArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, dir, err := g.loadConfigArg(args)
			if err != nil {
				return err
			}
			g.result("config show", configShowResult{
				Config: dir, Files: cfg.Files,
				Manifest: cfg.Settings(config.DocManifest), Image: cfg.Settings(config.DocImage),
			}, termsafe.Text(strings.TrimSuffix(cfg.Show(), "\n")))
			return nil
		},
	}
}

// configValidateResult is the --json result of `cosa config validate`.
type configValidateResult struct {
	Config   string   `json:"config"`
	OK       bool     `json:"ok"`
	Files    []string `json:"files"`
	Name     string   `json:"name"`
	Ref      string   `json:"ref"`
	Arch     string   `json:"arch"`
	Packages int      `json:"packages"`
	Repos    int      `json:"repos"`
	Users    int      `json:"users"`
}

func newConfigValidateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check the config without building (no network; for CI lint steps)",
		Long: `Load and check the config as every build does: YAML syntax, unknown keys,
types, values, paths (postprocess scripts, includes, repo keyrings, overlay
dirs). Nothing is fetched or built and the network is not used.

Exit status 0 and a one-line summary when the config is valid; exit status
2 and one line naming the file, line and key at fault otherwise.`,
		Example: `  cosa config validate
  cosa config validate path/to/config    # e.g. in a CI lint step
  cosa config validate --json`,
		Args: maxArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, dir, err := g.loadConfigArg(args)
			if err != nil {
				return err
			}
			arch := compose.BaseArch()
			m := cfg.Manifest.ForArch(arch)
			res := configValidateResult{
				Config: dir, OK: true, Files: cfg.Files, Name: m.Name, Ref: m.Ref, Arch: arch,
				Packages: len(m.Packages), Repos: len(m.Repos), Users: len(m.Users),
			}
			text := fmt.Sprintf("config OK: %s (%s, ref %s; %s, %s, %s for %s; %s read)",
				dir, m.Name, m.Ref, countOf(res.Packages, "package"), countOf(res.Repos, "repo"), countOf(res.Users, "user"),
				arch, countOf(len(cfg.Files), "file"))
			g.result("config validate", res, termsafe.Text(text))
			return nil
		},
	}
}

// countOf renders "1 repo", "2 repos".
func countOf(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
