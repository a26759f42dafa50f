package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

// newGenDocsCmd writes man pages and shell completion scripts generated from
// the command tree, for `make install`; hidden, since packagers call it,
// not users.
func newGenDocsCmd(root *cobra.Command) *cobra.Command {
	var manDir, complDir string
	c := &cobra.Command{
		Use:     "gen-docs [--man DIR] [--completion DIR]",
		Short:   "Write man pages and bash, zsh and fish completion scripts",
		Example: "  cosa gen-docs --man build/man --completion build/completion",
		Hidden:  true,
		Args:    maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if manDir == "" && complDir == "" {
				return usageError{fmt.Errorf("give --man DIR, --completion DIR or both")}
			}
			if manDir != "" {
				if err := genMan(root, manDir); err != nil {
					return err
				}
			}
			if complDir != "" {
				if err := genCompletion(root, complDir); err != nil {
					return err
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&manDir, "man", "", "write one man page per command (section 1) into DIR")
	c.Flags().StringVar(&complDir, "completion", "", "write cosa.bash, _cosa (zsh) and cosa.fish into DIR")
	return c
}

func genMan(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// No date in the pages: the same sources give the same files.
	root.DisableAutoGenTag = true
	escapeForMarkdown(root)
	hdr := &doc.GenManHeader{Title: "COSA", Section: "1", Source: "cosa", Manual: "cosa manual"}
	return doc.GenManTree(root, hdr, dir)
}

func genCompletion(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, gen := range map[string]func(string) error{
		"cosa.bash": func(p string) error { return root.GenBashCompletionFileV2(p, true) },
		"_cosa":     root.GenZshCompletionFile,
		"cosa.fish": func(p string) error { return root.GenFishCompletionFile(p, true) },
	} {
		if err := gen(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// escapeForMarkdown keeps placeholders such as <build id> in the man pages:
// cobra writes the text as markdown, where <...> is an HTML tag that
// go-md2man drops. Examples are code blocks and need no escaping. The
// command tree is changed in place: gen-docs is the last thing it serves.
func escapeForMarkdown(c *cobra.Command) {
	r := strings.NewReplacer("<", `\<`, ">", `\>`)
	lines := strings.Split(c.Long, "\n")
	for i, l := range lines {
		// Indented lines are markdown code blocks (cobra's completion
		// help has them): shown verbatim, so left alone.
		if !strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, "    ") {
			lines[i] = r.Replace(l)
		}
	}
	c.Short, c.Long = r.Replace(c.Short), strings.Join(lines, "\n")
	for _, fs := range []*pflag.FlagSet{c.LocalNonPersistentFlags(), c.PersistentFlags()} {
		fs.VisitAll(func(f *pflag.Flag) { f.Usage = r.Replace(f.Usage) })
	}
	for _, sub := range c.Commands() {
		escapeForMarkdown(sub)
	}
}
