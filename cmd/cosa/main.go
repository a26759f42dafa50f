// Command cosa builds OSTree-based operating system images from a
// declarative config into a versioned build directory.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/internal/version"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/sandbox"
	"github.com/cosa-build/cosa/pkg/termsafe"
	"github.com/cosa-build/cosa/pkg/workdir"
)

// Exit codes: 1 for failures, 2 for bad input (config or command line).
const (
	exitFailure  = 1
	exitBadInput = 2
)

// usageError marks a bad command line.
type usageError struct{ error }

// globals are the flags every command shares.
type globals struct {
	Workdir     string
	JSON        bool
	LockTimeout time.Duration
	Stdout      io.Writer
	Stderr      io.Writer

	sink     events.Sink // see events()
	sinkOnce sync.Once

	// ran is set once a command's RunE starts: any error before that
	// is cobra rejecting the command line.
	ran bool
}

func (g *globals) openWorkdir() (*workdir.Workdir, error) { return workdir.Open(g.Workdir) }

func (g *globals) buildsDir(w *workdir.Workdir) (*build.Dir, error) {
	d, err := build.Open(w.BuildsDir())
	if err != nil {
		return nil, err
	}
	d.LockTimeout = g.LockTimeout
	d.LockWait = g.Stderr
	return d, nil
}

// openBuildsDir opens the workdir and its builds dir.
func (g *globals) openBuildsDir() (*workdir.Workdir, *build.Dir, error) {
	w, err := g.openWorkdir()
	if err != nil {
		return nil, nil, err
	}
	d, err := g.buildsDir(w)
	if err != nil {
		return nil, nil, err
	}
	return w, d, nil
}

// openConfig opens the workdir and loads its config.
func (g *globals) openConfig() (*workdir.Workdir, *config.Config, error) {
	w, err := g.openWorkdir()
	if err != nil {
		return nil, nil, err
	}
	cfg, err := w.LoadConfig()
	if err != nil {
		return nil, nil, err
	}
	return w, cfg, nil
}

// openBuild opens the workdir and its builds dir and resolves a --build
// value ("latest" or an id) to an existing local build.
func (g *globals) openBuild(buildFlag string) (*workdir.Workdir, *build.Dir, string, error) {
	w, err := g.openWorkdir()
	if err != nil {
		return nil, nil, "", err
	}
	d, id, err := g.resolveIn(w, buildFlag)
	if err != nil {
		return nil, nil, "", err
	}
	return w, d, id, nil
}

// resolveIn opens w's builds dir and resolves a --build value there.
func (g *globals) resolveIn(w *workdir.Workdir, buildFlag string) (*build.Dir, string, error) {
	d, err := g.buildsDir(w)
	if err != nil {
		return nil, "", err
	}
	id, err := resolveBuild(d, buildFlag)
	if err != nil {
		return nil, "", err
	}
	return d, id, nil
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "cosa",
		Short:         "Build OSTree-based OS images from a declarative config",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get().String(),
		Example: `  cosa init https://example.com/os-config.git
  cosa fetch && cosa build
  cosa list
  cosa -C ~/os --json build`,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(g.Stdout)
	root.SetErr(g.Stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVarP(&g.Workdir, "workdir", "C", ".", "cosa working directory")
	pf.BoolVar(&g.JSON, "json", false, "machine-readable output: JSON progress events, JSON results")
	pf.DurationVar(&g.LockTimeout, "lock-timeout", build.DefaultLockTimeout, "how long to wait for another cosa holding the build directory")
	root.AddCommand(newInitCmd(g), newFetchCmd(g), newBuildCmd(g), newListCmd(g), newMetaCmd(g), newTagCmd(g), newPruneCmd(g), newPipelineCmd(g), newRunCmd(g), newTestCmd(g))
	root.AddCommand(newCompressCmd(g), newDecompressCmd(g), newBuilduploadCmd(g), newBuildfetchCmd(g), newCleanCmd(g))
	root.AddCommand(newBuildextendCmds(g)...)
	root.AddCommand(newVersionCmd(g), newGenDocsCmd(root))
	root.AddCommand(newConfigCmd(g))
	root.AddCommand(newServeCmd(g))
	markRun(root, g)
	registerCompletions(root, g)
	exampleBuiltins(root)
	return root
}

// markRun wraps the RunE of c and its subcommands to set g.ran.
func markRun(c *cobra.Command, g *globals) {
	if f := c.RunE; f != nil {
		c.RunE = func(c *cobra.Command, args []string) error {
			g.ran = true
			return f(c, args)
		}
	}
	for _, sub := range c.Commands() {
		markRun(sub, g)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// One rule for modes, whoever runs cosa (docs/workdir.md): directories
	// 0755, files 0644, executables 0755, in the workdir and in the trees
	// and images it builds. Artifacts were already forced to 0644; under a
	// umask of 077 the directories holding them were 0700, and what the
	// tools cosa runs wrote into the OS tree varied with the caller.
	syscall.Umask(0o022)
	g := &globals{Stdout: stdout, Stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	if !g.ran {
		err = clearFlagGroupError(err)
	}
	// Errors carry text from elsewhere (a server's reply, a bucket's
	// names, a tool's stderr): control characters in it are shown escaped.
	fmt.Fprintf(stderr, "error: %s\n", termsafe.Text(err.Error()))
	// Errors before a command ran are cobra's own (unknown command or
	// flag, bad flag value); matching their text instead would also catch
	// failures that merely mention "invalid argument" (EINVAL) or the like.
	code := exitFailure
	var ue usageError
	if errors.As(err, &ue) || config.IsConfigError(err) || !g.ran {
		code = exitBadInput
	}
	// A command line cobra refused may not have set g.JSON yet.
	if g.JSON || (!g.ran && slices.Contains(args, "--json")) {
		g.JSON = true
		g.emitError(commandName(cmd), err, code)
	}
	return code
}

// commandName is how events name a command: its path without "cosa"
// ("build", "tag update", "buildupload s3").
func commandName(c *cobra.Command) string {
	if c == nil || !c.HasParent() {
		return "cosa"
	}
	return strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
}

func main() {
	// Run by an ordinary user, cosa works in a user namespace of its own
	// (pkg/sandbox): that is what makes every command work without sudo.
	if sandbox.NeedsRootlessNS() && needsNamespace(os.Args[1:]) {
		err := sandbox.ExecRootless(os.Args[1:])
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(exitFailure)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// needsNamespace is false for what only prints (help, version,
// completion, the generated docs), so those work on a host without
// subordinate ids. Only the command word counts: "version" or "--version"
// later on is a flag value or a subcommand's own flag (build --version ID).
func needsNamespace(args []string) bool {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-h" || a == "--help":
			return false
		case a == "--version" || a == "-v":
			// cosa --version (before any command word).
			return false
		case a == "-C" || a == "--workdir" || a == "--lock-timeout":
			i++ // their value
		case strings.HasPrefix(a, "-"):
		default:
			switch a {
			case "help", "version", "completion", "gen-docs", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
				return false
			case "config":
				// Only reads the config: a CI lint step needs no
				// subordinate ids.
				return false
			}
			return !slices.Contains(args[i+1:], "--help") && !slices.Contains(args[i+1:], "-h")
		}
	}
	return false
}
