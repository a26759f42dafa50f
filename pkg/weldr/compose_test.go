package weldr

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/internal/testutil"
)

// startBody is POST /compose's body exactly as composer-cli builds it.
func startBody(bp, typ string, extra string) []byte {
	return []byte(`{"blueprint_name":"` + bp + `","compose_type":"` + typ + `","branch":"master","size":0` + extra + `}`)
}

func (s *server) start(t *testing.T, bp, typ, extra string) string {
	t.Helper()
	m := s.do("POST", "/api/v1/compose", "application/json", startBody(bp, typ, extra)).wantOK(t).json(t)
	if m["status"] != true {
		t.Fatalf("start: %v", m)
	}
	list(t, m, "warnings")
	id, _ := m["build_id"].(string)
	if id == "" {
		t.Fatalf("no build_id: %v", m)
	}
	return id
}

// entries reads the three lists composer-cli's compose list/status read.
func (s *server) entries(t *testing.T) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	q := s.get("/api/v1/compose/queue").wantOK(t).json(t)
	for _, key := range []string{"new", "run"} {
		for _, e := range list(t, q, key) {
			out[e.(map[string]any)["id"].(string)] = e.(map[string]any)
		}
	}
	for _, key := range []string{"finished", "failed"} {
		m := s.get("/api/v1/compose/" + key).wantOK(t).json(t)
		for _, e := range list(t, m, key) {
			out[e.(map[string]any)["id"].(string)] = e.(map[string]any)
		}
	}
	return out
}

func TestComposeLifecycle(t *testing.T) {
	s := newServer(t)
	s.pushTOML("/api/v1/blueprints/new", kioskTOML).wantOK(t)

	m := s.get("/api/v1/compose/types").wantOK(t).json(t)
	types := list(t, m, "types")
	if len(types) != 4 {
		t.Fatalf("types: %v", m)
	}
	for _, ty := range types {
		ty := ty.(map[string]any)
		if ty["name"] == "vmdk" && ty["enabled"] != false {
			t.Errorf("vmdk: %v", ty)
		}
	}
	s.get("/api/v1/compose/types?distro=nosuch").wantError(t, 400, "DistroError", "nosuch")

	// Nothing yet: every list is [] (never null).
	if e := s.entries(t); len(e) != 0 {
		t.Fatalf("entries: %v", e)
	}

	// A workspace edit is ignored by compose start: the committed copy is
	// what the queue gets.
	s.pushTOML("/api/v1/blueprints/workspace", strings.Replace(kioskTOML, "kiosk-01", "draft-host", 1)).wantOK(t)
	id := s.start(t, "kiosk", "qcow2", "")
	req := s.queue.Requests()[0]
	if !strings.Contains(string(req.Blueprint), "kiosk-01") || strings.Contains(string(req.Blueprint), "draft-host") {
		t.Errorf("queued blueprint is not the committed one:\n%s", req.Blueprint)
	}
	if len(req.Types) != 1 || req.Types[0] != "qcow2" || req.OSTree != nil || req.Upload != nil {
		t.Errorf("request: %+v", req)
	}

	e := s.entries(t)[id]
	if e["queue_status"] != "WAITING" || e["blueprint"] != "kiosk" || e["version"] != "0.1.0" || e["compose_type"] != "qcow2" {
		t.Errorf("waiting entry: %v", e)
	}
	created := num(t, e, "job_created")
	if created == math.Trunc(created) {
		t.Errorf("job_created %v has no fractional part", created)
	}
	if _, present := e["job_started"]; present {
		t.Errorf("job_started present while WAITING: %v", e)
	}
	if _, isNum := e["image_size"].(float64); !isNum {
		t.Errorf("image_size: %v", e)
	}

	s.get("/api/v1/compose/log/"+id).wantError(t, 400, "BuildInWrongState", "not started")
	s.get("/api/v1/compose/image/"+id).wantError(t, 400, "BuildInWrongState", "")
	s.get("/api/v1/compose/logs/"+id).wantError(t, 400, "BuildInWrongState", "")
	s.do("DELETE", "/api/v1/compose/delete/"+id, "", nil).wantOK(t)
	m = s.do("DELETE", "/api/v1/compose/delete/"+id, "", nil).wantOK(t).json(t)
	if e := list(t, m, "errors"); len(e) != 1 || e[0].(map[string]any)["id"] != "BuildInWrongState" {
		t.Errorf("deleting a waiting compose: %v", m)
	}

	if err := s.queue.Run(id); err != nil {
		t.Fatal(err)
	}
	e = s.entries(t)[id]
	if e["queue_status"] != "RUNNING" || num(t, e, "job_started") == 0 {
		t.Errorf("running entry: %v", e)
	}
	r := s.get("/api/v1/compose/log/" + id + "?size=1").wantOK(t)
	if !strings.Contains(string(r.Body), "building qcow2") {
		t.Errorf("live log: %q", r.Body)
	}

	image := []byte("QFI\xfb fake qcow2")
	if err := s.queue.Finish(id, map[string][]byte{"disk.qcow2": image, "meta.json": []byte(`{"buildid":"x"}`),
		"pkglist.json": []byte(`[{"name":"zsh","version":"5.9-4+b1","arch":"amd64"},{"name":"base-files","version":"1:12.4+deb12u5","arch":"amd64"}]`)}); err != nil {
		t.Fatal(err)
	}
	e = s.entries(t)[id]
	if e["queue_status"] != "FINISHED" || num(t, e, "job_finished") < num(t, e, "job_started") || num(t, e, "image_size") != float64(len(image)) {
		t.Errorf("finished entry: %v", e)
	}

	// Version 0.1.0 pushed again with other contents (0.1.0 -> 0.1.1 by the
	// bump rule, then 0.1.0 as given): info still shows what was composed.
	changed := strings.Replace(kioskTOML, "A browser kiosk", "Changed later", 1)
	s.pushTOML("/api/v1/blueprints/new", changed).wantOK(t)
	s.pushTOML("/api/v1/blueprints/new", changed).wantOK(t)
	m = s.get("/api/v1/compose/info/" + id).wantOK(t).json(t)
	if bp := m["blueprint"].(map[string]any); bp["description"] != "A browser kiosk" {
		t.Errorf("info shows a later push of the same version: %v", bp)
	}
	if m["id"] != id || m["queue_status"] != "FINISHED" || m["compose_type"] != "qcow2" {
		t.Errorf("info: %v", m)
	}
	if bp := m["blueprint"].(map[string]any); bp["name"] != "kiosk" || bp["version"] != "0.1.0" || len(list(t, bp, "packages")) != 1 {
		t.Errorf("info blueprint: %v", bp)
	}
	// Once built, deps are what the image holds (the build's pkglist.json),
	// sorted, with Debian versions split the Weldr way.
	deps := list(t, m["deps"].(map[string]any), "packages")
	if len(deps) != 2 {
		t.Fatalf("deps: %v", deps)
	}
	if d := deps[0].(map[string]any); d["name"] != "base-files" || d["epoch"] != float64(1) || d["version"] != "12.4+deb12u5" || d["release"] != "" || d["arch"] != "amd64" {
		t.Errorf("deps[0]: %v", d)
	}
	if d := deps[1].(map[string]any); d["name"] != "zsh" || d["epoch"] != float64(0) || d["version"] != "5.9" || d["release"] != "4+b1" {
		t.Errorf("deps[1]: %v", d)
	}

	r = s.get("/api/v1/compose/image/" + id).wantOK(t)
	if cd := r.Header.Get("Content-Disposition"); cd != "attachment; filename="+id+"-disk.qcow2" {
		t.Errorf("Content-Disposition %q", cd)
	}
	if !bytes.Equal(r.Body, image) || r.Header.Get("Content-Length") != "15" {
		t.Errorf("image body %q, length %s", r.Body, r.Header.Get("Content-Length"))
	}

	r = s.get("/api/v1/compose/logs/" + id).wantOK(t)
	if r.Header.Get("Content-Disposition") != "attachment; filename="+id+"-logs.tar" || r.Header.Get("Content-Type") != "application/x-tar" {
		t.Errorf("logs headers: %v", r.Header)
	}
	if mem := testutil.TarMembers(t, r.Body); !strings.Contains(mem["logs/build.log"], "finished qcow2") {
		t.Errorf("logs tar: %v", mem)
	}
	r = s.get("/api/v1/compose/metadata/" + id).wantOK(t)
	if mem := testutil.TarMembers(t, r.Body); len(mem) != 2 || mem["meta.json"] == "" || mem["pkglist.json"] == "" {
		t.Errorf("metadata tar: %v", mem)
	}
	r = s.get("/api/v1/compose/results/" + id).wantOK(t)
	if r.Header.Get("Content-Disposition") != "attachment; filename="+id+".tar" {
		t.Errorf("results name: %v", r.Header)
	}
	mem := testutil.TarMembers(t, r.Body)
	var names []string
	for n := range mem {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "disk.qcow2 logs/build.log meta.json pkglist.json" || mem["disk.qcow2"] != string(image) {
		t.Errorf("results tar: %v", names)
	}
	r = s.get("/api/v1/compose/log/" + id).wantOK(t)
	if !strings.Contains(string(r.Body), "finished qcow2") {
		t.Errorf("log: %q", r.Body)
	}

	m = s.get("/api/v1/compose/status/" + id + ",nosuch").wantOK(t).json(t)
	if len(list(t, m, "uuids")) != 1 || len(list(t, m, "errors")) != 1 {
		t.Errorf("status: %v", m)
	}

	s.do("DELETE", "/api/v1/compose/cancel/"+id, "", nil).wantError(t, 400, "BuildInWrongState", "WAITING or RUNNING")
	m = s.do("DELETE", "/api/v1/compose/delete/"+id+",nosuch", "", nil).wantOK(t).json(t)
	if u := list(t, m, "uuids"); len(u) != 1 || u[0].(map[string]any)["status"] != true {
		t.Errorf("delete uuids: %v", m)
	}
	if e := list(t, m, "errors"); len(e) != 1 || e[0].(map[string]any)["id"] != "UnknownUUID" {
		t.Errorf("delete errors: %v", m)
	}
	s.get("/api/v1/compose/info/"+id).wantError(t, 400, "UnknownUUID", id)
}

func TestComposeCancelAndFailed(t *testing.T) {
	s := newServer(t)
	s.pushTOML("/api/v1/blueprints/new", kioskTOML).wantOK(t)
	a := s.start(t, "kiosk", "qcow2", "")
	m := s.do("DELETE", "/api/v1/compose/cancel/"+a, "", nil).wantOK(t).json(t)
	if m["uuid"] != a || m["status"] != true {
		t.Errorf("cancel: %v", m)
	}
	if e := s.entries(t)[a]; e["queue_status"] != "FAILED" {
		t.Errorf("cancelled compose: %v", e)
	}
	s.get("/api/v1/compose/image/"+a).wantError(t, 400, "BuildInWrongState", "")
	s.get("/api/v1/compose/logs/" + a).wantOK(t)

	// A damaged record is listed as FAILED with its reason, and the other
	// composes and routes are unaffected.
	b := s.start(t, "kiosk", "qcow2", "")
	c := s.start(t, "kiosk", "qcow2", "")
	if err := s.queue.Break(b, "record truncated"); err != nil {
		t.Fatal(err)
	}
	e := s.entries(t)
	if e[b]["queue_status"] != "FAILED" || e[b]["error"] != "record truncated" || e[c]["queue_status"] != "WAITING" {
		t.Errorf("entries with a damaged record: %v", e)
	}
	s.get("/api/v1/compose/info/" + c).wantOK(t)
}

func TestComposeStartErrors(t *testing.T) {
	s := newServer(t)
	s.pushTOML("/api/v1/blueprints/new", kioskTOML).wantOK(t)
	s.pushTOML("/api/v1/blueprints/new", strings.Replace(kioskTOML, "kiosk", "fw", 1)+"\n[customizations.firewall]\nports = [\"22:tcp\"]\n[customizations.services]\n").wantError(t, 400, "BlueprintsError", "")
	s.pushTOML("/api/v1/blueprints/new", "name = \"fw\"\n[customizations.firewall]\nports = [\"22:tcp\"]\n[customizations.services]\nmasked = [\"x.service\"]\n").wantOK(t)
	s.pushTOML("/api/v1/blueprints/workspace", "name = \"wsonly\"\n").wantOK(t)

	s.do("POST", "/api/v1/compose", "text/plain", startBody("kiosk", "qcow2", "")).wantError(t, 400, "MissingPost", "application/json")
	s.do("POST", "/api/v1/compose", "application/json", nil).wantError(t, 400, "MissingPost", "")
	s.do("POST", "/api/v1/compose", "application/json", []byte(`{"blueprint_name":`)).wantError(t, 400, "ComposeError", "malformed")
	s.do("POST", "/api/v1/compose", "application/json", startBody("nosuch", "qcow2", "")).wantError(t, 400, "UnknownBlueprint", "nosuch")
	s.do("POST", "/api/v1/compose", "application/json", startBody("wsonly", "qcow2", "")).wantError(t, 400, "UnknownBlueprint", "wsonly")
	s.do("POST", "/api/v1/compose", "application/json", startBody("kiosk", "iso", "")).wantError(t, 400, "ComposeError", "unknown compose type iso")
	s.do("POST", "/api/v1/compose", "application/json", startBody("kiosk", "vmdk", "")).wantError(t, 400, "ComposeError", "cannot be built")
	s.do("POST", "/api/v1/compose", "application/json", startBody("fw", "qcow2", "")).wantError(t, 400, "ComposeError", `"customizations.firewall", "customizations.services.masked"`)
	s.do("POST", "/api/v1/compose", "application/json", startBody("../x", "qcow2", "")).wantError(t, 400, "InvalidChars", "")
	s.do("POST", "/api/v1/compose", "application/json", startBody("kiosk", "ami", `,"upload":{"provider":"azure","image_name":"x","settings":{}}`)).wantError(t, 400, "ComposeError", "azure")
	s.pushTOML("/api/v1/blueprints/new", "name = \"nopkg\"\n[[packages]]\nname = \"nosuch-pkg\"\n").wantOK(t)
	s.do("POST", "/api/v1/compose", "application/json", startBody("nopkg", "qcow2", "")).wantError(t, 400, "DepsolveError", "nosuch-pkg")
	s.pushTOML("/api/v1/blueprints/new", "name = \"nogroup\"\n[[groups]]\nname = \"gnome-desktop\"\n").wantOK(t)
	s.do("POST", "/api/v1/compose", "application/json", startBody("nogroup", "qcow2", "")).wantError(t, 400, "DepsolveError", "task-gnome-desktop")
	s.get("/api/v1/compose/info/nosuch").wantError(t, 400, "UnknownUUID", "nosuch")
	s.get("/api/v1/compose/info/..").wantError(t, 400, "InvalidChars", "")
	s.do("DELETE", "/api/v1/compose/cancel/nosuch", "", nil).wantError(t, 400, "UnknownUUID", "")
	for _, c := range s.queue.Calls() {
		if strings.HasPrefix(c, "Start") {
			t.Errorf("a refused request reached the queue: %v", s.queue.Calls())
		}
	}
}

func TestComposeOSTreeUploadAndSize(t *testing.T) {
	s := newServer(t)
	s.pushTOML("/api/v1/blueprints/new", kioskTOML+"\n[[customizations.filesystem]]\nmountpoint = \"/var\"\nminsize = 1000\n").wantOK(t)
	s.start(t, "kiosk", "edge-commit", `,"ostree":{"ref":"debian/12/x86_64/kiosk","parent":"","url":"http://10.0.2.2:8080/repo/"}`)
	id := s.start(t, "kiosk", "ami", `,"upload":{"provider":"aws","image_name":"kiosk-ami","settings":{"accessKeyID":"AKIA","bucket":"b","region":"eu-west-1","secretAccessKey":"s3cr3t"}}`)
	reqs := s.queue.Requests()
	if o := reqs[0].OSTree; o == nil || o.Ref != "debian/12/x86_64/kiosk" || o.URL != "http://10.0.2.2:8080/repo/" {
		t.Errorf("ostree: %+v", o)
	}
	// The filesystem minimum, rounded up to 512, is the size.
	if reqs[0].Size != 1024 {
		t.Errorf("size %d, want 1024", reqs[0].Size)
	}
	if u := reqs[1].Upload; u == nil || u.Provider != "aws" || u.ImageName != "kiosk-ami" || u.Settings["bucket"] != "b" {
		t.Errorf("upload: %+v", u)
	}
	r := s.get("/api/v1/compose/info/" + id).wantOK(t)
	if strings.Contains(string(r.Body), "s3cr3t") {
		t.Errorf("compose info echoes a secret: %s", r.Body)
	}
	var info struct {
		Uploads []struct {
			UUID         string  `json:"uuid"`
			Status       string  `json:"status"`
			ProviderName string  `json:"provider_name"`
			ImageName    string  `json:"image_name"`
			CreationTime float64 `json:"creation_time"`
		} `json:"uploads"`
	}
	if err := json.Unmarshal(r.Body, &info); err != nil || len(info.Uploads) != 1 || info.Uploads[0].ProviderName != "aws" || info.Uploads[0].Status != "WAITING" {
		t.Errorf("uploads: %+v %v", info, err)
	}
	// Size from the request when larger.
	s.start(t, "kiosk", "qcow2", "")
	body := []byte(`{"blueprint_name":"kiosk","compose_type":"qcow2","branch":"master","size":4294967296}`)
	s.do("POST", "/api/v1/compose", "application/json", body).wantOK(t)
	if got := s.queue.Requests()[3].Size; got != 4294967296 {
		t.Errorf("size %d", got)
	}
}

func TestComposeStartWithoutIndexWarns(t *testing.T) {
	s := newServer(t)
	files, _ := filepath.Glob(filepath.Join(s.dir, "lists", "*"))
	for _, f := range files {
		os.Remove(f)
	}
	s.pushTOML("/api/v1/blueprints/new", kioskTOML).wantOK(t)
	m := s.do("POST", "/api/v1/compose", "application/json", startBody("kiosk", "qcow2", "")).wantOK(t).json(t)
	if w := list(t, m, "warnings"); len(w) != 1 || !strings.Contains(w[0].(string), "no package index") {
		t.Errorf("warnings: %v", m)
	}
	s.get("/api/v1/projects/list?limit=0").wantError(t, 400, "ProjectsError", "apt-get update")
}

// TestComposeSeveralTypes: cosa's compose_types extension makes one compose
// of several image builds, and each route shows it per image build.
func TestComposeSeveralTypes(t *testing.T) {
	s := newServer(t)
	s.pushTOML("/api/v1/blueprints/new", kioskTOML).wantOK(t)
	s.queue.AutoFinish = true
	start := func(body string) reply {
		return s.do("POST", "/api/v1/compose", "application/json", []byte(body))
	}

	for _, c := range []struct{ body, want string }{
		{`{"blueprint_name":"kiosk","compose_type":"ami","compose_types":["qcow2","ami"]}`, "not the first of compose_types"},
		{`{"blueprint_name":"kiosk","compose_types":["qcow2","qcow2"]}`, "names qcow2 twice"},
		{`{"blueprint_name":"kiosk","compose_types":["qcow2",""]}`, "empty type"},
		{`{"blueprint_name":"kiosk","compose_types":["qcow2","vmdk"]}`, "vmdk cannot be built"},
		{`{"blueprint_name":"kiosk","compose_types":["qcow2","nosuch"]}`, "unknown compose type nosuch"},
		{`{"blueprint_name":"kiosk","compose_types":[]}`, "without compose_type"},
	} {
		start(c.body).wantError(t, 400, "ComposeError", c.want)
	}
	if n := len(s.queue.Requests()); n != 0 {
		t.Fatalf("refused requests reached the queue: %d", n)
	}

	m := start(`{"blueprint_name":"kiosk","compose_type":"qcow2","compose_types":["qcow2","ami"],"branch":"master","size":0}`).wantOK(t).json(t)
	id, _ := m["build_id"].(string)
	if req := s.queue.Requests(); len(req) != 1 || strings.Join(req[0].Types, ",") != "qcow2,ami" {
		t.Fatalf("requests: %+v", req)
	}

	// Listed under its first build's type and size; each build in
	// image_builds.
	e := s.entries(t)[id]
	builds := list(t, e, "image_builds")
	if e["compose_type"] != "qcow2" || e["queue_status"] != "FINISHED" || len(builds) != 2 {
		t.Fatalf("entry: %v", e)
	}
	qcow, ami := builds[0].(map[string]any), builds[1].(map[string]any)
	if qcow["compose_type"] != "qcow2" || ami["compose_type"] != "ami" || qcow["queue_status"] != "FINISHED" ||
		qcow["image"] != "disk.qcow2" || ami["image"] != "disk.ami" || qcow["id"] == ami["id"] || qcow["id"] == id {
		t.Errorf("image_builds: %v", builds)
	}
	if num(t, e, "image_size") != num(t, qcow, "image_size") || num(t, ami, "image_size") != float64(len("fake ami image\n")) {
		t.Errorf("sizes: %v", e)
	}
	info := s.get("/api/v1/compose/info/" + id).wantOK(t).json(t)
	if info["compose_type"] != "qcow2" || len(list(t, info, "image_builds")) != 2 {
		t.Errorf("info: %v", info)
	}
	for typ, want := range map[string]int{"ami": 1, "qcow2": 1, "edge-commit": 0} {
		st := s.get("/api/v1/compose/status/" + id + "?type=" + typ).wantOK(t).json(t)
		if got := len(list(t, st, "uuids")); got != want {
			t.Errorf("status ?type=%s: %d composes, want %d", typ, got, want)
		}
	}

	// compose/image: the first build, the one ?type= names, or the one
	// the path names by its image build id.
	for route, want := range map[string]string{
		id:                                  "fake qcow2 image\n",
		id + "?type=ami":                    "fake ami image\n",
		id + "?type=qcow2":                  "fake qcow2 image\n",
		ami["id"].(string):                  "fake ami image\n",
		qcow["id"].(string) + "?type=qcow2": "fake qcow2 image\n",
	} {
		if r := s.get("/api/v1/compose/image/" + route).wantOK(t); string(r.Body) != want {
			t.Errorf("image/%s: %q, want %q", route, r.Body, want)
		}
	}
	s.get("/api/v1/compose/image/"+id+"?type=edge-commit").wantError(t, 400, "BuildMissingFile", "no edge-commit image build")
	s.get("/api/v1/compose/image/"+qcow["id"].(string)+"?type=ami").wantError(t, 400, "BuildMissingFile", "")

	// results: one directory per type.
	mem := testutil.TarMembers(t, s.get("/api/v1/compose/results/"+id).wantOK(t).Body)
	if mem["qcow2/disk.qcow2"] != "fake qcow2 image\n" || mem["ami/disk.ami"] != "fake ami image\n" {
		t.Errorf("results tar: %v", mem)
	}
}

// ?test=1|2 reaches the queue as Request.Test after the usual checks; any
// other value is refused.
func TestComposeTestMode(t *testing.T) {
	s := newServer(t)
	s.pushTOML("/api/v1/blueprints/new", kioskTOML).wantOK(t)
	for _, n := range []int{1, 2} {
		s.do("POST", fmt.Sprintf("/api/v1/compose?test=%d", n), "application/json", startBody("kiosk", "qcow2", "")).wantOK(t)
	}
	s.do("POST", "/api/v1/compose?test=3", "application/json", startBody("kiosk", "qcow2", "")).wantError(t, 400, "ComposeError", "test=3")
	s.do("POST", "/api/v0/compose?test=2", "application/json", startBody("nosuch", "qcow2", "")).wantError(t, 400, "UnknownBlueprint", "nosuch")
	reqs := s.queue.Requests()
	if len(reqs) != 2 || reqs[0].Test != 1 || reqs[1].Test != 2 {
		t.Errorf("requests: %+v", reqs)
	}
}
