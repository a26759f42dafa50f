package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A group named on the command line that does not exist stops the service
// before it writes anything: no state directory, no socket.
func TestServeMissingGroup(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	sock := filepath.Join(dir, "run", "api.socket")
	r := cosa(t, "serve", "--group", "cosa-no-such-group", "--socket", sock, "--state", state)
	if r.code == 0 {
		t.Fatalf("serve with a missing group exited 0: %s", r.stderr)
	}
	if !strings.Contains(r.stderr, `group "cosa-no-such-group" does not exist`) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("want one line naming the group, got %q", r.stderr)
	}
	for _, p := range []string{state, filepath.Dir(sock)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s was created (%v)", p, err)
		}
	}
}
