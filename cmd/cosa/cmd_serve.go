package main

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/internal/version"
	"github.com/cosa-build/cosa/pkg/blueprint"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/composer"
	"github.com/cosa-build/cosa/pkg/weldr"
)

// newComposeService makes the compose queue behind `cosa serve` from its
// state dir. It is set by the queue's package when that is linked in; while
// it is nil, the service answers blueprints, packages and sources, and the
// compose routes say that there is no queue.
var newComposeService func(ctx context.Context, stateDir string) (composer.Service, error)

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
			return runServe(c.Context(), g, socket, group, state)
		},
	}
	c.Flags().StringVar(&socket, "socket", "/run/weldr/api.socket", "unix socket of the API")
	c.Flags().StringVar(&group, "group", "weldr", "group allowed to use the socket (must exist)")
	c.Flags().StringVar(&state, "state", "/var/lib/cosa-composer", "state directory: blueprints, sources, composes, apt lists")
	return c
}

func runServe(ctx context.Context, g *globals, socket, group, state string) error {
	// Before anything is written: a missing group is a setup mistake.
	if _, err := weldr.GroupID(group); err != nil {
		return err
	}
	if err := os.MkdirAll(state, 0o750); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	store, err := blueprint.Open(ctx, filepath.Join(state, "blueprints"))
	if err != nil {
		return err
	}
	aptRoot := filepath.Join(state, "apt")
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
		Log:        log.New(g.Stderr, "cosa serve: ", log.LstdFlags),
	}
	if d := hostDistro(); d != "" {
		opt.Distros = []string{d}
	}
	if newComposeService != nil {
		svc, err := newComposeService(ctx, state)
		if err != nil {
			return err
		}
		opt.Composer = svc
	} else {
		opt.Log.Printf("no compose queue in this build: compose routes answer an error")
	}
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
