// Package imagebuild turns a blueprint into a cosa build: Generate makes
// the cosa config for it (the default config plus the blueprint's packages
// and customizations), and Build runs fetch, build and the buildextend
// target of one image type in the blueprint's own workdir, then places the
// artifact where the composer wants it. `cosa serve`'s job runner calls it;
// docs/serve.md says how a blueprint becomes a config.
package imagebuild

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cosa-build/cosa/pkg/blueprint"
	"github.com/cosa-build/cosa/pkg/config"
	defaultconfig "github.com/cosa-build/cosa/src/config"
)

// Supported are the blueprint features (blueprint.Features paths) Generate
// maps onto the config. Anything else is refused by Generate, naming it.
var Supported = []string{
	"packages",
	"modules",
	"groups",
	"distro",
	"architecture",
	"customizations.hostname",
	"customizations.kernel.append",
	"customizations.user",
	"customizations.group",
	"customizations.sshkey",
	"customizations.services.enabled",
	"customizations.services.disabled",
	"customizations.timezone",
	"customizations.locale.languages",
	"customizations.filesystem",
}

// Files written by Generate next to the default config's own.
const (
	// BaseManifest is the default config's manifest.yaml, included by the
	// generated manifest.yaml.
	BaseManifest = "base.yaml"
	// Script is the generated postprocess script (groups, account
	// details the users key has no field for, time zone, locale).
	Script = "postprocess/90-blueprint.sh"
	// OverlayName is the generated overlay (NTP servers).
	OverlayName = "overlay.d/90-blueprint"
)

// suites maps the Weldr distro names (ID-VERSION_ID) to Debian suites.
var suites = map[string]string{
	"debian-11": "bullseye",
	"debian-12": "bookworm",
	"debian-13": "trixie",
}

// GenerateOptions are the compose's settings that are not in the blueprint.
type GenerateOptions struct {
	// Arch is the basearch (x86_64, ...). Required.
	Arch string
	// Ref is the OSTree ref to commit to; "" is debian/<suite>/<arch>.
	Ref string
	// Size is the image size the compose asked for, in bytes; 0 is the
	// default config's. The image gets the largest of this, the default
	// and what the blueprint's filesystem minsize for / needs.
	Size uint64
	// Repos are extra apt repositories (the service's user sources) that
	// fetch takes packages from, each verified with its own key.
	Repos []Repo
	// Groups are the packages of each of the blueprint's groups (Debian
	// tasks), resolved by the caller from its package index. A group of
	// the blueprint missing here is an error, never silently dropped.
	Groups map[string][]string
}

// Repo is an extra apt repository; it becomes an entry of the config's
// repos with its key in keys/<name>.asc (armored) or .gpg (binary).
type Repo struct {
	Name       string // ^[a-z0-9][a-z0-9._-]*$, unique
	URI        string
	Suite      string
	Components []string
	Key        []byte // the keyring that signs the repository's Release
}

// manifestDoc is the generated manifest.yaml: the blueprint's part, on
// top of the default manifest it includes. Lists are concatenated with the
// included ones (docs/config.md#includes), scalars replace them.
type manifestDoc struct {
	Include    []string  `yaml:"include"`
	Ref        string    `yaml:"ref,omitempty"`
	Distro     *distro   `yaml:"distro,omitempty"`
	Packages   []string  `yaml:"packages,omitempty"`
	Units      *units    `yaml:"units,omitempty"`
	KernelArgs []string  `yaml:"kernel-args,omitempty"`
	Hostname   string    `yaml:"hostname,omitempty"`
	Users      []userDoc `yaml:"users,omitempty"`
	Postproc   []string  `yaml:"postprocess,omitempty"`
	Repos      []repoDoc `yaml:"repos,omitempty"`
}

type repoDoc struct {
	Name       string   `yaml:"name"`
	URI        string   `yaml:"uri"`
	Suite      string   `yaml:"suite"`
	Components []string `yaml:"components,omitempty"`
	SignedBy   string   `yaml:"signed-by"`
}

type distro struct {
	Suite string `yaml:"suite"`
}

type units struct {
	Enable  []string `yaml:"enable,omitempty"`
	Disable []string `yaml:"disable,omitempty"`
}

type userDoc struct {
	Name         string   `yaml:"name"`
	UID          int64    `yaml:"uid,omitempty"`
	Groups       []string `yaml:"groups,omitempty"`
	Keys         []string `yaml:"ssh-authorized-keys,omitempty"`
	PasswordHash string   `yaml:"password-hash,omitempty"`
	Shell        string   `yaml:"shell,omitempty"`
}

// gen accumulates what Generate writes.
type gen struct {
	bp       *blueprint.Blueprint
	o        GenerateOptions
	man      manifestDoc
	script   strings.Builder // body of Script; empty: no script
	files    map[string][]byte
	sizeGiB  int
	defaults *config.Config
}

// Generate returns the files of the cosa config for bp (paths relative to
// the config dir, "/"-separated): the embedded default config with its
// manifest moved to base.yaml, a manifest.yaml that includes it and adds
// the blueprint, and, when needed, image.yaml with a larger size, a
// postprocess script and an overlay. The result depends only on bp's
// content (not its version or description) and o, byte for byte, so the
// same blueprint gives the same build input hash. A blueprint feature
// without a mapping is an error naming it. The config is loaded with
// pkg/config before it is returned, so it is valid.
func Generate(bp *blueprint.Blueprint, o GenerateOptions) (map[string][]byte, error) {
	if bp == nil {
		return nil, fmt.Errorf("no blueprint")
	}
	if o.Arch == "" {
		return nil, fmt.Errorf("blueprint %s: no architecture given", bp.Name)
	}
	if u := bp.Unsupported(Supported); len(u) > 0 {
		return nil, fmt.Errorf("blueprint %s: cosa cannot apply %s", bp.Name, strings.Join(u, ", "))
	}
	g := &gen{bp: bp, o: o, files: map[string][]byte{}}
	if err := g.defaultConfig(); err != nil {
		return nil, err
	}
	steps := []func() error{g.distro, g.packages, g.kernel, g.services, g.hostname, g.groupsAndUsers,
		g.timezone, g.locale, g.size, g.repos}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("blueprint %s: %w", bp.Name, err)
		}
	}
	if g.script.Len() > 0 {
		g.files[Script] = []byte("#!/bin/sh\n# Generated by cosa serve from the blueprint's customizations.\nset -eu\n" +
			"fail() { echo \"blueprint: $*\" >&2; exit 1; }\n" + g.script.String())
		g.man.Postproc = append(g.man.Postproc, Script)
	}
	g.man.Include = []string{BaseManifest}
	var buf bytes.Buffer
	buf.WriteString("# Generated by cosa serve from a blueprint: the default config (base.yaml)\n" +
		"# plus the blueprint's packages and customizations. Rewritten on every compose.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&g.man); err != nil {
		return nil, err
	}
	enc.Close()
	g.files[config.ManifestFile] = buf.Bytes()
	if err := Validate(g.files); err != nil {
		return nil, fmt.Errorf("blueprint %s: the generated config is not valid: %w", bp.Name, err)
	}
	return g.files, nil
}

// Validate writes files to a temporary directory and loads them as a config.
func Validate(files map[string][]byte) error {
	dir, err := os.MkdirTemp("", "cosa-blueprint-config-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := WriteFiles(dir, files); err != nil {
		return err
	}
	_, err = config.LoadAs(dir, "src/config")
	return err
}

// WriteFiles writes a Generate result under dir. A file starting with
// "#!" is executable, as `cosa init` makes the embedded config's scripts.
func WriteFiles(dir string, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if bytes.HasPrefix(files[n], []byte("#!")) {
			mode = 0o755
		}
		if err := os.WriteFile(p, files[n], mode); err != nil {
			return err
		}
		// WriteFile keeps an existing file's mode; the mode is an input.
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	return nil
}

// defaultConfig copies the embedded default config, its manifest as
// base.yaml, and loads it for the defaults the blueprint builds on.
func (g *gen) defaultConfig() error {
	err := fs.WalkDir(defaultconfig.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(defaultconfig.FS, p)
		if err != nil {
			return err
		}
		if p == config.ManifestFile {
			p = BaseManifest
		}
		g.files[p] = data
		return nil
	})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "cosa-default-config-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	plain := map[string][]byte{}
	for n, data := range g.files {
		if n == BaseManifest {
			n = config.ManifestFile
		}
		plain[n] = data
	}
	if err := WriteFiles(dir, plain); err != nil {
		return err
	}
	g.defaults, err = config.Load(dir)
	if err != nil {
		return fmt.Errorf("the default config: %w", err)
	}
	return nil
}

func (g *gen) distro() error {
	suite := g.defaults.Manifest.Distro.Suite
	if d := g.bp.Distro; d != "" {
		s, ok := suites[d]
		if !ok {
			var have []string
			for k := range suites {
				have = append(have, k)
			}
			sort.Strings(have)
			return fmt.Errorf("distro: %q is not a distro cosa builds (have %s)", d, strings.Join(have, ", "))
		}
		if s != suite {
			g.man.Distro = &distro{Suite: s}
			suite = s
		}
	}
	if a := g.bp.Architecture; a != "" && a != g.o.Arch {
		return fmt.Errorf("architecture: the blueprint is for %s, this compose builds %s", a, g.o.Arch)
	}
	ref := g.o.Ref
	if ref == "" {
		ref = "debian/" + suite + "/" + g.o.Arch
	}
	if ref != g.defaults.Manifest.Ref {
		g.man.Ref = ref
	}
	return nil
}

// packages adds the blueprint's packages and modules by name. The config
// has no version pins: a version glob is checked against what fetch
// resolved (CheckVersions).
func (g *gen) packages() error {
	for _, list := range []struct {
		key  string
		pkgs []blueprint.Package
	}{{"packages", g.bp.Packages}, {"modules", g.bp.Modules}} {
		for i, p := range list.pkgs {
			if strings.ContainsAny(p.Name, "*?[") {
				return fmt.Errorf("%s[%d]: %q: name globs cannot be installed; name the packages", list.key, i, p.Name)
			}
			if slices.Contains(g.defaults.Manifest.ExcludePackages, p.Name) {
				return fmt.Errorf("%s[%d]: %s cannot be installed: the default config excludes it (%v)", list.key, i, p.Name, g.defaults.Manifest.ExcludePackages)
			}
			g.addPackage(p.Name)
		}
	}
	for i, gr := range g.bp.Groups {
		pkgs, ok := g.o.Groups[gr.Name]
		if !ok {
			return fmt.Errorf("groups[%d]: %s: its packages are unknown (no package index to read the task from)", i, gr.Name)
		}
		for _, n := range pkgs {
			if !slices.Contains(g.defaults.Manifest.ExcludePackages, n) {
				g.addPackage(n)
			}
		}
	}
	return nil
}

func (g *gen) addPackage(name string) {
	if !slices.Contains(g.man.Packages, name) && !slices.Contains(g.defaults.Manifest.Packages, name) {
		g.man.Packages = append(g.man.Packages, name)
	}
}

// CheckVersions checks the version globs of bp's packages and modules
// against the versions fetch resolved (name -> Debian version). A glob
// matches the version with or without its epoch.
func CheckVersions(bp *blueprint.Blueprint, resolved map[string]string) error {
	for _, p := range slices.Concat(bp.Packages, bp.Modules) {
		if p.Version == "" || p.Version == "*" {
			continue
		}
		v, ok := resolved[p.Name]
		if !ok {
			return fmt.Errorf("package %s was not resolved", p.Name)
		}
		noEpoch := v
		if _, rest, ok := strings.Cut(v, ":"); ok {
			noEpoch = rest
		}
		m1, err := path.Match(p.Version, v)
		if err != nil {
			return fmt.Errorf("package %s: bad version glob %q", p.Name, p.Version)
		}
		m2, _ := path.Match(p.Version, noEpoch)
		if !m1 && !m2 {
			return fmt.Errorf("package %s: the archive has version %s, the blueprint asks for %s (cosa installs the version the archive has; change the glob or the sources)", p.Name, v, p.Version)
		}
	}
	return nil
}

// repoName is the config's rule for repository names.
var repoName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// repos adds the extra repositories with their keys.
func (g *gen) repos() error {
	for i, r := range g.o.Repos {
		if len(r.Key) == 0 {
			return fmt.Errorf("repository %d (%s): no key; cosa uses only signed repositories", i, r.Name)
		}
		if !repoName.MatchString(r.Name) {
			return fmt.Errorf("repository %d: %q is not a repository name", i, r.Name)
		}
		key := "keys/" + r.Name + ".gpg"
		if bytes.HasPrefix(bytes.TrimSpace(r.Key), []byte("-----BEGIN PGP")) {
			key = "keys/" + r.Name + ".asc"
		}
		if _, dup := g.files[key]; dup {
			return fmt.Errorf("repository %s is given twice", r.Name)
		}
		g.files[key] = r.Key
		g.man.Repos = append(g.man.Repos, repoDoc{Name: r.Name, URI: r.URI, Suite: r.Suite, Components: r.Components, SignedBy: key})
	}
	return nil
}

// kernel splits kernel.append into arguments, keeping double-quoted
// whitespace inside one argument as the kernel does.
func (g *gen) kernel() error {
	c := g.bp.Customizations
	if c == nil || c.Kernel == nil || c.Kernel.Append == "" {
		return nil
	}
	args, err := splitKargs(c.Kernel.Append)
	if err != nil {
		return fmt.Errorf("customizations.kernel.append: %w", err)
	}
	g.man.KernelArgs = args
	return nil
}

func splitKargs(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	quoted, in := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
			in = true
		case (r == ' ' || r == '\t') && !quoted:
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("%q has an unclosed double quote", s)
	}
	if in {
		out = append(out, cur.String())
	}
	return out, nil
}

// unitName gives a bare service name its .service suffix, as systemctl
// does.
func unitName(s string) string {
	if strings.Contains(s, ".") {
		return s
	}
	return s + ".service"
}

func (g *gen) services() error {
	c := g.bp.Customizations
	if c == nil || c.Services == nil {
		return nil
	}
	u := &units{}
	for _, s := range c.Services.Enabled {
		u.Enable = append(u.Enable, unitName(s))
	}
	for _, s := range c.Services.Disabled {
		n := unitName(s)
		if slices.Contains(u.Enable, n) {
			return fmt.Errorf("customizations.services: %s is both enabled and disabled", s)
		}
		// The default config's enable list comes first and disable runs
		// after enable, so disabling a default unit works.
		u.Disable = append(u.Disable, n)
	}
	if len(u.Enable)+len(u.Disable) > 0 {
		g.man.Units = u
	}
	return nil
}

func (g *gen) hostname() error {
	if c := g.bp.Customizations; c != nil && c.Hostname != "" {
		g.man.Hostname = c.Hostname
	}
	return nil
}

// shq quotes s for a POSIX shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// groupsAndUsers maps group, user and sshkey. The config's users key
// runs before postprocess scripts and only knows groups that exist in the
// tree, so groups the blueprint creates are made by the script, which
// then adds their members; account details the users key has no field
// for (description, home, primary group, expiry, password reset) are set
// by the script with usermod/chage too.
func (g *gen) groupsAndUsers() error {
	c := g.bp.Customizations
	if c == nil {
		return nil
	}
	newGroups := map[string]bool{}
	for i, gr := range c.Group {
		newGroups[gr.Name] = true
		gid := ""
		if gr.GID != nil {
			gid = fmt.Sprintf(" -g %d", *gr.GID)
			fmt.Fprintf(&g.script, "if getent group %[1]s >/dev/null; then [ \"$(getent group %[1]s | cut -d: -f3)\" = %[2]d ] || fail %[3]s; else groupadd%[4]s %[1]s; fi\n",
				shq(gr.Name), *gr.GID, shq(fmt.Sprintf("customizations.group[%d]: group %s exists with another gid than %d", i, gr.Name, *gr.GID)), gid)
		} else {
			fmt.Fprintf(&g.script, "getent group %[1]s >/dev/null || groupadd %[1]s\n", shq(gr.Name))
		}
	}
	var users []userDoc
	index := map[string]int{}
	for i, u := range c.User {
		key := fmt.Sprintf("customizations.user[%d]", i)
		if _, dup := index[u.Name]; dup {
			return fmt.Errorf("%s: user %s is given twice", key, u.Name)
		}
		d := userDoc{Name: u.Name, Shell: u.Shell}
		if u.Password != "" {
			if !blueprint.IsCryptHash(u.Password) {
				return fmt.Errorf("%s.password: not a crypt(3) hash", key)
			}
			d.PasswordHash = u.Password
		}
		if u.UID != nil {
			if *u.UID == 0 && u.Name != "root" {
				return fmt.Errorf("%s.uid: 0 is root's", key)
			}
			if u.Name != "root" {
				d.UID = *u.UID
			}
		}
		d.Keys = keyLines(u.Key)
		var later []string
		for _, gr := range u.Groups {
			if newGroups[gr] {
				later = append(later, gr)
			} else {
				d.Groups = append(d.Groups, gr)
			}
		}
		// What usermod does after the groups exist.
		var mod []string
		if len(later) > 0 {
			mod = append(mod, "-a", "-G", shq(strings.Join(later, ",")))
		}
		if u.GID != nil {
			mod = append(mod, "-g", fmt.Sprint(*u.GID))
		}
		if u.Description != "" {
			if strings.ContainsAny(u.Description, ":\n") {
				return fmt.Errorf("%s.description: must not contain ':' or a line break", key)
			}
			mod = append(mod, "-c", shq(u.Description))
		}
		if u.Home != "" && u.Home != "/home/"+u.Name {
			if !strings.HasPrefix(u.Home, "/") || strings.ContainsAny(u.Home, ":\n") || strings.Contains(u.Home, "..") {
				return fmt.Errorf("%s.home: %q is not an absolute path", key, u.Home)
			}
			mod = append(mod, "-d", shq(u.Home), "-m")
		}
		if u.ExpireDate != nil {
			// The blueprint counts days since 1970-01-01.
			day := time.Unix(*u.ExpireDate*86400, 0).UTC().Format("2006-01-02")
			mod = append(mod, "-e", day)
		}
		if len(mod) > 0 {
			fmt.Fprintf(&g.script, "usermod %s %s\n", strings.Join(mod, " "), shq(u.Name))
		}
		if u.ForcePasswordReset != nil && *u.ForcePasswordReset {
			fmt.Fprintf(&g.script, "chage -d 0 %s\n", shq(u.Name))
		}
		index[u.Name] = len(users)
		users = append(users, d)
	}
	for _, k := range c.SSHKey {
		i, ok := index[k.User]
		if !ok {
			// root, or an account the packages made: the users key
			// amends an existing account and creates a missing one.
			index[k.User] = len(users)
			users = append(users, userDoc{Name: k.User})
			i = len(users) - 1
		}
		users[i].Keys = append(users[i].Keys, keyLines(k.Key)...)
	}
	g.man.Users = users
	return nil
}

// keyLines splits a blueprint key field, which may hold several keys one
// per line.
func keyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// timezone links /etc/localtime and writes /etc/timezone (Debian's pair,
// what tzdata's configuration writes); NTP servers go to a
// systemd-timesyncd drop-in, with that service installed and enabled.
func (g *gen) timezone() error {
	c := g.bp.Customizations
	if c == nil || c.Timezone == nil {
		return nil
	}
	if tz := c.Timezone.Timezone; tz != "" {
		g.addPackage("tzdata")
		fmt.Fprintf(&g.script, "[ -f /usr/share/zoneinfo/%[1]s ] || fail %[2]s\nln -sfn ../usr/share/zoneinfo/%[1]s /etc/localtime\nprintf '%%s\\n' %[1]s > /etc/timezone\n",
			shq(tz), shq("customizations.timezone: "+tz+" is not in tzdata"))
	}
	if ntp := c.Timezone.NTPServers; len(ntp) > 0 {
		for i, s := range ntp {
			if s == "" || strings.ContainsAny(s, " \t\r\n") {
				return fmt.Errorf("customizations.timezone.ntpservers[%d]: %q is not a server name", i, s)
			}
		}
		g.addPackage("systemd-timesyncd")
		g.files[OverlayName+"/etc/systemd/timesyncd.conf.d/50-blueprint.conf"] = []byte(
			"# From the blueprint's customizations.timezone.ntpservers.\n[Time]\nNTP=" + strings.Join(ntp, " ") + "\n")
		if g.man.Units == nil {
			g.man.Units = &units{}
		}
		if !slices.Contains(g.man.Units.Enable, "systemd-timesyncd.service") {
			g.man.Units.Enable = append(g.man.Units.Enable, "systemd-timesyncd.service")
		}
	}
	return nil
}

// plainLocale matches the locales every system has without the locales
// package.
var plainLocale = regexp.MustCompile(`^(C|POSIX|C\.(UTF-8|utf8))$`)

// localeName is what a locale name is made of (ll_CC.charset@modifier).
var localeName = regexp.MustCompile(`^[A-Za-z0-9_.@-]+$`)

// locale sets LANG in /etc/default/locale to the first language and
// generates every listed language that needs generating (with the
// locales package, from its list of supported locales).
func (g *gen) locale() error {
	c := g.bp.Customizations
	if c == nil || c.Locale == nil || len(c.Locale.Languages) == 0 {
		return nil
	}
	langs := c.Locale.Languages
	generate := false
	for i, l := range langs {
		if !localeName.MatchString(l) {
			return fmt.Errorf("customizations.locale.languages[%d]: %q is not a locale name", i, l)
		}
		if plainLocale.MatchString(l) {
			continue
		}
		g.addPackage("locales")
		generate = true
		fmt.Fprintf(&g.script, "line=$(grep -m1 -- %s /usr/share/i18n/SUPPORTED) || fail %s\n",
			shq("^"+regexp.QuoteMeta(l)+" "), shq("customizations.locale.languages: "+l+" is not a supported locale"))
		g.script.WriteString("grep -qxF \"$line\" /etc/locale.gen 2>/dev/null || printf '%s\\n' \"$line\" >> /etc/locale.gen\n")
	}
	if generate {
		g.script.WriteString("locale-gen\n")
	}
	fmt.Fprintf(&g.script, "printf 'LANG=%%s\\n' %s > /etc/default/locale\n", shq(langs[0]))
	return nil
}

// size is the image size: the default, the compose's size and room for
// the blueprint's / minsize (plus the boot partitions, 512 MiB, rounded
// up to a whole GiB), whichever is largest.
func (g *gen) size() error {
	gib := uint64(1) << 30
	size := uint64(g.defaults.Image.Size)
	if g.o.Size > 0 {
		size = max(size, (g.o.Size+gib-1)/gib)
	}
	if c := g.bp.Customizations; c != nil {
		for i, f := range c.Filesystem {
			if f.Mountpoint != "/" {
				return fmt.Errorf("customizations.filesystem[%d]: %s: cosa's images have one root filesystem; only / can be given a size", i, f.Mountpoint)
			}
			size = max(size, (uint64(f.MinSize)+gib+gib-1)/gib)
		}
	}
	if size == uint64(g.defaults.Image.Size) {
		return nil
	}
	if size > 2048 {
		return fmt.Errorf("image size %d GiB is more than cosa's 2048 GiB", size)
	}
	re := regexp.MustCompile(`(?m)^size: [0-9]+$`)
	img := g.files[config.ImageFile]
	if !re.Match(img) {
		return fmt.Errorf("the default image.yaml has no size line")
	}
	g.files[config.ImageFile] = re.ReplaceAll(img, []byte(fmt.Sprintf("size: %d", size)))
	return nil
}
