package config

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/internal/testutil"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLEexampleEXAMPLEexampleEXAMPLEexample alice@laptop"

// keysManifest uses every key added for repos, per-arch packages,
// hostname and users. Line numbers are relied upon below.
var keysManifest = minimalManifest + lines(
	"packages-x86_64: [grub-pc]",               // 8
	"packages-aarch64:",                        // 9
	"  - grub-efi-arm64",                       // 10
	"repos:",                                   // 11
	"  - name: extra",                          // 12
	"    uri: https://repo.example.com/debian", // 13
	"    suite: bookworm",                      // 14
	"    components: [main]",                   // 15
	"    signed-by: keys/extra.gpg",            // 16
	"  - name: flat",                           // 17
	"    uri: file:///srv/flat",                // 18
	"    suite: ./",                            // 19
	"    signed-by: keys/flat.asc",             // 20
	"    arch: [aarch64]",                      // 21
	"hostname: node1.example.com",              // 22
	"users:",                                   // 23
	"  - name: alice",                          // 24
	"    uid: 1500",                            // 25
	"    groups: [adm, sudo]",                  // 26
	"    ssh-authorized-keys:",                 // 27
	"      - "+testKey,                         // 28
	"    password-hash: $y$j9T$abc$def",        // 29
	"    shell: /bin/zsh",                      // 30
	"  - name: root",                           // 31
	"    ssh-authorized-keys: ['"+testKey+"']", // 32
)

func writeKeysConfig(t *testing.T, dir string, extra map[string]string) {
	t.Helper()
	files := map[string]string{
		"manifest.yaml":  keysManifest,
		"keys/extra.gpg": "binary keyring",
		"keys/flat.asc":  "-----BEGIN PGP PUBLIC KEY BLOCK-----\n",
	}
	for k, v := range extra {
		files[k] = v
	}
	testutil.WriteTree(t, dir, files)
}

func TestNewKeysLoad(t *testing.T) {
	dir := t.TempDir()
	writeKeysConfig(t, dir, nil)
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := c.Manifest
	sum := sha256.Sum256([]byte("binary keyring"))
	wantRepo := Repo{Name: "extra", URI: "https://repo.example.com/debian", Suite: "bookworm", Components: []string{"main"},
		SignedBy: "keys/extra.gpg", KeyringSHA256: hex.EncodeToString(sum[:])}
	if len(m.Repos) != 2 || !reflect.DeepEqual(m.Repos[0], wantRepo) {
		t.Fatalf("repos = %+v\nwant first %+v", m.Repos, wantRepo)
	}
	if r := m.Repos[1]; r.Suite != "./" || r.Components != nil || !reflect.DeepEqual(r.Arch, []string{"aarch64"}) || len(r.KeyringSHA256) != 64 {
		t.Errorf("flat repo = %+v", r)
	}
	if m.Hostname != "node1.example.com" {
		t.Errorf("hostname = %q", m.Hostname)
	}
	wantUsers := []User{
		{Name: "alice", UID: 1500, Groups: []string{"adm", "sudo"}, SSHAuthorizedKeys: []string{testKey}, PasswordHash: "$y$j9T$abc$def", Shell: "/bin/zsh"},
		{Name: "root", SSHAuthorizedKeys: []string{testKey}},
	}
	if !reflect.DeepEqual(m.Users, wantUsers) {
		t.Errorf("users = %+v\nwant %+v", m.Users, wantUsers)
	}
	if got := m.PackagesFor("x86_64"); !reflect.DeepEqual(got, []string{"systemd", "linux-image-amd64", "grub-pc"}) {
		t.Errorf("PackagesFor(x86_64) = %v", got)
	}
	if got := m.PackagesFor("s390x"); !reflect.DeepEqual(got, []string{"systemd", "linux-image-amd64"}) {
		t.Errorf("PackagesFor(s390x) = %v", got)
	}
	a := m.ForArch("aarch64")
	if !reflect.DeepEqual(a.Packages, []string{"systemd", "linux-image-amd64", "grub-efi-arm64"}) || len(a.Repos) != 2 || a.PackagesAarch64 != nil {
		t.Errorf("ForArch(aarch64) = packages %v, %d repos", a.Packages, len(a.Repos))
	}
	if x := m.ForArch("x86_64"); len(x.Repos) != 1 || x.Repos[0].Name != "extra" {
		t.Errorf("ForArch(x86_64) repos = %+v; the flat repo is for aarch64 only", x.Repos)
	}
	if len(m.Packages) != 2 {
		t.Errorf("ForArch changed the loaded manifest: %v", m.Packages)
	}
}

// Every new key enters Normalized (the build's input hash), and so does
// the content of a repo's keyring.
func TestNewKeysNormalized(t *testing.T) {
	dir := t.TempDir()
	writeKeysConfig(t, dir, nil)
	base := normalized(t, dir)
	for name, change := range map[string]map[string]string{
		"per-arch package": {"manifest.yaml": strings.Replace(keysManifest, "[grub-pc]", "[grub-pc, vim]", 1)},
		"repo suite":       {"manifest.yaml": strings.Replace(keysManifest, "suite: bookworm\n    comp", "suite: trixie\n    comp", 1)},
		"keyring content":  {"keys/extra.gpg": "another key"},
		"hostname":         {"manifest.yaml": strings.Replace(keysManifest, "node1.example.com", "node2", 1)},
		"user group":       {"manifest.yaml": strings.Replace(keysManifest, "[adm, sudo]", "[adm]", 1)},
		"user key":         {"manifest.yaml": strings.Replace(keysManifest, "alice@laptop", "alice@desk", 1)},
	} {
		d := t.TempDir()
		writeKeysConfig(t, d, change)
		if normalized(t, d) == base {
			t.Errorf("%s: changing it does not change the normalized config", name)
		}
	}
	// A config without the new keys normalizes as before they existed, so
	// upgrading cosa does not force a rebuild.
	plain := t.TempDir()
	testutil.WriteTree(t, plain, map[string]string{"manifest.yaml": minimalManifest})
	for _, k := range []string{"repos", "users", "hostname", "packages-x86_64"} {
		if n := normalized(t, plain); strings.Contains(n, `"`+k+`"`) {
			t.Errorf("normalized form of a config without %s mentions it: %s", k, n)
		}
	}
}

func normalized(t *testing.T, dir string) string {
	t.Helper()
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	return string(n)
}

// TestNewKeysErrors: each bad value of a new key gives one line naming
// file, line and key. DIR stands for the config dir, REAL for the test's
// root with symlinks resolved.
func TestNewKeysErrors(t *testing.T) {
	repo := func(body ...string) string {
		return minimalManifest + lines(append([]string{"repos:", "  - name: extra"}, body...)...)
	}
	good := []string{"    uri: https://repo.example.com/debian", "    suite: bookworm", "    components: [main]", "    signed-by: keys/extra.gpg"}
	with := func(i int, line string) []string {
		out := append([]string(nil), good...)
		if line == "" {
			return append(out[:i], out[i+1:]...)
		}
		out[i] = line
		return out
	}
	user := func(body ...string) string {
		return minimalManifest + lines(append([]string{"users:"}, body...)...)
	}
	tests := []struct {
		name, manifest string
		files          map[string]string // besides manifest.yaml and keys/extra.gpg, under the config dir
		out            map[string]string // under the test root
		want           string
	}{
		{name: "repos not a list", manifest: minimalManifest + "repos: {name: x}\n",
			want: "DIR/manifest.yaml:8: repos: expected a list, got a mapping"},
		{name: "repo item not a mapping", manifest: minimalManifest + "repos: [extra]\n",
			want: "DIR/manifest.yaml:8: repos[0]: expected a mapping, got a string"},
		{name: "repo item null", manifest: minimalManifest + "repos:\n  -\n",
			want: "DIR/manifest.yaml:9: repos[0]: expected a mapping, got null"},
		{name: "repo unknown key", manifest: repo(with(3, "    signedby: keys/extra.gpg")...),
			want: `DIR/manifest.yaml:13: repos[0].signedby: unknown key (did you mean "signed-by"?)`},
		{name: "repo missing uri", manifest: repo(with(0, "")...),
			want: "DIR/manifest.yaml:9: repos[0].uri: required key is missing"},
		{name: "repo missing signed-by", manifest: repo(with(3, "")...),
			want: "DIR/manifest.yaml:9: repos[0].signed-by: required key is missing"},
		{name: "repo bad name", manifest: strings.Replace(repo(good...), "name: extra", "name: ../x", 1),
			want: `DIR/manifest.yaml:9: repos[0].name: invalid repo name "../x" (must match ^[a-z0-9][a-z0-9._-]*$)`},
		{name: "repo duplicate name", manifest: repo(good...) + lines("  - name: extra", good[0], good[1], good[2], good[3]),
			want: "DIR/manifest.yaml:14: repos[1].name: duplicate repo name \"extra\" (first defined at DIR/manifest.yaml:9)"},
		{name: "repo bad uri", manifest: repo(with(0, "    uri: ftp://x/debian")...),
			want: `DIR/manifest.yaml:10: repos[0].uri: invalid repo URI "ftp://x/debian": scheme must be http, https or file`},
		{name: "repo uri wrong type", manifest: repo(with(0, "    uri: [a]")...),
			want: "DIR/manifest.yaml:10: repos[0].uri: expected a string, got a sequence"},
		{name: "repo bad suite", manifest: repo(with(1, "    suite: 'a b'")...),
			want: `DIR/manifest.yaml:11: repos[0].suite: invalid suite "a b" (must match ^[A-Za-z0-9][A-Za-z0-9._-]*$)`},
		{name: "repo without components", manifest: repo(with(2, "")...),
			want: "DIR/manifest.yaml:9: repos[0].components: required key is missing"},
		{name: "flat repo with components", manifest: repo(with(1, "    suite: ./")...),
			want: `DIR/manifest.yaml:12: repos[0].components: a flat repository (suite ending in "/") takes no components`},
		{name: "signed-by escapes", manifest: repo(with(3, "    signed-by: ../extra.gpg")...),
			want: `DIR/manifest.yaml:13: repos[0].signed-by: path "../extra.gpg" escapes the config dir`},
		{name: "signed-by absolute", manifest: repo(with(3, "    signed-by: /etc/apt/trusted.gpg")...),
			want: `DIR/manifest.yaml:13: repos[0].signed-by: absolute path "/etc/apt/trusted.gpg" is not allowed; use a path relative to the config dir`},
		{name: "signed-by symlink out", manifest: repo(with(3, "    signed-by: keys/out.gpg")...),
			files: map[string]string{"keys/out.gpg": "symlink:../../../outside.gpg"}, out: map[string]string{"outside.gpg": "key"},
			want: `DIR/manifest.yaml:13: repos[0].signed-by: path "keys/out.gpg" escapes the config dir (it resolves to "REAL/outside.gpg")`},
		{name: "signed-by missing", manifest: repo(with(3, "    signed-by: keys/none.gpg")...),
			want: `DIR/manifest.yaml:13: repos[0].signed-by: path "keys/none.gpg" does not exist`},
		{name: "signed-by bad extension", manifest: repo(with(3, "    signed-by: keys/extra.key")...),
			files: map[string]string{"keys/extra.key": "k"},
			want:  `DIR/manifest.yaml:13: repos[0].signed-by: keyring "keys/extra.key" must end in .gpg (binary) or .asc (armored): apt tells them apart by name`},
		{name: "repo bad arch", manifest: repo(append(good, "    arch: [amd64]")...),
			want: "DIR/manifest.yaml:14: repos[0].arch[0]: unknown architecture \"amd64\" (allowed: x86_64, aarch64, ppc64le, s390x)"},
		{name: "per-arch bad package", manifest: minimalManifest + "packages-x86_64: [Grub]\n",
			want: `DIR/manifest.yaml:8: packages-x86_64[0]: invalid package name "Grub" (must match ^[a-z0-9][a-z0-9+.-]+$)`},
		{name: "per-arch wrong type", manifest: minimalManifest + "packages-aarch64: grub-efi-arm64\n",
			want: "DIR/manifest.yaml:8: packages-aarch64: expected a list, got a string"},
		{name: "per-arch unknown arch", manifest: minimalManifest + "packages-amd64: [grub-pc]\n",
			want: `DIR/manifest.yaml:8: packages-amd64: unknown key (did you mean "packages-x86_64"?)`},
		{name: "bad hostname", manifest: minimalManifest + "hostname: -node_1\n",
			want: `DIR/manifest.yaml:8: hostname: invalid hostname "-node_1" (dot-separated labels of letters, digits and '-', not starting or ending with '-')`},
		{name: "hostname too long", manifest: minimalManifest + "hostname: " + strings.Repeat("a", 65) + "\n",
			want: `DIR/manifest.yaml:8: hostname: hostname "` + strings.Repeat("a", 65) + `" is longer than 64 characters`},
		{name: "hostname wrong type", manifest: minimalManifest + "hostname: [a]\n",
			want: "DIR/manifest.yaml:8: hostname: expected a string, got a sequence"},
		{name: "user name with slash", manifest: user("  - name: a/b"),
			want: `DIR/manifest.yaml:9: users[0].name: invalid user name "a/b" (must match ^[a-z_][a-z0-9_-]{0,31}$)`},
		{name: "user name dotdot", manifest: user("  - name: .."),
			want: `DIR/manifest.yaml:9: users[0].name: invalid user name ".." (must match ^[a-z_][a-z0-9_-]{0,31}$)`},
		{name: "user missing name", manifest: user("  - groups: [adm]"),
			want: "DIR/manifest.yaml:9: users[0].name: required key is missing"},
		{name: "user duplicate", manifest: user("  - name: bob", "  - name: bob"),
			want: "DIR/manifest.yaml:10: users[1].name: duplicate user \"bob\" (first defined at DIR/manifest.yaml:9)"},
		{name: "user unknown key", manifest: user("  - name: bob", "    ssh-keys: []"),
			want: `DIR/manifest.yaml:10: users[0].ssh-keys: unknown key`},
		{name: "user uid 0", manifest: user("  - name: bob", "    uid: 0"),
			want: "DIR/manifest.yaml:10: users[0].uid: uid 0 is root's; leave uid out to pick a free one"},
		{name: "user uid too big", manifest: user("  - name: bob", "    uid: 65534"),
			want: "DIR/manifest.yaml:10: users[0].uid: must be between 1 and 65533, got 65534"},
		{name: "user uid string", manifest: user("  - name: bob", "    uid: '1000'"),
			want: "DIR/manifest.yaml:10: users[0].uid: expected an integer, got a string"},
		{name: "user bad group", manifest: user("  - name: bob", "    groups: [adm, 'wheel:x']"),
			want: `DIR/manifest.yaml:10: users[0].groups[1]: invalid group name "wheel:x" (must match ^[a-z_][a-z0-9_-]{0,31}$)`},
		{name: "user two keys in one item", manifest: user("  - name: bob", "    ssh-authorized-keys:", `      - "`+testKey+`\n`+testKey+`"`),
			want: "DIR/manifest.yaml:11: users[0].ssh-authorized-keys[0]: key must be one line with no control characters (list each key separately)"},
		{name: "user not a key", manifest: user("  - name: bob", "    ssh-authorized-keys: [hunter2]"),
			want: `DIR/manifest.yaml:10: users[0].ssh-authorized-keys[0]: not an authorized_keys line "hunter2" (want "ssh-ed25519 AAAA... comment")`},
		{name: "user plain password", manifest: user("  - name: bob", "    password-hash: hunter2"),
			want: `DIR/manifest.yaml:10: users[0].password-hash: must be a crypt(3) hash such as "$y$..." or "$6$..." (make one with mkpasswd), or "!" or "*" for no password`},
		{name: "user relative shell", manifest: user("  - name: bob", "    shell: bash"),
			want: `DIR/manifest.yaml:10: users[0].shell: invalid shell "bash" (an absolute path such as /bin/bash)`},
		{name: "user included from another file", manifest: minimalManifest + "include: users.yaml\n",
			files: map[string]string{"users.yaml": "users:\n  - name: ok\n  - name: Bad\n"},
			want:  `DIR/users.yaml:3: users[1].name: invalid user name "Bad" (must match ^[a-z_][a-z0-9_-]{0,31}$)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"manifest.yaml": tt.manifest, "keys/extra.gpg": "k"}
			for k, v := range tt.files {
				files[k] = v
			}
			wantLoadError(t, "a", files, tt.out, tt.want)
		})
	}
}

// TestSyntaxErrorLine: the line of a YAML syntax error is where the
// mistake is, even deep inside a block, where the parser names the block.
func TestSyntaxErrorLine(t *testing.T) {
	tests := []struct {
		name, manifest, want string
	}{
		{"bad indent deep in a mapping", lines(
			"name: demo", "ref: demo/x", "distro:", "  suite: bookworm", "  variant: minbase",
			"  mirror: https://x/debian", " components: [main]", "packages: [vim]"),
			"DIR/manifest.yaml:7: YAML syntax error: did not find expected key"},
		{"bad indent in a sequence", lines(
			"name: demo", "packages:", "  - a", "  - b", " - c", "  - d"),
			"DIR/manifest.yaml:5: YAML syntax error: did not find expected key"},
		{"over-indented key after a list", lines(
			"name: demo", "units:", "  enable:", "    - a.service", "   mask: [b.service]"),
			"DIR/manifest.yaml:5: YAML syntax error: did not find expected key"},
		{"unclosed quote in a list item mapping", lines(
			"name: demo", "users:", "  - name: alice", "    groups: [adm]", `  - name: "bob`, "    groups: [adm]", "hostname: x"),
			"DIR/manifest.yaml:5: YAML syntax error: found unexpected end of stream"},
		{"unclosed single quote in a sequence", lines(
			"name: demo", "units:", "  enable:", "    - a.service", "    - 'b.service", "    - c.service"),
			"DIR/manifest.yaml:5: YAML syntax error: found unexpected end of stream"},
		{"unclosed flow sequence", lines(
			"name: demo", "distro:", "  suite: bookworm", "  components: [main, contrib", "packages: [vim]"),
			"DIR/manifest.yaml:4: YAML syntax error: did not find expected ',' or ']'"},
		{"tab indent", "name: demo\ndistro:\n\tsuite: bookworm\n",
			"DIR/manifest.yaml:3: YAML syntax error: found character that cannot start any token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			testutil.WriteTree(t, dir, map[string]string{"manifest.yaml": tt.manifest})
			_, err := Load(dir)
			if want := strings.ReplaceAll(tt.want, "DIR", dir); err == nil || err.Error() != want {
				t.Errorf("got  %v\nwant %s", err, want)
			}
		})
	}
}

func TestSyntaxErrorLongFile(t *testing.T) {
	// Past maxRescanLines the parser's line is used, still one line.
	body := "name: demo\npackages:\n" + strings.Repeat("  - vim\n", maxRescanLines) + "  - 'x\n"
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{"manifest.yaml": body})
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "YAML syntax error") || strings.Contains(err.Error(), "\n") {
		t.Errorf("err = %v", err)
	}
}

// TestShowProvenance: every value names the file and line it came from,
// through includes; defaults say so; the text form loads back to the same
// config.
func TestShowProvenance(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{
		"manifest.yaml": lines(
			"include: common/base.yaml", // 1
			"name: demo",                // 2
			"ref: demo/x86_64/dev",      // 3
			"packages: [vim]",           // 4
			"hostname: node1",           // 5
			"users:",                    // 6
			"  - name: alice",           // 7
			"    groups: [adm]",         // 8
		),
		"common/base.yaml": lines(
			"distro:",           // 1
			"  suite: bookworm", // 2
			"packages:",         // 3
			"  - systemd",       // 4
			"repos:",            // 5
			"  - name: extra",   // 6
			"    uri: https://repo.example.com/debian", // 7
			"    suite: bookworm",                      // 8
			"    components: [main]",                   // 9
			"    signed-by: keys/extra.gpg",            // 10
		),
		"keys/extra.gpg": "k",
		"image.yaml":     "size: 12\n",
	})
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	man := filepath.Join(dir, "manifest.yaml")
	base := filepath.Join(dir, "common", "base.yaml")
	got := map[string]Setting{}
	for _, s := range c.Settings(DocManifest) {
		got[s.Key] = s
	}
	for _, w := range []Setting{
		{Key: "name", Value: "demo", File: man, Line: 2},
		{Key: "distro.suite", Value: "bookworm", File: base, Line: 2},
		{Key: "distro.variant", Value: "minbase", File: man, Default: true},
		{Key: "packages[0]", Value: "systemd", File: base, Line: 4},
		{Key: "packages[1]", Value: "vim", File: man, Line: 4},
		{Key: "repos[0].signed-by", Value: "keys/extra.gpg", File: base, Line: 10},
		{Key: "hostname", Value: "node1", File: man, Line: 5},
		{Key: "users[0].groups[0]", Value: "adm", File: man, Line: 8},
		{Key: "users[0].shell", Value: "", File: man, Default: true},
		{Key: "exclude-packages", Value: []any{}, File: man, Default: true},
	} {
		if !reflect.DeepEqual(got[w.Key], w) {
			t.Errorf("%s: got %+v, want %+v", w.Key, got[w.Key], w)
		}
	}
	if _, ok := got["include"]; ok {
		t.Error("include is consumed by Load and must not be shown")
	}
	img := map[string]Setting{}
	for _, s := range c.Settings(DocImage) {
		img[s.Key] = s
	}
	if s := img["size"]; s.Value != 12 || s.Line != 1 || s.Default {
		t.Errorf("image size: %+v", s)
	}
	if s := img["aws.volume-type"]; s.Value != "gp3" || !s.Default || s.File != filepath.Join(dir, "image.yaml") {
		t.Errorf("image aws.volume-type: %+v", s)
	}

	text := c.Show()
	for _, want := range []string{
		"  suite: bookworm  # " + base + ":2\n",
		"  - vim  # " + man + ":4\n",
		"  variant: minbase  # default\n",
		"hostname: node1  # " + man + ":5\n",
		"  - name: alice  # " + man + ":7\n",
		"    groups:\n      - adm  # " + man + ":8\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("show output lacks %q:\n%s", want, text)
		}
	}
	// The shown manifest and image load back to the same config.
	parts := strings.SplitN(text, "---\n", 2)
	back := t.TempDir()
	testutil.WriteTree(t, back, map[string]string{"manifest.yaml": parts[0], "image.yaml": parts[1], "keys/extra.gpg": "k"})
	c2, err := Load(back)
	if err != nil {
		t.Fatalf("show output does not load: %v\n%s", err, text)
	}
	n1, _ := c.Normalized()
	n2, _ := c2.Normalized()
	if string(n1) != string(n2) {
		t.Errorf("show output loads to another config:\n%s\n%s", n1, n2)
	}
}
