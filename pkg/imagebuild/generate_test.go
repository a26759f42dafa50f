package imagebuild

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/blueprint"
	"github.com/cosa-build/cosa/pkg/config"
)

const sshKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhO0mbAcwnBMmLzvtWnDXjlQ7mCcEs3U5G9yHmS2B3R test@cosa"

// fullTOML uses every customization Generate maps.
const fullTOML = `
name = "web"
description = "a web server"
version = "0.0.3"
distro = "debian-12"

[[packages]]
name = "nginx"
version = "1.22.*"

[[modules]]
name = "curl"

[customizations]
hostname = "web1"

[customizations.kernel]
append = "quiet foo=\"a b\""

[[customizations.sshkey]]
user = "root"
key = "` + sshKey + `"

[[customizations.user]]
name = "admin"
description = "The Admin"
password = "$6$saltsalt$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijkl"
key = "` + sshKey + `"
home = "/srv/admin"
shell = "/bin/sh"
groups = ["sudo", "webadmins"]
uid = 1200
gid = 1300
expiredate = 20000
force_password_reset = true

[[customizations.group]]
name = "webadmins"
gid = 1300

[customizations.services]
enabled = ["nginx", "systemd-timesyncd.service"]
disabled = ["ssh"]

[customizations.timezone]
timezone = "Europe/Berlin"
ntpservers = ["0.pool.example", "1.pool.example"]

[customizations.locale]
languages = ["de_DE.UTF-8", "C.UTF-8"]

[[customizations.filesystem]]
mountpoint = "/"
minsize = "20 GiB"
`

func parse(t *testing.T, s string) *blueprint.Blueprint {
	t.Helper()
	bp, err := blueprint.ParseTOML([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return bp
}

func load(t *testing.T, files map[string][]byte) *config.Config {
	t.Helper()
	dir := t.TempDir()
	if err := WriteFiles(dir, files); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestGenerateMapsEveryCustomization(t *testing.T) {
	bp := parse(t, fullTOML)
	files, err := Generate(bp, GenerateOptions{Arch: "x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := load(t, files)
	m := cfg.Manifest
	for _, p := range []string{"nginx", "curl", "tzdata", "locales", "systemd-timesyncd", "openssh-server"} {
		if !slices.Contains(m.Packages, p) {
			t.Errorf("packages %v lack %s", m.Packages, p)
		}
	}
	if m.Hostname != "web1" {
		t.Errorf("hostname %q", m.Hostname)
	}
	if want := []string{"quiet", `foo="a b"`}; !slices.Equal(m.KernelArgs[len(m.KernelArgs)-2:], want) {
		t.Errorf("kernel-args %q, want them to end in %q", m.KernelArgs, want)
	}
	if !slices.Contains(m.Units.Enable, "nginx.service") || !slices.Contains(m.Units.Enable, "systemd-timesyncd.service") {
		t.Errorf("units.enable %v", m.Units.Enable)
	}
	if !slices.Equal(m.Units.Disable, []string{"ssh.service"}) {
		t.Errorf("units.disable %v", m.Units.Disable)
	}
	if len(m.Users) != 2 {
		t.Fatalf("users %+v", m.Users)
	}
	admin, root := m.Users[0], m.Users[1]
	if admin.Name != "admin" || admin.UID != 1200 || admin.Shell != "/bin/sh" || !strings.HasPrefix(admin.PasswordHash, "$6$") ||
		!slices.Equal(admin.Groups, []string{"sudo"}) || !slices.Equal(admin.SSHAuthorizedKeys, []string{sshKey}) {
		t.Errorf("admin %+v", admin)
	}
	if root.Name != "root" || !slices.Equal(root.SSHAuthorizedKeys, []string{sshKey}) || root.UID != 0 {
		t.Errorf("root %+v", root)
	}
	if cfg.Image.Size != 21 {
		t.Errorf("image size %d GiB, want 21 (20 GiB root + boot partitions)", cfg.Image.Size)
	}
	if !slices.Contains(m.Postprocess, Script) {
		t.Fatalf("postprocess %v lacks %s", m.Postprocess, Script)
	}
	script := string(files[Script])
	for _, want := range []string{
		"groupadd -g 1300 'webadmins'",
		"usermod -a -G 'webadmins' -g 1300 -c 'The Admin' -d '/srv/admin' -m -e 2024-10-04 'admin'",
		"chage -d 0 'admin'",
		"ln -sfn ../usr/share/zoneinfo/'Europe/Berlin' /etc/localtime",
		"> /etc/timezone",
		"'^de_DE\\.UTF-8 ' /usr/share/i18n/SUPPORTED",
		"locale-gen",
		"printf 'LANG=%s\\n' 'de_DE.UTF-8' > /etc/default/locale",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	// groupadd must come before the usermod that needs the group.
	if strings.Index(script, "groupadd") > strings.Index(script, "usermod") {
		t.Errorf("groupadd after usermod:\n%s", script)
	}
	ntp := files[OverlayName+"/etc/systemd/timesyncd.conf.d/50-blueprint.conf"]
	if !bytes.Contains(ntp, []byte("NTP=0.pool.example 1.pool.example\n")) {
		t.Errorf("timesyncd drop-in %q", ntp)
	}
	dirs, err := cfg.OverlayDirs()
	if err != nil || filepath.Base(dirs[len(dirs)-1]) != "90-blueprint" {
		t.Errorf("overlay dirs %v, %v", dirs, err)
	}
}

func TestGenerateMinimalKeepsDefaults(t *testing.T) {
	files, err := Generate(parse(t, `name = "plain"`), GenerateOptions{Arch: "x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files[Script]; ok {
		t.Errorf("a blueprint without customizations got a script")
	}
	cfg := load(t, files)
	def := load(t, mustDefault(t))
	a, _ := cfg.Normalized()
	b, _ := def.Normalized()
	if !bytes.Equal(a, b) {
		t.Errorf("an empty blueprint changed the config:\n%s\n%s", a, b)
	}
}

// mustDefault is the default config as `cosa init` writes it.
func mustDefault(t *testing.T) map[string][]byte {
	g := &gen{files: map[string][]byte{}}
	if err := g.defaultConfig(); err != nil {
		t.Fatal(err)
	}
	g.files[config.ManifestFile] = g.files[BaseManifest]
	delete(g.files, BaseManifest)
	return g.files
}

func TestGenerateIsStable(t *testing.T) {
	a, err := Generate(parse(t, fullTOML), GenerateOptions{Arch: "x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	// Another version and description of the same content: same config.
	other := strings.Replace(strings.Replace(fullTOML, `version = "0.0.3"`, `version = "0.0.4"`, 1), "a web server", "changed", 1)
	b, err := Generate(parse(t, other), GenerateOptions{Arch: "x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("%d files, then %d", len(a), len(b))
	}
	for n := range a {
		if !bytes.Equal(a[n], b[n]) {
			t.Errorf("%s differs:\n%s\n%s", n, a[n], b[n])
		}
	}
	ca, cb := load(t, a), load(t, b)
	na, _ := ca.Normalized()
	nb, _ := cb.Normalized()
	if !bytes.Equal(na, nb) {
		t.Errorf("normalized configs differ")
	}
	// A content change does change it.
	c, err := Generate(parse(t, strings.Replace(fullTOML, `hostname = "web1"`, `hostname = "web2"`, 1)), GenerateOptions{Arch: "x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a[config.ManifestFile], c[config.ManifestFile]) {
		t.Errorf("another hostname gave the same manifest")
	}
}

func TestGenerateRefuses(t *testing.T) {
	for _, tc := range []struct{ name, toml, want string }{
		{"firewall", "[customizations.firewall]\nports = [\"22:tcp\"]", "customizations.firewall"},
		{"keyboard", "[customizations.locale]\nkeyboard = \"de\"", "customizations.locale.keyboard"},
		{"masked", "[customizations.services]\nmasked = [\"foo\"]", "customizations.services.masked"},
		{"kernel name", "[customizations.kernel]\nname = \"linux-image-rt-amd64\"", "customizations.kernel.name"},
		{"groups", "[[groups]]\nname = \"web\"", "groups[0]: web: its packages are unknown"},
		{"mountpoint", "[[customizations.filesystem]]\nmountpoint = \"/var\"\nminsize = 1073741824", "only / can be given a size"},
		{"distro", "distro = \"fedora-40\"", `"fedora-40" is not a distro`},
		{"arch", "architecture = \"aarch64\"", "the blueprint is for aarch64"},
		{"excluded", "[[packages]]\nname = \"initramfs-tools\"", "the default config excludes it"},
		{"name glob", "[[packages]]\nname = \"nginx*\"", "name globs"},
		{"unclosed quote", "[customizations.kernel]\nappend = \"foo=\\\"a b\"", "unclosed double quote"},
		{"both", "[customizations.services]\nenabled = [\"a\"]\ndisabled = [\"a.service\"]", "both enabled and disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bp, err := blueprint.ParseTOML([]byte("name = \"x\"\n" + tc.toml))
			if err != nil {
				t.Skipf("the parser refuses it already: %v", err)
			}
			_, err = Generate(bp, GenerateOptions{Arch: "x86_64"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// A group's packages (the Debian task's, resolved by the service) join
// the manifest's packages; one the default config excludes stays out.
func TestGenerateGroups(t *testing.T) {
	bp := parse(t, "name = \"x\"\n[[groups]]\nname = \"ssh-server\"\n")
	files, err := Generate(bp, GenerateOptions{Arch: "x86_64", Groups: map[string][]string{"ssh-server": {"openssh-server", "initramfs-tools"}}})
	if err != nil {
		t.Fatal(err)
	}
	m := load(t, files).Manifest
	if !slices.Contains(m.Packages, "openssh-server") {
		t.Errorf("packages %v lack the group's openssh-server", m.Packages)
	}
	if slices.Contains(m.Packages, "initramfs-tools") {
		t.Errorf("packages %v have the excluded initramfs-tools", m.Packages)
	}
}

func TestGenerateRefAndSize(t *testing.T) {
	files, err := Generate(parse(t, `name = "x"`), GenerateOptions{Arch: "x86_64", Ref: "edge/x", Size: 30 << 30})
	if err != nil {
		t.Fatal(err)
	}
	cfg := load(t, files)
	if cfg.Manifest.Ref != "edge/x" || cfg.Image.Size != 30 {
		t.Errorf("ref %q size %d", cfg.Manifest.Ref, cfg.Image.Size)
	}
	if _, err := Generate(parse(t, `name = "x"`), GenerateOptions{Arch: "x86_64", Ref: "/bad//ref"}); err == nil {
		t.Errorf("a bad ref was accepted")
	}
}

func TestCheckVersions(t *testing.T) {
	bp := parse(t, "name = \"x\"\n[[packages]]\nname = \"nginx\"\nversion = \"1.22.*\"\n[[packages]]\nname = \"vim\"\n")
	if err := CheckVersions(bp, map[string]string{"nginx": "1.22.1-9", "vim": "2:9.0"}); err != nil {
		t.Error(err)
	}
	if err := CheckVersions(bp, map[string]string{"nginx": "1:1.22.1-9"}); err != nil {
		t.Errorf("epoch: %v", err)
	}
	if err := CheckVersions(bp, map[string]string{"nginx": "1.24.0-1"}); err == nil || !strings.Contains(err.Error(), "1.24.0-1") {
		t.Errorf("mismatch: %v", err)
	}
}

func TestWriteFilesModes(t *testing.T) {
	files, err := Generate(parse(t, fullTOML), GenerateOptions{Arch: "x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteFiles(dir, files); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, Script))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("script mode %v, %v", st.Mode(), err)
	}
}

func TestGenerateRepos(t *testing.T) {
	key := []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ...\n-----END PGP PUBLIC KEY BLOCK-----\n")
	files, err := Generate(parse(t, `name = "x"`), GenerateOptions{Arch: "x86_64", Repos: []Repo{
		{Name: "extra", URI: "http://127.0.0.1/debian", Suite: "bookworm", Components: []string{"main"}, Key: key},
		{Name: "flat", URI: "file:///srv/repo", Suite: "./", Key: []byte{0x99, 0x01}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := load(t, files)
	r := cfg.Manifest.Repos
	if len(r) != 2 || r[0].SignedBy != "keys/extra.asc" || r[1].SignedBy != "keys/flat.gpg" || r[0].KeyringSHA256 == "" {
		t.Errorf("repos %+v", r)
	}
	if _, err := Generate(parse(t, `name = "x"`), GenerateOptions{Arch: "x86_64", Repos: []Repo{{Name: "nokey", URI: "http://127.0.0.1/", Suite: "bookworm", Components: []string{"main"}}}}); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Errorf("unsigned repository: %v", err)
	}
}
