package sandbox

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"syscall"
)

// rootlessEnv marks a cosa that already runs in its rootless namespace.
const rootlessEnv = "COSA_ROOTLESS_NS"

// Rootless reports whether this cosa runs in its own rootless user
// namespace (started by an ordinary user).
func Rootless() bool { return os.Getenv(rootlessEnv) == "1" }

// NeedsRootlessNS reports whether cosa, run by an ordinary user, must
// re-execute itself in a user namespace before doing anything.
func NeedsRootlessNS() bool { return os.Geteuid() != 0 && !Rootless() }

// ExecRootless re-executes cosa with args in a new user and mount
// namespace where the user is root and ids 1-65535 are the user's
// subordinate ids (/etc/subuid, /etc/subgid), so the trees cosa makes
// have real owners (root-owned /usr, /etc/shadow root:shadow) while on the
// host everything is the user's or in the user's subordinate range. It
// returns only on failure, with an error that says what the host lacks.
func ExecRootless(args []string) error {
	u, err := user.Current()
	if err != nil {
		return fmt.Errorf("rootless: who am I: %w", err)
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		n, err := subIDCount(f, u.Username, u.Uid)
		if err != nil {
			return fmt.Errorf("rootless: %w", err)
		}
		if n < 65535 {
			return fmt.Errorf("rootless: %s gives %s %d subordinate ids, cosa needs 65536 (as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s)", f, u.Username, n, u.Username)
		}
	}
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("rootless: %s not found (install the uidmap package)", tool)
		}
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return fmt.Errorf("rootless: unshare not found (install util-linux)")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("rootless: finding cosa's own binary: %w", err)
	}
	argv := append([]string{"unshare", "--map-root-user", "--map-auto", "--mount", "--propagation", "private", "--", self}, args...)
	env := append(os.Environ(), rootlessEnv+"=1")
	return fmt.Errorf("rootless: exec unshare: %w", syscall.Exec(unshare, argv, env))
}

// subIDCount is how many subordinate ids file grants name (or uid).
func subIDCount(file, name, uid string) (int, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, fmt.Errorf("%w (as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s)", err, name)
	}
	defer f.Close()
	total := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		p := strings.Split(strings.TrimSpace(s.Text()), ":")
		if len(p) != 3 || (p[0] != name && p[0] != uid) {
			continue
		}
		var n int
		fmt.Sscanf(p[2], "%d", &n)
		total += n
	}
	return total, s.Err()
}
