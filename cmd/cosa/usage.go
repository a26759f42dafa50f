package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
)

// maxArgs limits positional arguments, reporting a usage error.
func maxArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) <= n {
			return nil
		}
		if n == 0 {
			msg := fmt.Sprintf("%s takes no arguments, got %q", c.CommandPath(), strings.Join(args, " "))
			if hint := c.Annotations[argsHint]; hint != "" {
				msg += "; " + hint
			} else if c.HasAvailableSubCommands() {
				msg += fmt.Sprintf("; see '%s --help' for its subcommands", c.CommandPath())
			} else {
				msg += fmt.Sprintf("; options are flags, see '%s --help'", c.CommandPath())
			}
			return usageError{fmt.Errorf("%s", msg)}
		}
		return usageError{fmt.Errorf("%s takes at most %d argument(s), got %d: %q; see '%s --help'",
			c.CommandPath(), n, len(args), strings.Join(args, " "), c.CommandPath())}
	}
}

// argsHint is a command annotation: what to say to someone who gave a
// command that takes none an argument, i.e. what they probably meant.
const argsHint = "cosa/args-hint"

// Cobra's flag-group errors (MarkFlagsMutuallyExclusive and friends) name
// the group as "[a b c]"; these turn them into one plain sentence in the
// words the rest of cosa uses.
var (
	groupExclusiveRE = regexp.MustCompile(`^if any flags in the group \[([^\]]*)\] are set none of the others can be; \[([^\]]*)\] were all set$`)
	groupOneOfRE     = regexp.MustCompile(`^at least one of the flags in the group \[([^\]]*)\] is required$`)
	groupTogetherRE  = regexp.MustCompile(`^if any flags in the group \[([^\]]*)\] are set they must all be set; missing \[([^\]]*)\]$`)
)

func dashed(list string, conj string) string {
	f := strings.Fields(list)
	for i := range f {
		f[i] = "--" + f[i]
	}
	if len(f) < 2 {
		return strings.Join(f, "")
	}
	return strings.Join(f[:len(f)-1], ", ") + " " + conj + " " + f[len(f)-1]
}

// clearFlagGroupError rewrites cobra's flag-group errors, leaving any other
// error as it is; the result is a usage error (exit 2).
func clearFlagGroupError(err error) error {
	s := err.Error()
	if m := groupExclusiveRE.FindStringSubmatch(s); m != nil {
		return usageError{fmt.Errorf("give only one of %s (got %s)", dashed(m[1], "or"), dashed(m[2], "and"))}
	}
	if m := groupOneOfRE.FindStringSubmatch(s); m != nil {
		return usageError{fmt.Errorf("give one of %s", dashed(m[1], "or"))}
	}
	if m := groupTogetherRE.FindStringSubmatch(s); m != nil {
		return usageError{fmt.Errorf("%s must be given together (missing %s)", dashed(m[1], "and"), dashed(m[2], "and"))}
	}
	return err
}
