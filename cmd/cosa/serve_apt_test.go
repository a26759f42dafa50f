package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/weldr"
)

// TestUpdateAptRootRetries: a failing apt-get update in the service's apt
// root is logged and tried again, and the loop ends with the service.
func TestUpdateAptRootRetries(t *testing.T) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("apt-get is not installed")
	}
	dir := t.TempDir()
	manifest := "name: demo\nref: demo/x86_64/dev\npackages: [base-files]\ndistro:\n  suite: bookworm\n  mirror: file://" + filepath.Join(dir, "no-archive") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "manifest.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "apt")
	apt, err := compose.PrepareAptRoot(cfg, "x86_64", root)
	if err != nil {
		t.Fatal(err)
	}
	old := aptRetry
	aptRetry = time.Millisecond
	t.Cleanup(func() { aptRetry = old })
	var out testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	ready := make(chan struct{})
	go func() { updateAptRoot(ctx, apt, root, log.New(&out, "", 0), ready); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(out.String(), "apt-get update in "+root) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no second attempt logged in 30s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("updateAptRoot did not end with its context")
	}
	if strings.Contains(out.String(), "package index updated") {
		t.Errorf("an update of a missing archive succeeded:\n%s", out.String())
	}
	select {
	case <-ready:
		t.Error("the index was announced ready after failed updates")
	default:
	}
}

// groupIndex is a package index that has no lists until filled.
type groupIndex struct {
	weldr.Packages
	filled atomic.Bool
}

func (g *groupIndex) Group(name string) ([]string, error) {
	if !g.filled.Load() {
		return nil, fmt.Errorf("%w in /nowhere", weldr.ErrNoIndex)
	}
	return []string{name + "-pkg"}, nil
}

// A group asked for before the first apt-get update has ended waits for
// it, and stops waiting with its context.
func TestGroupsAfterIndex(t *testing.T) {
	idx := &groupIndex{}
	ready := make(chan struct{})
	resolve := groupsAfterIndex(idx, ready)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := resolve(ctx, "web-server"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
	got := make(chan []string, 1)
	go func() {
		list, err := resolve(context.Background(), "web-server")
		if err != nil {
			t.Error(err)
		}
		got <- list
	}()
	select {
	case l := <-got:
		t.Fatalf("resolved %v before the index was there", l)
	case <-time.After(50 * time.Millisecond):
	}
	idx.filled.Store(true)
	close(ready)
	select {
	case l := <-got:
		if len(l) != 1 || l[0] != "web-server-pkg" {
			t.Errorf("group: %v", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still waiting after the index became ready")
	}
}
