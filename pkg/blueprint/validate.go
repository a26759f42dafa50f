package blueprint

import (
	"fmt"
	"math/big"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// MaxNameLen caps a blueprint name: it becomes a file name and part of git
// tag names.
const MaxNameLen = 128

var (
	// Weldr's rule for names in paths is [a-zA-Z0-9._-]+; a leading dot
	// and ".." are refused on top of it, so a name is never ".", "..", a
	// hidden file, or something git refuses in a tag name.
	nameRe = regexp.MustCompile(`^[a-zA-Z0-9_-][a-zA-Z0-9._-]*$`)
	// Debian policy 5.6.7: lower case letters, digits, + - and ., at
	// least two characters, starting with a letter or digit.
	debPackageRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	debPackageGlo = regexp.MustCompile(`^[a-z0-9+.*?-]+$`)
	// Debian version characters, an optional epoch, and the glob
	// characters * and ?.
	versionGlobRe = regexp.MustCompile(`^([0-9]+:)?[A-Za-z0-9.+~*?-]+$`)
	versionRe     = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~-]*$`)
	groupRe       = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._+-]*$`)
	distroRe      = regexp.MustCompile(`^[a-zA-Z0-9._-]*$`)
	userRe        = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_.-]*\$?$`)
	hostLabelRe   = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$`)
	unitRe        = regexp.MustCompile(`^[a-zA-Z0-9:_.\\@-]+$`)
	tzRe          = regexp.MustCompile(`^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$`)
	localeRe      = regexp.MustCompile(`^[a-zA-Z0-9_.@-]+$`)
	keyboardRe    = regexp.MustCompile(`^[a-zA-Z0-9_.,:-]+$`)
	ntpRe         = regexp.MustCompile(`^[a-zA-Z0-9.:\[\]-]+$`)
	sizeRe        = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$`)
	cryptRe       = regexp.MustCompile(`^\$[0-9a-z]+\$[./0-9A-Za-z$=,]+$`)
)

// ValidName reports whether name is a blueprint name this package accepts.
func ValidName(name string) error {
	switch {
	case name == "":
		return &Error{Kind: ErrInvalidName, Key: "name", Msg: "is empty"}
	case len(name) > MaxNameLen:
		return &Error{Kind: ErrInvalidName, Key: "name", Msg: fmt.Sprintf("is longer than %d characters", MaxNameLen)}
	case !nameRe.MatchString(name) || strings.Contains(name, ".."):
		return &Error{Kind: ErrInvalidName, Key: "name", Msg: fmt.Sprintf("%q: only letters, digits, '.', '_' and '-' are allowed, not first '.' nor '..'", name)}
	}
	return nil
}

// ValidPackageName reports whether name is a Debian package name, or a glob
// of such names (with * and ?).
func ValidPackageName(name string) error {
	if strings.ContainsAny(name, "*?") {
		if !debPackageGlo.MatchString(name) {
			return fmt.Errorf("%q is not a Debian package name glob (lower case letters, digits, '+', '-', '.', '*', '?')", name)
		}
		return nil
	}
	if !debPackageRe.MatchString(name) {
		return fmt.Errorf("%q is not a Debian package name (lower case letters, digits, '+', '-', '.', at least 2 characters, starting with a letter or digit)", name)
	}
	return nil
}

// ValidVersionGlob reports whether v is a package version pattern: empty or
// "*" (any version), a Debian version, or a glob of one.
func ValidVersionGlob(v string) error {
	if v == "" || v == "*" {
		return nil
	}
	if len(v) > 256 {
		return fmt.Errorf("version is longer than 256 characters")
	}
	if strings.ContainsAny(v, "*?") {
		if !versionGlobRe.MatchString(v) {
			return fmt.Errorf("%q is not a version glob ([epoch:]version with '*' and '?')", v)
		}
		return nil
	}
	if !versionRe.MatchString(v) {
		return fmt.Errorf("%q is not a Debian version ([epoch:]version starting with a digit)", v)
	}
	return nil
}

// IsCryptHash reports whether s looks like a crypt(3) hash in the modular
// format ($id$...), which is what a blueprint stores as a password.
func IsCryptHash(s string) bool {
	return cryptRe.MatchString(s)
}

// ParseSize reads a size as the API allows it: bytes, or a number with a
// unit (B, kB, KiB, MB, MiB, GB, GiB, TB, TiB), space optional. Fractions
// round up to a whole byte.
func ParseSize(s string) (Size, error) {
	m := sizeRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size (a number of bytes, or a number and a unit such as \"4 GiB\")", s)
	}
	mult, ok := map[string]int64{
		"": 1, "B": 1,
		"kB": 1000, "KiB": 1 << 10,
		"MB": 1000 * 1000, "MiB": 1 << 20,
		"GB": 1000 * 1000 * 1000, "GiB": 1 << 30,
		"TB": 1000 * 1000 * 1000 * 1000, "TiB": 1 << 40,
	}[m[2]]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (use B, kB, KiB, MB, MiB, GB, GiB, TB or TiB)", s, m[2])
	}
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if new(big.Rat).SetInt(n).Cmp(r) < 0 {
		n.Add(n, big.NewInt(1))
	}
	if !n.IsInt64() {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(n.Int64()), nil
}

// semver is a semantic version (semver.org 2.0.0).
type semver struct {
	major, minor, patch uint64
	pre, build          string
}

func parseSemver(s string) (semver, error) {
	var v semver
	bad := fmt.Errorf("%q is not a semantic version (MAJOR.MINOR.PATCH, e.g. 0.1.0)", s)
	rest, build, hasBuild := strings.Cut(s, "+")
	if hasBuild {
		if !validIdents(build, false) {
			return v, bad
		}
		v.build = build
	}
	core, pre, hasPre := strings.Cut(rest, "-")
	if hasPre {
		if !validIdents(pre, true) {
			return v, bad
		}
		v.pre = pre
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return v, bad
	}
	nums := []*uint64{&v.major, &v.minor, &v.patch}
	for i, p := range parts {
		if !isNumeric(p) || (len(p) > 1 && p[0] == '0') {
			return v, bad
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return v, bad
		}
		*nums[i] = n
	}
	return v, nil
}

// validIdents checks dot-separated semver identifiers; numeric ones in a
// pre-release must not have leading zeros.
func validIdents(s string, pre bool) bool {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		for _, c := range id {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return false
			}
		}
		if pre && isNumeric(id) && len(id) > 1 && id[0] == '0' {
			return false
		}
	}
	return true
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (v semver) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.patch)
	if v.pre != "" {
		s += "-" + v.pre
	}
	if v.build != "" {
		s += "+" + v.build
	}
	return s
}

// nextPatch is the version after v at patch level: a pre-release becomes
// its release (1.0.0-rc1 -> 1.0.0), otherwise patch + 1; build metadata
// is dropped.
func (v semver) nextPatch() (semver, error) {
	if v.pre != "" {
		return semver{major: v.major, minor: v.minor, patch: v.patch}, nil
	}
	if v.patch == ^uint64(0) {
		return v, fmt.Errorf("version %s: patch number overflows", v)
	}
	return semver{major: v.major, minor: v.minor, patch: v.patch + 1}, nil
}

// NextVersion applies the push rule of the Weldr API (lorax's): against the
// committed version (committed == "" when there is none), an absent or equal
// pushed version becomes the committed one with patch + 1, any other pushed
// version is kept as given; with nothing committed, an absent version is
// 0.0.1.
func NextVersion(pushed, committed string) (string, error) {
	if pushed != "" {
		if _, err := parseSemver(pushed); err != nil {
			return "", invalid("version", "%v", err)
		}
	}
	if committed == "" {
		if pushed == "" {
			return "0.0.1", nil
		}
		return pushed, nil
	}
	if pushed != "" && pushed != committed {
		return pushed, nil
	}
	old, err := parseSemver(committed)
	if err != nil {
		// Lorax's rule: a committed version that is not semver is
		// replaced by the pushed one, or started afresh.
		if pushed == "" {
			return "0.0.1", nil
		}
		return pushed, nil
	}
	next, err := old.nextPatch()
	if err != nil {
		return "", invalid("version", "%v", err)
	}
	return next.String(), nil
}

// Validate checks the blueprint against the format's rules and cosa's (safe
// name, Debian package names, version globs, well-formed customizations).
// The error is an *Error naming the key.
func (b *Blueprint) Validate() error {
	if err := ValidName(b.Name); err != nil {
		return err
	}
	if b.Version != "" {
		if _, err := parseSemver(b.Version); err != nil {
			return invalid("version", "%v", err)
		}
	}
	for _, list := range []struct {
		key  string
		pkgs []Package
	}{{"packages", b.Packages}, {"modules", b.Modules}} {
		for i, p := range list.pkgs {
			key := fmt.Sprintf("%s[%d]", list.key, i)
			if p.Name == "" {
				return invalid(key+".name", "is required")
			}
			if err := ValidPackageName(p.Name); err != nil {
				return invalid(key+".name", "%v", err)
			}
			if err := ValidVersionGlob(p.Version); err != nil {
				return invalid(key+".version", "%v", err)
			}
		}
	}
	for i, m := range b.EnabledModules {
		if m.Name == "" {
			return invalid(fmt.Sprintf("enabled_modules[%d].name", i), "is required")
		}
	}
	for i, g := range b.Groups {
		if !groupRe.MatchString(g.Name) {
			return invalid(fmt.Sprintf("groups[%d].name", i), "%q is not a package group name", g.Name)
		}
	}
	for i, c := range b.Containers {
		if c.Source == "" {
			return invalid(fmt.Sprintf("containers[%d].source", i), "is required")
		}
	}
	if !distroRe.MatchString(b.Distro) {
		return invalid("distro", "%q is not a distribution name", b.Distro)
	}
	if !distroRe.MatchString(b.Architecture) {
		return invalid("architecture", "%q is not an architecture name", b.Architecture)
	}
	if b.Customizations != nil {
		return b.Customizations.validate()
	}
	return nil
}

func (c *Customizations) validate() error {
	const p = "customizations."
	if c.Hostname != "" {
		if err := validHostname(c.Hostname); err != nil {
			return invalid(p+"hostname", "%v", err)
		}
	}
	if k := c.Kernel; k != nil {
		if k.Name != "" {
			if err := ValidPackageName(k.Name); err != nil {
				return invalid(p+"kernel.name", "%v", err)
			}
		}
		if strings.ContainsAny(k.Append, "\x00\r\n") {
			return invalid(p+"kernel.append", "must be one line")
		}
	}
	for i, s := range c.SSHKey {
		key := fmt.Sprintf(p+"sshkey[%d]", i)
		if err := validUserName(s.User); err != nil {
			return invalid(key+".user", "%v", err)
		}
		if err := validSSHKey(s.Key); err != nil {
			return invalid(key+".key", "%v", err)
		}
	}
	users := map[string]bool{}
	for i, u := range c.User {
		key := fmt.Sprintf(p+"user[%d]", i)
		if err := validUserName(u.Name); err != nil {
			return invalid(key+".name", "%v", err)
		}
		if users[u.Name] {
			return invalid(key+".name", "user %q is given twice", u.Name)
		}
		users[u.Name] = true
		if strings.ContainsAny(u.Description, "\x00\r\n:") {
			return invalid(key+".description", "must be one line without ':'")
		}
		if strings.ContainsAny(u.Password, "\x00\r\n:") {
			return invalid(key+".password", "must be one line without ':'")
		}
		if u.Key != "" {
			if err := validSSHKey(u.Key); err != nil {
				return invalid(key+".key", "%v", err)
			}
		}
		for _, f := range []struct{ name, val string }{{"home", u.Home}, {"shell", u.Shell}} {
			if f.val != "" {
				if err := validAbsPath(f.val); err != nil {
					return invalid(key+"."+f.name, "%v", err)
				}
			}
		}
		for j, g := range u.Groups {
			if err := validUserName(g); err != nil {
				return invalid(fmt.Sprintf("%s.groups[%d]", key, j), "%v", err)
			}
		}
		for _, f := range []struct {
			name string
			val  *int64
		}{{"uid", u.UID}, {"gid", u.GID}} {
			if err := validID(f.val); err != nil {
				return invalid(key+"."+f.name, "%v", err)
			}
		}
		if u.ExpireDate != nil && *u.ExpireDate < 0 {
			return invalid(key+".expiredate", "must not be negative")
		}
	}
	groups := map[string]bool{}
	for i, g := range c.Group {
		key := fmt.Sprintf(p+"group[%d]", i)
		if err := validUserName(g.Name); err != nil {
			return invalid(key+".name", "%v", err)
		}
		if groups[g.Name] {
			return invalid(key+".name", "group %q is given twice", g.Name)
		}
		groups[g.Name] = true
		if err := validID(g.GID); err != nil {
			return invalid(key+".gid", "%v", err)
		}
	}
	if tz := c.Timezone; tz != nil {
		if tz.Timezone != "" && !tzRe.MatchString(tz.Timezone) {
			return invalid(p+"timezone.timezone", "%q is not a time zone name (such as Europe/Berlin)", tz.Timezone)
		}
		for i, s := range tz.NTPServers {
			if !ntpRe.MatchString(s) {
				return invalid(fmt.Sprintf(p+"timezone.ntpservers[%d]", i), "%q is not a host name or address", s)
			}
		}
	}
	if l := c.Locale; l != nil {
		for i, s := range l.Languages {
			if !localeRe.MatchString(s) {
				return invalid(fmt.Sprintf(p+"locale.languages[%d]", i), "%q is not a locale name (such as en_US.UTF-8)", s)
			}
		}
		if l.Keyboard != "" && !keyboardRe.MatchString(l.Keyboard) {
			return invalid(p+"locale.keyboard", "%q is not a keyboard layout name", l.Keyboard)
		}
	}
	if s := c.Services; s != nil {
		state := map[string]string{}
		for _, list := range []struct {
			name  string
			units []string
		}{{"enabled", s.Enabled}, {"disabled", s.Disabled}, {"masked", s.Masked}} {
			for i, u := range list.units {
				key := fmt.Sprintf(p+"services.%s[%d]", list.name, i)
				if !unitRe.MatchString(u) {
					return invalid(key, "%q is not a systemd unit name", u)
				}
				if prev, ok := state[u]; ok && prev != list.name {
					return invalid(key, "%q is also %s", u, prev)
				}
				state[u] = list.name
			}
		}
	}
	mounts := map[string]bool{}
	for i, f := range c.Filesystem {
		key := fmt.Sprintf(p+"filesystem[%d]", i)
		if f.Size != nil && f.MinSize != 0 {
			return invalid(key, "give minsize or size, not both")
		}
		if err := validAbsPath(f.Mountpoint); err != nil {
			return invalid(key+".mountpoint", "%v", err)
		}
		if mounts[f.Mountpoint] {
			return invalid(key+".mountpoint", "%s is given twice", f.Mountpoint)
		}
		mounts[f.Mountpoint] = true
	}
	return nil
}

func validHostname(h string) error {
	if len(h) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", h)
	}
	for _, l := range strings.Split(h, ".") {
		if len(l) > 63 || !hostLabelRe.MatchString(l) {
			return fmt.Errorf("%q is not a host name (labels of letters, digits and '-', at most 63 characters)", h)
		}
	}
	return nil
}

func validUserName(n string) error {
	if n == "" {
		return fmt.Errorf("is required")
	}
	if len(n) > 32 || !userRe.MatchString(n) || isNumeric(n) {
		return fmt.Errorf("%q is not a user or group name (letters, digits, '_', '.', '-', at most 32 characters, not all digits)", n)
	}
	return nil
}

func validSSHKey(k string) error {
	if strings.TrimSpace(k) == "" {
		return fmt.Errorf("is required")
	}
	if strings.ContainsAny(k, "\x00\r") {
		return fmt.Errorf("contains a control character")
	}
	for _, line := range strings.Split(k, "\n") {
		if line = strings.TrimSpace(line); line != "" && len(strings.Fields(line)) < 2 {
			return fmt.Errorf("%q is not an authorized key line (type and base64 key)", line)
		}
	}
	return nil
}

func validAbsPath(p string) error {
	if p == "" {
		return fmt.Errorf("is required")
	}
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.ContainsAny(p, "\x00\n") {
		return fmt.Errorf("%q is not a clean absolute path", p)
	}
	return nil
}

func validID(id *int64) error {
	if id != nil && (*id < 0 || *id > 4294967294) {
		return fmt.Errorf("%d is not between 0 and 4294967294", *id)
	}
	return nil
}
