package main

import (
	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/internal/version"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print which cosa this is: module version, git commit, Go version",
		Long: `Print the version of this cosa binary, read from the build information the Go
toolchain embeds: the module version, the git commit and commit time of the
checkout it was built from (with a note if that had uncommitted changes), and
the Go version. Every build records this in meta.json: the one-line form
under coreos-assembler.code-source and, when known, the commit under
coreos-assembler.container-image-git. "cosa --version" prints the one-line form.`,
		Example: `  cosa version
  cosa --version
  cosa version --json | jq -r .result.vcs_revision`,
		Args: maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			i := version.Get()
			g.result("version", i, i.Text())
			return nil
		},
	}
}
