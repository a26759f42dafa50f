package weldr

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
)

const kioskTOML = `name = "kiosk"
description = "A browser kiosk"
version = "0.1.0"

[[packages]]
name = "firefox-esr"
version = "*"

[customizations]
hostname = "kiosk-01"

[[customizations.user]]
name = "kiosk"
password = "secret"
key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample kiosk@example"
groups = ["video"]

[customizations.services]
enabled = ["ssh.service"]
`

func TestStatus(t *testing.T) {
	s := newServer(t)
	for _, route := range []string{"/api/status", "/api/v1/status"} {
		m := s.get(route).wantOK(t).json(t)
		if m["api"] != "1" || m["backend"] != "cosa" || m["db_supported"] != true {
			t.Errorf("%s: %v", route, m)
		}
		list(t, m, "messages")
	}
}

func TestUnknownRoutes(t *testing.T) {
	s := newServer(t)
	s.get("/api/v1/nosuch").wantError(t, 404, "HTTPError", "not a route")
	s.get("/api/v1/blueprints/info/").wantError(t, 404, "HTTPError", "")
	s.get("/api/v2/blueprints/list").wantError(t, 404, "HTTPError", "")
	// v1-only routes are not under v0.
	s.get("/api/v0/distros/list").wantError(t, 404, "HTTPError", "")
	s.do("PUT", "/api/v1/blueprints/list", "", nil).wantError(t, 404, "HTTPError", "")
}

func TestBlueprintLifecycle(t *testing.T) {
	s := newServer(t)
	// composer-cli lists with limit=0 first: an empty [] and the true total.
	m := s.get("/api/v1/blueprints/list?limit=0").wantOK(t).json(t)
	if len(list(t, m, "blueprints")) != 0 || num(t, m, "total") != 0 {
		t.Fatalf("empty list: %v", m)
	}
	s.pushTOML("/api/v1/blueprints/new", kioskTOML).wantOK(t)
	s.pushTOML("/api/v1/blueprints/new", strings.Replace(kioskTOML, "kiosk", "web", 1)).wantOK(t)
	m = s.get("/api/v1/blueprints/list?limit=0").wantOK(t).json(t)
	if num(t, m, "total") != 2 || len(list(t, m, "blueprints")) != 0 || num(t, m, "limit") != 0 {
		t.Fatalf("limit=0: %v", m)
	}
	// The second request's limit as composer-cli prints a float64.
	m = s.get("/api/v1/blueprints/list?limit=2").wantOK(t).json(t)
	if fmt.Sprint(list(t, m, "blueprints")) != "[kiosk web]" {
		t.Errorf("list: %v", m)
	}
	m = s.get("/api/v1/blueprints/list?limit=1e%2B06").wantOK(t).json(t)
	if len(list(t, m, "blueprints")) != 2 {
		t.Errorf("limit=1e+06: %v", m)
	}
	s.get("/api/v1/blueprints/list?limit=-1").wantError(t, 400, "BadLimitOrOffset", "non-negative")

	// info as JSON: found and unknown together, 200.
	m = s.get("/api/v1/blueprints/info/kiosk,nosuch").wantOK(t).json(t)
	bps := list(t, m, "blueprints")
	if len(bps) != 1 {
		t.Fatalf("info: %v", m)
	}
	bp := bps[0].(map[string]any)
	if bp["name"] != "kiosk" || bp["version"] != "0.1.0" || bp["distro"] != "" {
		t.Errorf("blueprint: %v", bp)
	}
	list(t, bp, "modules")
	list(t, bp, "groups")
	user := bp["customizations"].(map[string]any)["user"].([]any)[0].(map[string]any)
	if pw, _ := user["password"].(string); !strings.HasPrefix(pw, "$6$") {
		t.Errorf("password stored as %q, want a SHA-512 crypt hash", pw)
	}
	if ch := list(t, m, "changes"); len(ch) != 1 || ch[0].(map[string]any)["changed"] != false {
		t.Errorf("changes: %v", ch)
	}
	if e := list(t, m, "errors"); len(e) != 1 || e[0].(map[string]any)["id"] != "UnknownBlueprint" {
		t.Errorf("errors: %v", e)
	}

	// info as TOML: the bare blueprint; unknown is a 400.
	r := s.get("/api/v1/blueprints/info/kiosk?format=toml").wantOK(t)
	if !strings.Contains(string(r.Body), `name = "kiosk"`) || !strings.Contains(string(r.Body), `hostname = "kiosk-01"`) {
		t.Errorf("toml: %s", r.Body)
	}
	s.get("/api/v1/blueprints/info/nosuch?format=toml").wantError(t, 400, "UnknownBlueprint", "nosuch")
	s.get("/api/v1/blueprints/info/kiosk,web?format=toml").wantError(t, 400, "HTTPError", "one")
	s.get("/api/v1/blueprints/info/kiosk?format=yaml").wantError(t, 400, "InvalidChars", "format")

	// Same version pushed again: patch + 1 (lorax's rule).
	s.pushTOML("/api/v1/blueprints/new", kioskTOML).wantOK(t)
	m = s.get("/api/v1/blueprints/info/kiosk").wantOK(t).json(t)
	if v := list(t, m, "blueprints")[0].(map[string]any)["version"]; v != "0.1.1" {
		t.Errorf("version after a second push: %v, want 0.1.1", v)
	}

	// changes: newest first, 40-hex commits, revision null until tagged.
	m = s.get("/api/v1/blueprints/changes/kiosk,nosuch?limit=0").wantOK(t).json(t)
	e := list(t, m, "blueprints")[0].(map[string]any)
	if num(t, e, "total") != 2 {
		t.Fatalf("changes total: %v", e)
	}
	if e := list(t, m, "errors"); len(e) != 1 || e[0].(map[string]any)["id"] != "UnknownBlueprint" {
		t.Errorf("changes errors: %v", e)
	}
	m = s.get("/api/v1/blueprints/changes/kiosk?limit=2").wantOK(t).json(t)
	changes := list(t, list(t, m, "blueprints")[0].(map[string]any), "changes")
	first := changes[0].(map[string]any)
	hex40 := regexp.MustCompile(`^[0-9a-f]{40}$`)
	if !hex40.MatchString(first["commit"].(string)) || first["revision"] != nil {
		t.Errorf("newest change: %v", first)
	}
	if _, ok := first["timestamp"].(string); !ok {
		t.Errorf("timestamp is not a string: %v", first)
	}
	oldest := changes[1].(map[string]any)["commit"].(string)

	// tag (empty JSON body), then the newest change has revision 1.
	s.do("POST", "/api/v1/blueprints/tag/kiosk", "application/json", nil).wantOK(t)
	m = s.get("/api/v1/blueprints/changes/kiosk?limit=1").wantOK(t).json(t)
	if rev := list(t, list(t, m, "blueprints")[0].(map[string]any), "changes")[0].(map[string]any)["revision"]; rev != 1.0 {
		t.Errorf("revision after tag: %v", rev)
	}
	s.do("POST", "/api/v1/blueprints/tag/nosuch", "application/json", nil).wantError(t, 400, "BlueprintsError", "nosuch")

	// change/COMMIT (v1): the blueprint as it was.
	r = s.get("/api/v1/blueprints/change/kiosk/" + oldest + "?format=toml").wantOK(t)
	if !strings.Contains(string(r.Body), `version = "0.1.0"`) {
		t.Errorf("change toml: %s", r.Body)
	}
	s.get("/api/v1/blueprints/change/kiosk/0123456789abcdef0123456789abcdef01234567").wantError(t, 400, "UnknownCommit", "")
	s.get("/api/v0/blueprints/change/kiosk/"+oldest).wantError(t, 404, "HTTPError", "")

	// undo: a new change with the old content.
	s.do("POST", "/api/v1/blueprints/undo/kiosk/"+oldest, "application/json", nil).wantOK(t)
	s.do("POST", "/api/v1/blueprints/undo/kiosk/0123456789abcdef0123456789abcdef01234567", "application/json", nil).wantError(t, 400, "UnknownCommit", "")
	m = s.get("/api/v1/blueprints/changes/kiosk?limit=0").wantOK(t).json(t)
	if num(t, list(t, m, "blueprints")[0].(map[string]any), "total") != 3 {
		t.Errorf("undo did not add a change: %v", m)
	}

	// workspace: shown by info as changed, not listed, not committed.
	ws := strings.Replace(kioskTOML, "A browser kiosk", "edited", 1)
	s.pushTOML("/api/v1/blueprints/workspace", ws).wantOK(t)
	m = s.get("/api/v1/blueprints/info/kiosk").wantOK(t).json(t)
	if list(t, m, "blueprints")[0].(map[string]any)["description"] != "edited" || list(t, m, "changes")[0].(map[string]any)["changed"] != true {
		t.Errorf("workspace copy not shown: %v", m)
	}
	s.pushTOML("/api/v1/blueprints/workspace", strings.Replace(kioskTOML, "kiosk", "draft", 1)).wantOK(t)
	m = s.get("/api/v1/blueprints/list?limit=10").wantOK(t).json(t)
	if fmt.Sprint(list(t, m, "blueprints")) != "[kiosk web]" {
		t.Errorf("a workspace-only blueprint was listed: %v", m)
	}
	s.do("DELETE", "/api/v1/blueprints/workspace/kiosk", "", nil).wantOK(t)
	m = s.get("/api/v1/blueprints/info/kiosk").wantOK(t).json(t)
	if list(t, m, "changes")[0].(map[string]any)["changed"] != false {
		t.Errorf("workspace copy not dropped: %v", m)
	}

	// delete: gone from the list, history kept.
	s.do("DELETE", "/api/v1/blueprints/delete/web", "", nil).wantOK(t)
	s.do("DELETE", "/api/v1/blueprints/delete/web", "", nil).wantError(t, 400, "BlueprintsError", "Unknown blueprint: web")
	m = s.get("/api/v1/blueprints/list?limit=10").wantOK(t).json(t)
	if fmt.Sprint(list(t, m, "blueprints")) != "[kiosk]" {
		t.Errorf("after delete: %v", m)
	}
	m = s.get("/api/v1/blueprints/changes/web").wantOK(t).json(t)
	if len(list(t, m, "blueprints")) != 1 {
		t.Errorf("history of a deleted blueprint lost: %v", m)
	}
}

func TestBlueprintJSONPushAndV0(t *testing.T) {
	s := newServer(t)
	body := `{"name": "j", "description": "from JSON", "version": "1.0.0", "packages": [{"name": "tmux"}]}`
	s.do("POST", "/api/v0/blueprints/new", "application/json", []byte(body)).wantOK(t)
	m := s.get("/api/v0/blueprints/info/j").wantOK(t).json(t)
	if list(t, m, "blueprints")[0].(map[string]any)["description"] != "from JSON" {
		t.Errorf("JSON push: %v", m)
	}
}

func TestBlueprintBadInput(t *testing.T) {
	s := newServer(t)
	s.pushTOML("/api/v1/blueprints/new", "name = \"x\"\n[[packages]\n").wantError(t, 400, "BlueprintsError", "line")
	s.do("POST", "/api/v1/blueprints/new", "application/json", []byte(`{"name": "x",`)).wantError(t, 400, "BlueprintsError", "")
	s.do("POST", "/api/v1/blueprints/new", "", []byte(kioskTOML)).wantError(t, 400, "BlueprintsError", "Content-Type")
	s.do("POST", "/api/v1/blueprints/new", "text/plain", []byte(kioskTOML)).wantError(t, 400, "BlueprintsError", "Content-Type")
	s.pushTOML("/api/v1/blueprints/new", "").wantError(t, 400, "BlueprintsError", "empty")
	s.pushTOML("/api/v1/blueprints/new", "name = \"x\"\nbogus = 1\n").wantError(t, 400, "BlueprintsError", "bogus")
	s.pushTOML("/api/v1/blueprints/new", "name = \"x\"\nversion = \"one\"\n").wantError(t, 400, "BlueprintsError", "version")
	s.pushTOML("/api/v1/blueprints/new", "name = \"x\"\ndistro = \"fedora-40\"\n").wantError(t, 400, "BlueprintsError", "fedora-40")
	// Names with / or .. never reach the disk.
	s.pushTOML("/api/v1/blueprints/new", "name = \"../etc\"\n").wantError(t, 400, "InvalidChars", "")
	s.pushTOML("/api/v1/blueprints/new", "name = \"a/b\"\n").wantError(t, 400, "InvalidChars", "")
	s.pushTOML("/api/v1/blueprints/new", "name = \"..\"\n").wantError(t, 400, "InvalidChars", "")
	s.get("/api/v1/blueprints/info/..").wantError(t, 400, "InvalidChars", "..")
	s.get("/api/v1/blueprints/info/a,..").wantError(t, 400, "InvalidChars", "..")
	s.do("DELETE", "/api/v1/blueprints/delete/..", "", nil).wantError(t, 400, "InvalidChars", "")
	s.get("/api/v1/blueprints/info/a$b").wantError(t, 400, "InvalidChars", "a$b")
	// Oversized body: refused, naming the cap.
	big := "name = \"big\"\ndescription = \"" + strings.Repeat("x", MaxBody) + "\"\n"
	s.pushTOML("/api/v1/blueprints/new", big).wantError(t, 400, "BlueprintsError", "1 MiB")
	m := s.get("/api/v1/blueprints/list?limit=0").wantOK(t).json(t)
	if num(t, m, "total") != 0 {
		t.Errorf("a refused push left a blueprint: %v", m)
	}
}

func TestUnsupportedCustomizationWarnsOnPush(t *testing.T) {
	s := newServer(t)
	m := s.pushTOML("/api/v1/blueprints/new", kioskTOML+"\n[customizations.firewall]\nports = [\"22:tcp\"]\n").wantOK(t).json(t)
	w := list(t, m, "warnings")
	if len(w) != 1 || !strings.Contains(w[0].(string), "customizations.firewall") {
		t.Errorf("warnings: %v", w)
	}
}

func TestConcurrentPushes(t *testing.T) {
	s := newServer(t)
	const n = 8
	var wg sync.WaitGroup
	status := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := strings.Replace(kioskTOML, "A browser kiosk", fmt.Sprintf("push %d", i), 1)
			body = strings.Replace(body, "version = \"0.1.0\"\n", "", 1)
			r := s.pushTOML("/api/v1/blueprints/new", body)
			status[i] = r.Status
		}(i)
	}
	wg.Wait()
	for i, st := range status {
		if st != http.StatusOK {
			t.Errorf("push %d: status %d", i, st)
		}
	}
	m := s.get("/api/v1/blueprints/changes/kiosk?limit=0").wantOK(t).json(t)
	if total := num(t, list(t, m, "blueprints")[0].(map[string]any), "total"); total != n {
		t.Errorf("%v changes, want %d", total, n)
	}
	// Each push bumped the committed version once: 0.0.1 .. 0.0.8.
	m = s.get("/api/v1/blueprints/info/kiosk").wantOK(t).json(t)
	if v := list(t, m, "blueprints")[0].(map[string]any)["version"]; v != fmt.Sprintf("0.0.%d", n) {
		t.Errorf("version %v after %d pushes", v, n)
	}
}

func TestBlueprintDepsolveAndFreeze(t *testing.T) {
	s := newServer(t)
	s.pushTOML("/api/v1/blueprints/new", "name = \"t\"\nversion = \"1.0.0\"\n[[packages]]\nname = \"tmux\"\nversion = \"3.3*\"\n[[modules]]\nname = \"libgcc*\"\n").wantOK(t)
	s.pushTOML("/api/v1/blueprints/new", "name = \"broken\"\n[[packages]]\nname = \"nosuch\"\n").wantOK(t)
	m := s.get("/api/v1/blueprints/depsolve/t,broken,missing").wantOK(t).json(t)
	bps := list(t, m, "blueprints")
	if len(bps) != 2 {
		t.Fatalf("depsolve: %v", m)
	}
	t0 := bps[0].(map[string]any)
	if t0["blueprint"].(map[string]any)["name"] != "t" {
		t.Fatalf("first: %v", t0)
	}
	deps := list(t, t0, "dependencies")
	found := false
	for _, d := range deps {
		d := d.(map[string]any)
		if d["name"] == "libgcc-s1" {
			found = true
			if d["epoch"] != 1.0 || d["version"] != "12.2.0" || d["release"] != "14" || d["arch"] != "amd64" {
				t.Errorf("libgcc-s1: %v", d)
			}
		}
	}
	if !found || len(deps) != 5 {
		t.Errorf("dependencies: %v", deps)
	}
	if d := list(t, bps[1].(map[string]any), "dependencies"); len(d) != 0 {
		t.Errorf("a failed depsolve lists %v", d)
	}
	errs := list(t, m, "errors")
	if len(errs) != 2 {
		t.Errorf("errors: %v", errs)
	}

	m = s.get("/api/v1/blueprints/freeze/t").wantOK(t).json(t)
	fb := list(t, m, "blueprints")[0].(map[string]any)["blueprint"].(map[string]any)
	pk := list(t, fb, "packages")
	if len(pk) != 1 || pk[0].(map[string]any)["version"] != "3.3a-3.amd64" {
		t.Errorf("frozen packages: %v", pk)
	}
	mods := list(t, fb, "modules")
	if len(mods) != 1 || mods[0].(map[string]any)["name"] != "libgcc-s1" || mods[0].(map[string]any)["version"] != "1:12.2.0-14.amd64" {
		t.Errorf("frozen modules (glob): %v", mods)
	}
	r := s.get("/api/v1/blueprints/freeze/t?format=toml").wantOK(t)
	if !strings.Contains(string(r.Body), `version = "3.3a-3.amd64"`) {
		t.Errorf("frozen toml: %s", r.Body)
	}
	if r := s.get("/api/v1/blueprints/freeze/broken?format=toml").wantOK(t); len(r.Body) != 0 {
		t.Errorf("unfreezable toml is not empty: %s", r.Body)
	}
}
