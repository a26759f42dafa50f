package main

import (
	"fmt"
	"os/exec"
	"strings"
)

// needTools checks that the host tools a command runs are on PATH before it
// starts, so that a missing one is reported on one line and nothing has
// been written yet (rather than half-way through a fetch or build).
func needTools(names ...string) error {
	var missing []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("missing host tools: %s (not found in PATH; `make deps` installs them on Debian)", strings.Join(missing, ", "))
}
