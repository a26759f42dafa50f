package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/internal/testutil"
)

func TestConfigValidate(t *testing.T) {
	wd := initWorkdir(t)
	cfg := filepath.Join(wd, "src", "config")
	r := cosa(t, "config", "validate", "-C", wd).wantOK(t)
	if want := "config OK: " + cfg + " (debian-ostree, ref debian/bookworm/x86_64; "; !strings.HasPrefix(r.stdout, want) ||
		strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("stdout %q, want one line starting %q", r.stdout, want)
	}

	// A bad config: exit 2, one line naming file, line and key; a YAML
	// error deep in a block is reported on its own line.
	dir := filepath.Join(t.TempDir(), "c")
	testutil.WriteTree(t, dir, map[string]string{"manifest.yaml": minimalManifest + "users:\n  - name: alice\n    groups: [adm\n",
		"postprocess/10-hostname.sh": "#!/bin/sh\n"})
	r = cosa(t, "config", "validate", dir).wantCode(t, 2)
	if want := "error: " + dir + "/manifest.yaml:11: YAML syntax error: did not find expected ',' or ']'\n"; r.stderr != want {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}
	testutil.WriteTree(t, dir, map[string]string{"manifest.yaml": minimalManifest + "hostname: bad_name\n"})
	cosa(t, "config", "validate", dir).wantCode(t, 2).
		wantStderr(t, "error: "+dir+"/manifest.yaml:9: hostname: invalid hostname \"bad_name\" (dot-separated labels of letters, digits and '-', not starting or ending with '-')\n")
	if r := cosa(t, "config", "validate", filepath.Join(t.TempDir(), "none")); r.code != 2 {
		t.Errorf("missing config dir: exit %d", r.code)
	}

	r = cosa(t, "config", "validate", "--json", "-C", wd).wantOK(t)
	var ev struct {
		Event  string               `json:"event"`
		Result configValidateResult `json:"result"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ev); err != nil || ev.Event != "result" || !ev.Result.OK || ev.Result.Name != "debian-ostree" || ev.Result.Packages == 0 {
		t.Errorf("--json: %v %+v from %q", err, ev, r.stdout)
	}
}

func TestConfigShow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	testutil.WriteTree(t, dir, map[string]string{
		"manifest.yaml":              minimalManifest + "include: more.yaml\nhostname: node1\n",
		"more.yaml":                  "packages: [vim]\nusers:\n  - name: alice\n    groups: [adm]\n",
		"postprocess/10-hostname.sh": "#!/bin/sh\n",
	})
	man, more := filepath.Join(dir, "manifest.yaml"), filepath.Join(dir, "more.yaml")
	r := cosa(t, "config", "show", dir).wantOK(t)
	for _, want := range []string{
		"\nname: demo  # " + man + ":1\n",
		"\n  - vim  # " + more + ":1\n",
		"\n  - systemd  # " + man + ":6\n",
		"\nhostname: node1  # " + man + ":10\n",
		"\n      - adm  # " + more + ":4\n",
		"\n  variant: minbase  # default\n",
		"\nsize: 10  # default\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}

	r = cosa(t, "config", "show", "--json", dir).wantOK(t)
	var ev struct {
		Event  string           `json:"event"`
		Result configShowResult `json:"result"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ev); err != nil || ev.Event != "result" {
		t.Fatalf("--json: %v, %q", err, r.stdout)
	}
	found := 0
	for _, s := range ev.Result.Manifest {
		switch s.Key {
		case "packages[0]":
			if s.Value != "vim" || s.File != more || s.Line != 1 || s.Default {
				t.Errorf("packages[0] = %+v", s)
			}
			found++
		case "distro.variant":
			if s.Value != "minbase" || !s.Default || s.Line != 0 {
				t.Errorf("distro.variant = %+v", s)
			}
			found++
		}
	}
	if found != 2 || len(ev.Result.Image) == 0 {
		t.Errorf("--json result lacks settings: %+v", ev.Result)
	}
}
