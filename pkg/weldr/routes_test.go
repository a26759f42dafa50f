package weldr

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProjects(t *testing.T) {
	s := newServer(t)
	m := s.get("/api/v1/projects/list?distro=debian-12&limit=0").wantOK(t).json(t)
	if num(t, m, "total") != 11 || len(list(t, m, "projects")) != 0 {
		t.Fatalf("limit=0: %v", m)
	}
	m = s.get("/api/v1/projects/list?distro=debian-12&limit=11").wantOK(t).json(t)
	projects := list(t, m, "projects")
	if len(projects) != 11 || projects[0].(map[string]any)["name"] != "firefox-esr" {
		t.Fatalf("list: %v", m)
	}
	s.get("/api/v1/projects/list?distro=fedora-40&limit=0").wantError(t, 400, "DistroError", "fedora-40")

	m = s.get("/api/v1/projects/info/tmux,libc*").wantOK(t).json(t)
	projects = list(t, m, "projects")
	if len(projects) != 2 {
		t.Fatalf("info: %v", m)
	}
	tm := projects[1].(map[string]any)
	if tm["name"] != "tmux" || tm["summary"] != "terminal multiplexer" || tm["homepage"] != "https://tmux.github.io/" {
		t.Errorf("tmux: %v", tm)
	}
	b := list(t, tm, "builds")[0].(map[string]any)
	if b["epoch"] != 0.0 || b["release"] != "3" || b["source"].(map[string]any)["version"] != "3.3a" {
		t.Errorf("build: %v", b)
	}
	s.get("/api/v1/projects/info/nosuch").wantError(t, 400, "UnknownProject", "No packages")
	s.get("/api/v1/projects/info/").wantError(t, 404, "HTTPError", "")
	s.get("/api/v1/projects/info").wantError(t, 400, "UnknownProject", "")

	m = s.get("/api/v1/projects/depsolve/tmux,mail-client").wantOK(t).json(t)
	deps := list(t, m, "projects")
	var names []string
	for _, d := range deps {
		d := d.(map[string]any)
		if _, isNum := d["epoch"].(float64); !isNum {
			t.Errorf("epoch of %v is not a number", d)
		}
		names = append(names, d["name"].(string))
	}
	if got := strings.Join(names, " "); got != "libc6 libevent-core-2.1-7 libgcc-s1 libncurses6 mail-client postfix tmux" {
		t.Errorf("closure: %s", got)
	}
	s.get("/api/v1/projects/depsolve/nosuch").wantError(t, 400, "UnknownProject", "nosuch")
}

func TestModules(t *testing.T) {
	s := newServer(t)
	m := s.get("/api/v1/modules/list/lib*?limit=0").wantOK(t).json(t)
	if num(t, m, "total") != 5 {
		t.Errorf("modules list lib*: %v", m)
	}
	m = s.get("/api/v1/modules/list?limit=2").wantOK(t).json(t)
	mods := list(t, m, "modules")
	if len(mods) != 2 || mods[0].(map[string]any)["group_type"] != "deb" {
		t.Errorf("modules list: %v", m)
	}
	s.get("/api/v1/modules/list/nosuch*").wantError(t, 400, "UnknownModule", "")
	m = s.get("/api/v1/modules/info/libevent-core-2.1-7").wantOK(t).json(t)
	mi := list(t, m, "modules")[0].(map[string]any)
	if mi["name"] != "libevent-core-2.1-7" || len(list(t, mi, "dependencies")) != 3 {
		t.Errorf("modules info: %v", mi)
	}
	s.get("/api/v1/modules/info/nosuch").wantError(t, 400, "UnknownModule", "")
}

func TestDistros(t *testing.T) {
	s := newServer(t)
	m := s.get("/api/v1/distros/list").wantOK(t).json(t)
	if fmt.Sprint(list(t, m, "distros")) != "[debian-12]" {
		t.Errorf("distros: %v", m)
	}
}

func TestSources(t *testing.T) {
	s := newServer(t)
	m := s.get("/api/v1/projects/source/list").wantOK(t).json(t)
	if fmt.Sprint(list(t, m, "sources")) != "[debian]" {
		t.Fatalf("list: %v", m)
	}
	// The table form: the table name is the id.
	s.pushTOML("/api/v1/projects/source/new", `[extra]
name = "Extra packages"
type = "deb"
url = "https://repo.example.org/extra/"
suites = ["bookworm"]
components = ["main"]
check_gpg = true
gpgkeys = ["-----BEGIN PGP PUBLIC KEY BLOCK-----\nx\n-----END PGP PUBLIC KEY BLOCK-----"]
`).wantOK(t)
	// The flat form, replacing the same id.
	s.pushTOML("/api/v1/projects/source/new", "id = \"extra\"\nname = \"Extra\"\ntype = \"deb\"\nurl = \"https://repo.example.org/extra/\"\n").wantOK(t)
	m = s.get("/api/v1/projects/source/list").wantOK(t).json(t)
	if fmt.Sprint(list(t, m, "sources")) != "[debian extra]" {
		t.Errorf("list after add: %v", m)
	}
	m = s.get("/api/v0/projects/source/list").wantOK(t).json(t)
	if fmt.Sprint(list(t, m, "sources")) != "[debian Extra]" {
		t.Errorf("v0 lists names: %v", m)
	}
	m = s.get("/api/v1/projects/source/info/extra,debian,nosuch").wantOK(t).json(t)
	srcs := m["sources"].(map[string]any)
	if srcs["extra"].(map[string]any)["name"] != "Extra" || srcs["extra"].(map[string]any)["system"] != false || srcs["debian"].(map[string]any)["system"] != true {
		t.Errorf("info: %v", m)
	}
	if e := list(t, m, "errors"); len(e) != 1 || e[0].(map[string]any)["id"] != "UnknownSource" {
		t.Errorf("info errors: %v", e)
	}
	s.pushTOML("/api/v1/projects/source/new", "id = \"x\"\nname = \"x\"\ntype = \"deb\"\n").wantError(t, 400, "ProjectsError", "'url' field is missing")
	s.pushTOML("/api/v1/projects/source/new", "id = \"x\"\nname = \"x\"\ntype = \"yum-baseurl\"\nurl = \"http://a/\"\n").wantError(t, 400, "ProjectsError", "deb")
	s.pushTOML("/api/v1/projects/source/new", "id = \"x\"\nname = \"x\"\ntype = \"deb\"\nurl = \"http://a/\"\nbogus = 1\n").wantError(t, 400, "ProjectsError", "bogus")
	s.pushTOML("/api/v1/projects/source/new", "id = \"../x\"\nname = \"x\"\ntype = \"deb\"\nurl = \"http://a/\"\n").wantError(t, 400, "ProjectsError", "invalid source id")
	s.pushTOML("/api/v1/projects/source/new", "id = \"debian\"\nname = \"x\"\ntype = \"deb\"\nurl = \"http://a/\"\n").wantError(t, 400, "SystemSource", "debian")
	s.pushTOML("/api/v1/projects/source/new", "").wantError(t, 400, "ProjectsError", "empty")
	s.do("POST", "/api/v1/projects/source/new", "", []byte("id = \"x\"")).wantError(t, 400, "HTTPError", "Content-Type")
	s.do("DELETE", "/api/v1/projects/source/delete/debian", "", nil).wantError(t, 400, "SystemSource", "debian")
	s.do("DELETE", "/api/v1/projects/source/delete/nosuch", "", nil).wantError(t, 400, "UnknownSource", "nosuch")
	s.do("DELETE", "/api/v1/projects/source/delete/extra", "", nil).wantOK(t)
	m = s.get("/api/v1/projects/source/list").wantOK(t).json(t)
	if fmt.Sprint(list(t, m, "sources")) != "[debian]" {
		t.Errorf("list after delete: %v", m)
	}
}

func TestSystemSources(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "sources.list"), []byte("# comment\ndeb [signed-by=/k.gpg arch=amd64] http://deb.example/debian bookworm main contrib\ndeb-src http://deb.example/debian bookworm main\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "sources.list.d", "debian.sources"), []byte("Types: deb\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://off.example/\nSuites: x\nEnabled: no\n"), 0o644)
	got, err := SystemSources(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %+v", got)
	}
	if got[0].ID != "sources" || got[0].URL != "http://deb.example/debian" || fmt.Sprint(got[0].Components) != "[main contrib]" || !got[0].System {
		t.Errorf("one-line: %+v", got[0])
	}
	if got[1].ID != "debian" || fmt.Sprint(got[1].Suites) != "[bookworm bookworm-updates]" {
		t.Errorf("deb822: %+v", got[1])
	}
}
