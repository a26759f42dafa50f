package main

import (
	"context"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/config"
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
	go func() { updateAptRoot(ctx, apt, root, log.New(&out, "", 0)); close(done) }()
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
}
