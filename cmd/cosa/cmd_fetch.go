package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/workdir"
)

type fetchOptions struct {
	UpdateLockfile bool
}

func newFetchCmd(g *globals) *cobra.Command {
	o := &fetchOptions{}
	c := &cobra.Command{
		Use:   "fetch",
		Short: "Resolve and download the package set into cache/ and write the lock file",
		Args:  maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			w, cfg, err := g.openConfig()
			if err != nil {
				return err
			}
			if err := needTools("apt-get"); err != nil {
				return err
			}
			return runFetch(c.Context(), g, w, cfg, o)
		},
	}
	c.Flags().BoolVar(&o.UpdateLockfile, "update-lockfile", false, "resolve afresh and write the lock file into src/config too")
	return c
}

func runFetch(ctx context.Context, g *globals, w *workdir.Workdir, cfg *config.Config, o *fetchOptions) error {
	arch := compose.BaseArch()
	d, err := g.buildsDir(w)
	if err != nil {
		return err
	}
	// fetch rewrites the package cache a running build reads.
	return d.WithLock(ctx, "cosa fetch", func() error {
		var pin *compose.Lockfile
		configLock := filepath.Join(w.ConfigDir(), compose.LockName(arch))
		if !o.UpdateLockfile {
			l, err := compose.ReadLock(configLock)
			switch {
			case err == nil:
				pin = l
				g.progress().Infof("Pinning packages to %s", configLock)
			case !errors.Is(err, os.ErrNotExist):
				return err
			}
		}
		lock, err := compose.Fetch(ctx, compose.FetchOptions{
			Config: cfg, CacheDir: w.CacheDir(), Arch: arch, Pin: pin, Progress: g.progress(),
		})
		if err != nil {
			return err
		}
		if o.UpdateLockfile {
			data, err := lock.Marshal()
			if err != nil {
				return err
			}
			if err := fileutil.WriteFileAtomic(configLock, data, 0o644); err != nil {
				return err
			}
		}
		var total int64
		for _, p := range lock.Packages {
			total += p.Size
		}
		fmt.Fprintf(g.Stdout, "Fetched %d packages (%.1f MiB); lock file %s\n", len(lock.Packages), float64(total)/(1<<20),
			compose.LockPath(w.CacheDir(), arch))
		return nil
	})
}
