package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
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
