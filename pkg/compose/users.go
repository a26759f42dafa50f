package compose

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cosa-build/cosa/pkg/config"
)

// AuthorizedKeysDir is where the users key puts each user's ssh keys: on
// OSTree /home lives in /var, which a new deployment does not carry, so
// keys kept in /etc (merged on every deploy) work without a home.
const AuthorizedKeysDir = "/etc/ssh/authorized_keys.d"

// SSHDDropIn makes sshd read AuthorizedKeysDir besides the usual files.
// Debian's sshd_config includes sshd_config.d/*.conf at its top, and the
// first AuthorizedKeysFile sshd reads wins.
const SSHDDropIn = "/etc/ssh/sshd_config.d/40-cosa-authorized-keys.conf"

const sshdDropInText = "# Written by cosa (manifest key users): keys in " + AuthorizedKeysDir + "\n" +
	"# work without a home directory, which on OSTree lives in /var.\n" +
	"AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 " + AuthorizedKeysDir + "/%u\n"

// hostnameArgv sets the hostname the way the default config's postprocess
// script did, so the tree is the same: /etc/hostname, plus a 127.0.1.1 line
// in /etc/hosts as Debian's installer writes. The name is passed as an
// argument, never pasted into the script.
func hostnameArgv(name string) []string {
	return []string{"/bin/sh", "-euc",
		`printf '%s\n' "$1" > /etc/hostname; printf '127.0.1.1\t%s\n' "$1" >> /etc/hosts`,
		"cosa-hostname", name}
}

// shQuote quotes s for a POSIX shell.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// usersScript is the shell script that creates (or amends) the users in
// the tree, run inside the sandbox so useradd edits the tree's passwd,
// shadow and group files with its own locking. keyDir is where the script
// finds <name>.keys files with each user's authorized keys (the stage dir
// as the sandbox sees it). Values were validated by pkg/config and are
// quoted all the same.
func usersScript(users []config.User, keyDir string) string {
	var b strings.Builder
	b.WriteString(`set -eu
fail() { echo "users: $*" >&2; exit 1; }
command -v useradd >/dev/null || fail "useradd is not in the tree (add the passwd package to packages)"
`)
	anyKeys := false
	for _, u := range users {
		name := shQuote(u.Name)
		fmt.Fprintf(&b, "\n# %s\n", u.Name)
		for _, g := range u.Groups {
			fmt.Fprintf(&b, "getent group %s >/dev/null || fail %s\n", shQuote(g),
				shQuote(fmt.Sprintf("user %s: group %s does not exist in the tree", u.Name, g)))
		}
		groups := strings.Join(u.Groups, ",")
		fmt.Fprintf(&b, "if getent passwd %s >/dev/null; then\n", name)
		if u.UID != 0 {
			fmt.Fprintf(&b, "  [ \"$(id -u %s)\" = %d ] || fail %s\n", name, u.UID,
				shQuote(fmt.Sprintf("user %s exists with another uid than %d", u.Name, u.UID)))
		}
		var mod []string
		if u.Shell != "" {
			mod = append(mod, "-s", shQuote(u.Shell))
		}
		if u.PasswordHash != "" {
			mod = append(mod, "-p", shQuote(u.PasswordHash))
		}
		if groups != "" {
			mod = append(mod, "-a", "-G", shQuote(groups))
		}
		if len(mod) > 0 {
			fmt.Fprintf(&b, "  usermod %s %s\n", strings.Join(mod, " "), name)
		} else {
			b.WriteString("  :\n")
		}
		b.WriteString("else\n")
		shell, pw := u.Shell, u.PasswordHash
		if shell == "" {
			shell = "/bin/bash"
		}
		if pw == "" {
			// "*": no password login, yet not "!" (locked), which sshd
			// refuses even for keys when it runs without PAM.
			pw = "*"
		}
		add := []string{"-m", "-l", "-s", shQuote(shell), "-p", shQuote(pw)}
		if u.UID != 0 {
			add = append(add, "-u", fmt.Sprint(u.UID))
		}
		if groups != "" {
			add = append(add, "-G", shQuote(groups))
		}
		fmt.Fprintf(&b, "  [ -x %s ] || fail %s\n", shQuote(shell), shQuote(fmt.Sprintf("user %s: shell %s is not in the tree", u.Name, shell)))
		fmt.Fprintf(&b, "  useradd %s %s\n", strings.Join(add, " "), name)
		b.WriteString("fi\n")
		if len(u.SSHAuthorizedKeys) > 0 {
			anyKeys = true
			fmt.Fprintf(&b, "install -d -m 0755 %s\n", AuthorizedKeysDir)
			fmt.Fprintf(&b, "install -m 0644 %s %s\n", shQuote(keyDir+"/"+u.Name+".keys"), shQuote(AuthorizedKeysDir+"/"+u.Name))
		}
	}
	if anyKeys {
		fmt.Fprintf(&b, "\ninstall -d -m 0755 %s\n", filepath.Dir(SSHDDropIn))
		fmt.Fprintf(&b, "printf '%%s' %s > %s\nchmod 0644 %s\n", shQuote(sshdDropInText), SSHDDropIn, SSHDDropIn)
	}
	return b.String()
}

// applyUsers writes the users script and key files to the stage dir
// (bound at /run/cosa) and runs the script in the sandbox.
func applyUsers(users []config.User, stage string, sandbox func(...string) error) error {
	dir := filepath.Join(stage, "users")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, u := range users {
		if len(u.SSHAuthorizedKeys) == 0 {
			continue
		}
		keys := strings.Join(u.SSHAuthorizedKeys, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(dir, u.Name+".keys"), []byte(keys), 0o644); err != nil {
			return err
		}
	}
	script := usersScript(users, "/run/cosa/users")
	if err := os.WriteFile(filepath.Join(dir, "users.sh"), []byte(script), 0o644); err != nil {
		return err
	}
	return sandbox("/bin/sh", "/run/cosa/users/users.sh")
}
