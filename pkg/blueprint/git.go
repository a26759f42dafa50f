package blueprint

// All of the store's git commands go through runGit. The project's one
// host-command runner (internal/hostcmd) did not exist on main when this
// package was written, so this is the package's only os/exec use; moving to
// it is a change to this file alone.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cosa-build/cosa/internal/hostcmd"
)

// Author and committer of every change (and tagger of every tag).
const (
	gitUser  = "cosa composer"
	gitEmail = "cosa-composer@localhost"
)

// gitEnv is the environment of every git command: the caller's, minus any
// GIT_* variable (a GIT_DIR or GIT_INDEX_FILE inherited from a hook would
// point git elsewhere), with no system or user config (hooks, signing,
// aliases, gc settings) and a fixed identity.
func gitEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") && !strings.HasPrefix(kv, "LC_ALL=") {
			env = append(env, kv)
		}
	}
	return append(env,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+os.DevNull,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_OPTIONAL_LOCKS=0",
		"GIT_AUTHOR_NAME="+gitUser,
		"GIT_AUTHOR_EMAIL="+gitEmail,
		"GIT_COMMITTER_NAME="+gitUser,
		"GIT_COMMITTER_EMAIL="+gitEmail,
		"LC_ALL=C",
	)
}

// runGit runs git in dir with stdin (may be nil) and returns its stdout.
// A failure carries git's stderr.
func runGit(ctx context.Context, dir string, stdin []byte, args ...string) ([]byte, error) {
	cmd := hostcmd.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env, cmd.CleanEnv = gitEnv(), true
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(ctx); err != nil {
		// git's first line says what failed; the rest is advice.
		msg := err.Error()
		var he *hostcmd.Error
		if errors.As(err, &he) {
			if first, _, _ := strings.Cut(strings.TrimSpace(he.Stderr), "\n"); first != "" {
				msg = first
			}
		}
		return stdout.Bytes(), fmt.Errorf("git %s: %s", args[0], msg)
	}
	return stdout.Bytes(), nil
}
