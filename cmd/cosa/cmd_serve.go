package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/internal/version"
	"github.com/cosa-build/cosa/pkg/blueprint"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/composer"
	"github.com/cosa-build/cosa/pkg/imagebuild"
	"github.com/cosa-build/cosa/pkg/weldr"
)

func newServeCmd(g *globals) *cobra.Command {
	var socket, group, state string
	c := &cobra.Command{
		Use:   "serve [--socket PATH] [--group NAME] [--state DIR]",
		Short: "Run the image composer service: the Weldr API composer-cli speaks, on a unix socket",
		Long: `Run the image composer service: the Weldr API (v1) that composer-cli speaks, on a
unix socket owned root:GROUP (directory 0770, socket 0660), so that only members
of GROUP can use it. Blueprints, sources and composes live under --state.
SIGTERM or SIGINT stops it after the requests under way. See docs/serve.md.`,
		Example: `  sudo cosa serve
  sudo cosa serve --socket /run/weldr/api.socket --group weldr --state /var/lib/cosa-composer
  composer-cli --weldr-only blueprints list`,
		Args: maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return runServe(c.Context(), g, socket, group, c.Flags().Changed("group"), state)
		},
	}
	c.Flags().StringVar(&socket, "socket", "/run/weldr/api.socket", "unix socket of the API")
	c.Flags().StringVar(&group, "group", "weldr", "group allowed to use the socket; a group given must exist (when weldr does not, the caller's own group is used, with a warning)")
	c.Flags().StringVar(&state, "state", "/var/lib/cosa-composer", "state directory: blueprints, sources, composes, apt lists")
	return c
}

func runServe(ctx context.Context, g *globals, socket, group string, groupGiven bool, state string) error {
	logger := log.New(g.Stderr, "cosa serve: ", log.LstdFlags)
	// Before anything is written: a group asked for that does not exist is
	// a setup mistake. The default one missing is a first try on a host
	// nobody prepared: the socket then belongs to the caller's own group,
	// which admits no one new, and the warning says how to open it up.
	if _, err := weldr.GroupID(group); err != nil {
		if groupGiven {
			return err
		}
		own, gerr := user.LookupGroupId(strconv.Itoa(os.Getegid()))
		if gerr != nil {
			return err
		}
		logger.Printf("warning: group %q does not exist, so the socket is group %q: only its members (and root) can use the API; create it (groupadd --system %s), add users to it and restart to let them in", group, own.Name, group)
		group = own.Name
	}
	if err := os.MkdirAll(state, 0o750); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	store, err := blueprint.Open(ctx, filepath.Join(state, "blueprints"))
	if err != nil {
		return err
	}
	aptRoot := filepath.Join(state, "apt")
	// The package index: an apt root with the default config's sources,
	// written now (the system sources below are read from it) and updated
	// in the background, so the socket does not wait for the network.
	apt, err := prepareAptRoot(aptRoot)
	if err != nil {
		logger.Printf("package index: %v (projects and depsolve answer without one)", err)
	}
	system, err := weldr.SystemSources(filepath.Join(aptRoot, "etc", "apt"))
	if err != nil {
		return fmt.Errorf("reading the system apt sources: %w", err)
	}
	arch, err := compose.DebianArch(compose.BaseArch())
	if err != nil {
		return err
	}
	opt := weldr.Options{
		Blueprints: store,
		Packages:   weldr.NewAptIndex(filepath.Join(aptRoot, "var", "lib", "apt", "lists"), arch),
		Sources:    &weldr.Sources{Dir: filepath.Join(state, "sources"), System: system},
		Build:      version.Get().Version,
		Log:        logger,
	}
	if d := hostDistro(); d != "" {
		opt.Distros = []string{d}
	}
	// The queue runs each image build as a real cosa build of a config
	// generated from the blueprint (pkg/imagebuild), in a workdir per
	// blueprint under STATE/workdirs.
	// Closed once the package index is there (or will never be): a
	// compose of a blueprint with groups waits for it.
	indexReady := make(chan struct{})
	if apt == nil {
		close(indexReady)
	}
	runner := &imagebuild.Runner{
		WorkRoot: filepath.Join(state, "workdirs"),
		Repos:    func() ([]imagebuild.Repo, error) { return userRepos(opt.Sources) },
		Groups:   groupsAfterIndex(opt.Packages, indexReady),
	}
	q, err := composer.New(ctx, composer.Options{StateDir: state, Runner: runner, Workers: 1,
		Types: imagebuild.ComposerTypes(), Uploader: &imagebuild.AWSUploader{}, Logger: slog.New(slog.NewTextHandler(g.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return fmt.Errorf("starting the compose queue in %s: %w", state, err)
	}
	defer func() {
		// A build still running when the service stops goes back to
		// WAITING and starts again at the next start.
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		q.Close(cctx)
	}()
	opt.Composer = q
	if apt != nil {
		go updateAptRoot(ctx, apt, aptRoot, logger, indexReady)
	}
	opt.Supported = imagebuild.Supported
	uid := 0
	if os.Geteuid() != 0 {
		// Unprivileged (a developer's trial run): the socket is the
		// caller's, still group-only.
		uid = os.Geteuid()
	}
	l, err := weldr.Activated()
	if err != nil {
		return err
	}
	if l != nil {
		opt.Log.Printf("Weldr API on the socket systemd passed, state in %s", state)
	} else {
		if l, err = weldr.Listen(weldr.SocketOptions{Path: socket, Group: group, UID: uid}); err != nil {
			return err
		}
		opt.Log.Printf("Weldr API on %s (group %s), state in %s", socket, group, state)
	}
	return weldr.Serve(ctx, l, weldr.New(opt), 30*time.Second)
}

// prepareAptRoot makes the service's apt root from the default config's
// distro and repos, as fetch makes its own.
func prepareAptRoot(root string) (*compose.AptRoot, error) {
	cfg, err := imagebuild.DefaultConfig()
	if err != nil {
		return nil, err
	}
	return compose.PrepareAptRoot(cfg, compose.BaseArch(), root)
}

// aptRetry is how long a failed update of the package index waits before
// it tries again, doubling up to an hour.
var aptRetry = time.Minute

// updateAptRoot runs apt-get update in the service's apt root until it
// succeeds or the service stops; compose start warns that packages were not
// checked until then.
func updateAptRoot(ctx context.Context, apt *compose.AptRoot, root string, logger *log.Logger, ready chan<- struct{}) {
	wait := aptRetry
	for {
		start := time.Now()
		err := apt.Update(ctx)
		if err == nil {
			logger.Printf("package index updated in %s (%s)", root, time.Since(start).Round(time.Second))
			close(ready)
			return
		}
		if ctx.Err() != nil {
			return
		}
		logger.Printf("package index: apt-get update in %s: %v (again in %s)", root, err, wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Hour)
	}
}

// groupWait bounds how long an image build waits for the first package
// index of this start to read its blueprint's groups from.
const groupWait = 15 * time.Minute

// groupsAfterIndex resolves a blueprint group from the service's package
// index, waiting (bounded) for the first apt-get update of this start when
// there is no index yet: a compose started right after the service is not
// failed for a download still under way, and its build needs the network
// anyway.
func groupsAfterIndex(pkgs weldr.Packages, ready <-chan struct{}) func(context.Context, string) ([]string, error) {
	return func(ctx context.Context, name string) ([]string, error) {
		list, err := pkgs.Group(name)
		if err == nil || !errors.Is(err, weldr.ErrNoIndex) {
			return list, err
		}
		t := time.NewTimer(groupWait)
		defer t.Stop()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-t.C:
			return nil, fmt.Errorf("%w (waited %s for the service's apt-get update)", err, groupWait)
		}
		return pkgs.Group(name)
	}
}

// hostDistro is ID-VERSION_ID from os-release, the distro name composer-cli
// itself builds.
func hostDistro() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return ""
	}
	defer f.Close()
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			kv[k] = strings.Trim(v, `"'`)
		}
	}
	if kv["ID"] == "" || kv["VERSION_ID"] == "" {
		return ""
	}
	return kv["ID"] + "-" + kv["VERSION_ID"]
}

// userRepos turns the user's apt sources into the extra repositories of a
// generated config; a source's key is its armored gpgkeys entries.
// pkg/imagebuild refuses a source with no key.
func userRepos(src *weldr.Sources) ([]imagebuild.Repo, error) {
	all, err := src.All()
	if err != nil {
		return nil, err
	}
	var out []imagebuild.Repo
	for _, s := range all {
		if s.System {
			continue
		}
		r := imagebuild.Repo{Name: s.ID, URI: s.URL, Components: s.Components}
		if len(s.Suites) > 0 {
			r.Suite = s.Suites[0]
		}
		var key []string
		for _, k := range s.GPGKeys {
			if strings.Contains(k, "BEGIN PGP PUBLIC KEY BLOCK") {
				key = append(key, k)
			}
		}
		r.Key = []byte(strings.Join(key, "\n"))
		out = append(out, r)
	}
	return out, nil
}
