package blueprint

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// full uses every typed customization plus one the format has but cosa keeps
// untyped (firewall), and the older filesystem key "size".
const full = `name = "kiosk"
description = "A browser kiosk"
version = "0.1.0"
distro = "debian-12"  # a comment

[[packages]]
name = "firefox-esr"
version = "*"

[[packages]]
name = "lib*"
version = "1:2.3-1~deb12u1"

[[modules]]
name = "tmux"

[[groups]]
name = "standard"

[customizations]
hostname = "kiosk-01"

[customizations.kernel]
append = "quiet splash"

[[customizations.sshkey]]
user = "root"
key = "ssh-ed25519 AAAAC3Nza admin@example"

[[customizations.user]]
name = "kiosk"
description = "Kiosk account"
password = "$6$salt$0123456789abcdefABCDEF./"
key = "ssh-ed25519 AAAAC3Nzb kiosk@example"
home = "/home/kiosk"
shell = "/bin/bash"
groups = ["video", "audio"]
uid = 1200
gid = 1200

[[customizations.user]]
name = "admin"

[[customizations.group]]
name = "kioskusers"
gid = 1300

[customizations.timezone]
timezone = "Europe/Berlin"
ntpservers = ["0.pool.ntp.org"]

[customizations.locale]
languages = ["de_DE.UTF-8"]
keyboard = "de"

[customizations.firewall]
ports = ["22:tcp", "8080:tcp"]

[customizations.services]
enabled = ["ssh", "cups.service"]
disabled = ["bluetooth"]

[[customizations.filesystem]]
mountpoint = "/var"
minsize = "4 GiB"

[[customizations.filesystem]]
mountpoint = "/home"
size = 1073741824
`

func mustParse(t *testing.T, src string) *Blueprint {
	t.Helper()
	b, err := ParseTOML([]byte(src))
	if err != nil {
		t.Fatalf("ParseTOML: %v", err)
	}
	return b
}

func TestParseTOMLFull(t *testing.T) {
	b := mustParse(t, full)
	if b.Name != "kiosk" || b.Version != "0.1.0" || b.Distro != "debian-12" {
		t.Errorf("top level: %+v", b)
	}
	if len(b.Packages) != 2 || b.Packages[1].Name != "lib*" || b.Packages[1].Version != "1:2.3-1~deb12u1" {
		t.Errorf("packages: %+v", b.Packages)
	}
	c := b.Customizations
	if c == nil || c.Hostname != "kiosk-01" || c.Kernel.Append != "quiet splash" {
		t.Fatalf("customizations: %+v", c)
	}
	if len(c.User) != 2 || *c.User[0].UID != 1200 || c.User[0].Groups[1] != "audio" || c.User[1].UID != nil {
		t.Errorf("users: %+v", c.User)
	}
	if c.Timezone.NTPServers[0] != "0.pool.ntp.org" || c.Locale.Keyboard != "de" {
		t.Errorf("timezone/locale: %+v %+v", c.Timezone, c.Locale)
	}
	if c.Services.Enabled[1] != "cups.service" || c.Services.Disabled[0] != "bluetooth" {
		t.Errorf("services: %+v", c.Services)
	}
	if c.Filesystem[0].MinSize != 4<<30 {
		t.Errorf("minsize \"4 GiB\" = %d", c.Filesystem[0].MinSize)
	}
	if c.Filesystem[1].MinSize != 1<<30 || c.Filesystem[1].Size != nil {
		t.Errorf("size alias not moved to minsize: %+v", c.Filesystem[1])
	}
	fw, ok := c.Firewall.(map[string]any)
	if !ok || !reflect.DeepEqual(fw["ports"], []any{"22:tcp", "8080:tcp"}) {
		t.Errorf("firewall kept as %#v", c.Firewall)
	}
	if b.EnabledModules == nil || b.Containers != nil {
		t.Errorf("lists not normalised: enabled_modules %#v containers %#v", b.EnabledModules, b.Containers)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, format, src string
		want              string // substring of the error
		kind              error
	}{
		{"toml unknown top key", "toml", "name = \"a\"\ncolour = \"red\"\n", "line 2: colour: unknown key", ErrInvalid},
		{"toml unknown key in second user", "toml", "name = \"a\"\n[[customizations.user]]\nname = \"u\"\n[[customizations.user]]\nname = \"v\"\nshoe = 1\n", "line 6: customizations.user[1].shoe: unknown key", ErrInvalid},
		{"toml unknown customization", "toml", "name = \"a\"\n[customizations.teleport]\nto = \"mars\"\n", "line 2: customizations.teleport: unknown key", ErrInvalid},
		{"toml case matters", "toml", "Name = \"a\"\n", "Name: unknown key", ErrInvalid},
		{"toml wrong type", "toml", "name = \"a\"\n[[customizations.user]]\nname = \"u\"\nuid = \"1000\"\n", "line 4: customizations.user[0].uid: must be an integer, not a string", ErrInvalid},
		{"toml syntax", "toml", "name = \"a\"\ndescription = \n", "line 2", ErrInvalid},
		{"toml both size keys", "toml", "name = \"a\"\n[[customizations.filesystem]]\nmountpoint = \"/var\"\nminsize = 10\nsize = 10\n", "customizations.filesystem[0]: give minsize or size, not both", ErrInvalid},
		{"toml bad unit", "toml", "name = \"a\"\n[[customizations.filesystem]]\nmountpoint = \"/var\"\nminsize = \"4 GB!\"\n", "line 4: customizations.filesystem[0].minsize", ErrInvalid},
		{"toml negative size", "toml", "name = \"a\"\n[[customizations.filesystem]]\nmountpoint = \"/var\"\nminsize = -1\n", "customizations.filesystem[0].minsize: must not be negative", ErrInvalid},
		{"toml float size", "toml", "name = \"a\"\n[[customizations.filesystem]]\nmountpoint = \"/var\"\nminsize = 1.5\n", "minsize: must be a number of bytes", ErrInvalid},
		{"toml relative mountpoint", "toml", "name = \"a\"\n[[customizations.filesystem]]\nmountpoint = \"var\"\n", "line 3: customizations.filesystem[0].mountpoint", ErrInvalid},
		{"toml mountpoint twice", "toml", "name = \"a\"\n[[customizations.filesystem]]\nmountpoint = \"/var\"\n[[customizations.filesystem]]\nmountpoint = \"/var\"\n", "line 5: customizations.filesystem[1].mountpoint: /var is given twice", ErrInvalid},
		{"toml inline table key", "toml", "name = \"a\"\npackages = [{name = \"tmux\", versoin = \"1\"}]\n", "line 2: packages[0].versoin: unknown key", ErrInvalid},
		{"toml missing name", "toml", "description = \"x\"\n", "name: is empty", ErrInvalidName},
		{"toml bad semver", "toml", "name = \"a\"\nversion = \"1.0\"\n", "line 2: version: \"1.0\" is not a semantic version", ErrInvalid},
		{"toml bad package", "toml", "name = \"a\"\n[[packages]]\nname = \"NetworkManager\"\n", "line 3: packages[0].name: \"NetworkManager\" is not a Debian package name", ErrInvalid},
		{"toml package without name", "toml", "name = \"a\"\n[[modules]]\nversion = \"1\"\n", "modules[0].name: is required", ErrInvalid},
		{"toml bad version glob", "toml", "name = \"a\"\n[[packages]]\nname = \"tmux\"\nversion = \"3.3 a\"\n", "line 4: packages[0].version", ErrInvalid},
		{"toml unit enabled and disabled", "toml", "name = \"a\"\n[customizations.services]\nenabled = [\"ssh\"]\ndisabled = [\"ssh\"]\n", "customizations.services.disabled[0]: \"ssh\" is also enabled", ErrInvalid},
		{"toml bad hostname", "toml", "name = \"a\"\n[customizations]\nhostname = \"-bad-\"\n", "line 3: customizations.hostname", ErrInvalid},
		{"toml user twice", "toml", "name = \"a\"\n[[customizations.user]]\nname = \"u\"\n[[customizations.user]]\nname = \"u\"\n", "customizations.user[1].name: user \"u\" is given twice", ErrInvalid},
		{"toml name with slash", "toml", "name = \"a/b\"\n", "line 1: name", ErrInvalidName},
		{"json unknown key", "json", "{\"name\": \"a\",\n \"customizations\": {\n  \"user\": [{\"name\": \"u\"},\n   {\"name\": \"v\", \"shoe\": 1}]}}", "line 4: customizations.user[1].shoe: unknown key", ErrInvalid},
		{"json duplicate key", "json", "{\"name\": \"a\",\n\"name\": \"b\"}", "line 2: name: key is given twice", ErrInvalid},
		{"json size alias is toml only", "json", "{\"name\": \"a\", \"customizations\": {\"filesystem\": [{\"mountpoint\": \"/\", \"size\": 1}]}}", "customizations.filesystem[0].size: unknown key", ErrInvalid},
		{"json wrong type", "json", "{\"name\": \"a\",\n\"packages\": {\"name\": \"tmux\"}}", "line 2: packages: must be an array, not a table", ErrInvalid},
		{"json fractional uid", "json", "{\"name\": \"a\", \"customizations\": {\"user\": [{\"name\": \"u\", \"uid\": 1.5}]}}", "customizations.user[0].uid: must be an integer", ErrInvalid},
		{"json syntax", "json", "{\"name\": \"a\",\n\"version\": }", "line 2", ErrInvalid},
		{"json truncated", "json", "{\"name\": \"a\",", "unexpected end", ErrInvalid},
		{"json trailing data", "json", "{\"name\": \"a\"} {}", "data after the blueprint", ErrInvalid},
		{"json not an object", "json", "[]", "a blueprint is an object", ErrInvalid},
		{"json null in list", "json", "{\"name\": \"a\", \"packages\": [null]}", "packages[0]: must not be null", ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			if c.format == "toml" {
				_, err = ParseTOML([]byte(c.src))
			} else {
				_, err = ParseJSON([]byte(c.src))
			}
			if err == nil {
				t.Fatalf("parsed; want error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if !errors.Is(err, c.kind) {
				t.Errorf("error %q is not %v", err, c.kind)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	big := "name = \"a\"\ndescription = \"" + strings.Repeat("x", MaxSize) + "\"\n"
	if _, err := ParseTOML([]byte(big)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ParseTOML of %d bytes: %v", len(big), err)
	}
}

func TestRoundTrip(t *testing.T) {
	b := mustParse(t, full)
	tm, err := b.TOML()
	if err != nil {
		t.Fatal(err)
	}
	fromTOML := mustParse(t, string(tm))
	if !reflect.DeepEqual(b, fromTOML) {
		t.Errorf("TOML round trip differs:\n%s", tm)
	}
	js, err := b.JSON()
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := ParseJSON(js)
	if err != nil {
		t.Fatalf("ParseJSON of our JSON: %v\n%s", err, js)
	}
	// The untyped customizations hold each decoder's own scalar types, so
	// compare through a second encoding rather than the Go values.
	tm2, err := fromJSON.TOML()
	if err != nil {
		t.Fatal(err)
	}
	if string(tm) != string(tm2) {
		t.Errorf("TOML -> JSON -> TOML differs:\n%s\n---\n%s", tm, tm2)
	}
	js2, _ := fromTOML.JSON()
	if string(js) != string(js2) {
		t.Errorf("JSON output differs after a TOML round trip")
	}
}

func TestJSONShape(t *testing.T) {
	b := mustParse(t, "name = \"web\"\ndescription = \"d\"\nversion = \"1.2.3\"\n[customizations]\nhostname = \"h\"\n")
	js, err := b.JSON()
	if err != nil {
		t.Fatal(err)
	}
	s := string(js)
	// the API's field order, and [] (not null) for the lists it always shows
	order := []string{`"name":"web"`, `"description":"d"`, `"version":"1.2.3"`, `"packages":[]`, `"modules":[]`,
		`"enabled_modules":[]`, `"groups":[]`, `"customizations":{"hostname":"h"}`, `"distro":""`}
	last := -1
	for _, k := range order {
		i := strings.Index(s, k)
		if i < 0 || i < last {
			t.Fatalf("%s missing or out of order in %s", k, s)
		}
		last = i
	}
	for _, k := range []string{"containers", "architecture", "minimal"} {
		if strings.Contains(s, `"`+k+`"`) {
			t.Errorf("empty %s not omitted: %s", k, s)
		}
	}
	// A Blueprint built in Go, never parsed, gets the same lists.
	var m map[string]any
	raw, _ := json.Marshal(&Blueprint{Name: "x"})
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if l, ok := m["packages"].([]any); !ok || len(l) != 0 {
		t.Errorf("packages of a Go-built blueprint: %s", raw)
	}
}

func TestValidName(t *testing.T) {
	good := []string{"kiosk", "web-01", "a.b", "A_b-c.1", "-dash", strings.Repeat("n", MaxNameLen)}
	bad := []string{"", ".", "..", ".hidden", "a..b", "a/b", "../x", "a b", "ä", "a\x00", strings.Repeat("n", MaxNameLen+1)}
	for _, n := range good {
		if err := ValidName(n); err != nil {
			t.Errorf("ValidName(%q) = %v", n, err)
		}
	}
	for _, n := range bad {
		err := ValidName(n)
		if err == nil {
			t.Errorf("ValidName(%q) accepted", n)
		} else if ErrorID(err) != "InvalidChars" {
			t.Errorf("ValidName(%q): id %s", n, ErrorID(err))
		}
	}
}

func TestValidPackageName(t *testing.T) {
	good := []string{"tmux", "g++", "libc6", "lib32z1-dev", "python3.11", "0ad", "*", "lib*", "python3-?ip"}
	bad := []string{"a", "Tmux", "foo_bar", "-foo", ".foo", "foo bar", "foo:amd64", "", "lib[a]*"}
	for _, n := range good {
		if err := ValidPackageName(n); err != nil {
			t.Errorf("ValidPackageName(%q) = %v", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidPackageName(n); err == nil {
			t.Errorf("ValidPackageName(%q) accepted", n)
		}
	}
}

func TestValidVersionGlob(t *testing.T) {
	good := []string{"", "*", "3.3a-3", "1:2.36-9+deb12u4", "2.*", "115.5.0esr-1~deb12u1.amd64", "1.?"}
	bad := []string{"abc", "1.0 beta", "1:", ":1.0", "1.0/2", "1..0;rm", strings.Repeat("1", 300)}
	for _, v := range good {
		if err := ValidVersionGlob(v); err != nil {
			t.Errorf("ValidVersionGlob(%q) = %v", v, err)
		}
	}
	for _, v := range bad {
		if err := ValidVersionGlob(v); err == nil {
			t.Errorf("ValidVersionGlob(%q) accepted", v)
		}
	}
}

func TestNextVersion(t *testing.T) {
	cases := []struct{ pushed, committed, want string }{
		{"", "", "0.0.1"},
		{"0.3.0", "", "0.3.0"},
		{"", "0.1.0", "0.1.1"},
		{"0.1.0", "0.1.0", "0.1.1"},
		{"2.0.0", "0.1.0", "2.0.0"},
		{"0.0.5", "0.1.0", "0.0.5"}, // lower, kept as given
		{"1.0.0-rc.1", "1.0.0-rc.1", "1.0.0"},
		{"1.0.0+build.7", "1.0.0+build.7", "1.0.1"},
		{"", "not-semver", "0.0.1"},
		{"0.9.9", "10.20.30", "0.9.9"},
	}
	for _, c := range cases {
		got, err := NextVersion(c.pushed, c.committed)
		if err != nil || got != c.want {
			t.Errorf("NextVersion(%q, %q) = %q, %v; want %q", c.pushed, c.committed, got, err, c.want)
		}
	}
	for _, bad := range []string{"1", "1.0", "01.0.0", "1.0.0-", "1.0.0-01", "v1.0.0", "1.0.0.0", "1.0.x"} {
		if _, err := NextVersion(bad, "0.1.0"); !errors.Is(err, ErrInvalid) {
			t.Errorf("NextVersion(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := NextVersion("", "0.0.18446744073709551615"); err == nil {
		t.Errorf("patch overflow not reported")
	}
}

func TestParseSize(t *testing.T) {
	cases := map[string]Size{
		"1024": 1024, "10 GiB": 10 << 30, "2GiB": 2 << 30, "512 MiB": 512 << 20, "1 kB": 1000,
		"1.5 KiB": 1536, "0.1 B": 1, "3 TB": 3e12, " 7 B ": 7,
	}
	for s, want := range cases {
		got, err := ParseSize(s)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "GiB", "-1", "1 gib", "1 PiB", "1e3", "99999999999 TiB"} {
		if _, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) accepted", s)
		}
	}
}

func TestUnsupported(t *testing.T) {
	b := mustParse(t, full)
	supported := []string{"packages", "modules", "groups", "distro", "customizations.hostname", "customizations.kernel.append",
		"customizations.sshkey", "customizations.user", "customizations.group", "customizations.timezone",
		"customizations.locale", "customizations.services.enabled", "customizations.services.disabled",
		"customizations.filesystem"}
	if got, want := b.Unsupported(supported), []string{"customizations.firewall"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Unsupported = %v, want %v", got, want)
	}
	b.Customizations.Services.Masked = []string{"cups"}
	b.Customizations.User[1].ExpireDate = new(int64)
	*b.Customizations.User[1].ExpireDate = 20000
	supported[7] = "customizations.user.name" // only names are supported now
	want := []string{"customizations.user.description", "customizations.user.password", "customizations.user.key",
		"customizations.user.home", "customizations.user.shell", "customizations.user.groups", "customizations.user.uid",
		"customizations.user.gid", "customizations.user.expiredate", "customizations.firewall", "customizations.services.masked"}
	if got := b.Unsupported(supported); !reflect.DeepEqual(got, want) {
		t.Errorf("Unsupported = %v\nwant %v", got, want)
	}
	if got := mustParse(t, "name = \"bare\"\n").Features(); len(got) != 0 {
		t.Errorf("a bare blueprint has features %v", got)
	}
}

func TestPlaintextPasswords(t *testing.T) {
	b := mustParse(t, "name = \"a\"\n[[customizations.user]]\nname = \"u\"\npassword = \"hunter2\"\n"+
		"[[customizations.user]]\nname = \"v\"\npassword = \"$6$rounds=5000$salt$abcdefghij\"\n[[customizations.user]]\nname = \"w\"\npassword = \"\"\n")
	if got := b.PlaintextPasswords(); !reflect.DeepEqual(got, []string{"u"}) {
		t.Errorf("PlaintextPasswords = %v", got)
	}
	tm, _ := b.TOML()
	if strings.Count(string(tm), "password") != 2 {
		t.Errorf("empty password not dropped:\n%s", tm)
	}
}

func TestErrorID(t *testing.T) {
	for err, want := range map[error]string{
		ValidName("a/b"):      "InvalidChars",
		unknown("x"):          "UnknownBlueprint",
		ErrUnknownCommit:      "UnknownCommit",
		invalid("k", "bad"):   "BlueprintsError",
		errors.New("git foo"): "BlueprintsError",
	} {
		if got := ErrorID(err); got != want {
			t.Errorf("ErrorID(%v) = %s, want %s", err, got, want)
		}
	}
}
