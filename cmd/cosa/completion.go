package main

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/compress"
	"github.com/cosa-build/cosa/pkg/platform"
)

// Shell completion with live values: build ids and tags from the workdir
// named by -C (cobra has parsed the flags by the time these run), artifact
// names from the chosen build's meta.json. Nothing here locks or writes;
// an unreadable workdir just completes nothing.

const noFiles = cobra.ShellCompDirectiveNoFileComp

// completeBuilds offers "latest", every build id in builds.json (newest
// first) and, if withTags, every tag.
func completeBuilds(g *globals, withTags bool) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		idx := readIndexQuietly(g)
		out := []cobra.Completion{cobra.CompletionWithDesc("latest", "the newest build")}
		if idx == nil {
			return out, noFiles
		}
		for _, b := range idx.Builds {
			out = append(out, cobra.CompletionWithDesc(b.ID, "build, "+strings.Join(b.Arches, " ")))
		}
		for _, t := range idx.Tags {
			if !withTags {
				break
			}
			out = append(out, cobra.CompletionWithDesc(t.Name, "tag -> "+t.Target))
		}
		return out, noFiles
	}
}

// openBuildsQuietly opens the workdir's builds/, or nil: a completion has
// nowhere to say why not.
func openBuildsQuietly(g *globals) *build.Dir {
	w, err := g.openWorkdir()
	if err != nil {
		return nil
	}
	d, err := build.Open(w.BuildsDir())
	if err != nil {
		return nil
	}
	return d
}

func readIndexQuietly(g *globals) *build.BuildsIndex {
	d := openBuildsQuietly(g)
	if d == nil {
		return nil
	}
	idx, err := d.ReadIndex()
	if err != nil {
		return nil
	}
	return idx
}

// completeArtifacts offers the images keys of the build named by --build
// (latest by default) or, if it cannot be read, every platform's name.
func completeArtifacts(g *globals) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		out := buildArtifacts(g, c)
		if out == nil {
			out = platformNames()
		}
		return out, noFiles
	}
}

func buildArtifacts(g *globals, c *cobra.Command) []cobra.Completion {
	d := openBuildsQuietly(g)
	if d == nil {
		return nil
	}
	id := "latest"
	if f := c.Flags().Lookup("build"); f != nil && f.Changed {
		if v, err := c.Flags().GetString("build"); err == nil {
			id = v
		}
	}
	id, err := resolveBuild(d, id)
	if err != nil {
		return nil
	}
	arch := compose.BaseArch()
	if f := c.Flags().Lookup("arch"); f != nil && f.Value.String() != "" {
		arch = f.Value.String()
	}
	m, err := d.ReadMeta(id, arch)
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for name, a := range m.Images {
		out = append(out, cobra.CompletionWithDesc(name, a.Path))
	}
	slices.Sort(out)
	return out
}

// platformNames is every artifact name a build can have.
func platformNames() []string {
	return append([]string{"ostree"}, platform.Names()...)
}

func completeCompressors(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	var out []cobra.Completion
	for _, a := range compress.Algorithms {
		out = append(out, string(a))
	}
	return out, noFiles
}

func completeWords(words ...string) cobra.CompletionFunc {
	return cobra.FixedCompletions(words, noFiles)
}

// registerCompletions walks the command tree once everything is defined and
// attaches completion to every flag of a known kind, so a new command's
// --build completes without anyone remembering to wire it.
func registerCompletions(root *cobra.Command, g *globals) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		reg := func(name string, f cobra.CompletionFunc) {
			if c.LocalFlags().Lookup(name) == nil {
				return
			}
			if _, ok := c.GetFlagCompletionFunc(name); ok {
				return
			}
			_ = c.RegisterFlagCompletionFunc(name, f)
		}
		// buildfetch's --build and --artifact name remote builds: the
		// local list would be wrong there.
		if c.Name() == "buildfetch" {
			reg("artifact", completeWords(append(platformNames(), "all")...))
		} else {
			// A tag names a build everywhere but in tag update, which
			// points a tag at a build id.
			reg("build", completeBuilds(g, c.CommandPath() != "cosa tag update"))
			reg("upgrade-from", completeBuilds(g, true))
			reg("artifact", completeArtifacts(g))
		}
		reg("compressor", completeCompressors)
		reg("arch", completeWords(compose.BaseArch()))
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// exampleBuiltins adds cobra's own help and completion commands now, rather
// than when the command line runs, so that they have examples like every
// other command and appear in the generated docs.
func exampleBuiltins(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Example = "  cosa help build\n  cosa help buildupload s3"
		case "completion":
			c.Example = `  source <(cosa completion bash)
  cosa completion zsh > "${fpath[1]}/_cosa"
  cosa completion fish > ~/.config/fish/completions/cosa.fish`
			for _, sh := range c.Commands() {
				switch sh.Name() {
				case "bash":
					sh.Example = "  cosa completion bash > /etc/bash_completion.d/cosa"
				case "zsh":
					sh.Example = `  cosa completion zsh > "${fpath[1]}/_cosa"`
				case "fish":
					sh.Example = "  cosa completion fish > ~/.config/fish/completions/cosa.fish"
				case "powershell":
					sh.Example = "  cosa completion powershell | Out-String | Invoke-Expression"
				}
			}
		}
	}
}
