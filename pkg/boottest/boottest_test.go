package boottest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBootedCommit(t *testing.T) {
	c1, c2 := strings.Repeat("a", 64), strings.Repeat("b", 64)
	status := "  debian-ostree " + c2 + ".0 (pending)\n    Version: 2\n* debian-ostree " + c1 + ".0\n    Version: 1\n"
	if got := bootedCommit(status); got != c1 {
		t.Errorf("bootedCommit = %q, want the starred deployment %s", got, c1)
	}
	if got := bootedCommit("no deployments"); got != "" {
		t.Errorf("got %q from nothing", got)
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "b-test"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "a-test"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("docs"), 0o644)
	os.Mkdir(filepath.Join(dir, "subdir"), 0o755)
	tests, err := Discover(dir, "")
	if err != nil || len(tests) != 2 || tests[0].Name != "a-test" || tests[1].Name != "b-test" {
		t.Fatalf("Discover = %+v, %v", tests, err)
	}
	tests, _ = Discover(dir, "b-*")
	if len(tests) != 1 || tests[0].Name != "b-test" {
		t.Fatalf("pattern: %+v", tests)
	}
	if tests, err := Discover(filepath.Join(dir, "missing"), ""); err != nil || tests != nil {
		t.Fatalf("missing dir: %v %v", tests, err)
	}
}

func TestFailRE(t *testing.T) {
	for _, line := range []string{
		"[    3.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100",
		"You are in emergency mode. After logging in, type \"journalctl -xb\"",
		"[FAILED] Failed to start systemd-networkd.service - Network Configuration.",
	} {
		if FailRE.FindString(line) == "" {
			t.Errorf("FailRE misses %q", line)
		}
	}
	if m := FailRE.FindString("[  OK  ] Reached target multi-user.target - Multi-User System."); m != "" {
		t.Errorf("FailRE matches a good line: %q", m)
	}
}
