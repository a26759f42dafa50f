package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/assemble"
	"github.com/cosa-build/cosa/pkg/images"
	"github.com/cosa-build/cosa/pkg/workdir"
)

// TestJSONContract runs every command that needs no real OS build with
// --json, on a fake build, and holds each run to docs/events.md: stdout is
// only event lines that pass pkg/events/schema.json, ending with the
// command's result event (resultOf), and the result says what was made.
func TestJSONContract(t *testing.T) {
	endpoint := fakeS3(t)

	// init
	fresh := filepath.Join(t.TempDir(), "fresh")
	r := cosa(t, "--json", "init", "-C", fresh).wantCode(t, 0)
	res := resultOf(t, "init", r.stdout)
	if res["workdir"] != fresh || res["source"] != "" {
		t.Errorf("init result %v", res)
	}

	wd, d, orig := compressWorkdir(t)
	id := orig.BuildID
	run := func(command string, args ...string) map[string]any {
		t.Helper()
		r := cosa(t, append([]string{"-C", wd, "--json"}, args...)...).wantCode(t, 0)
		return resultOf(t, command, r.stdout)
	}

	// list, meta, tag
	res = run("list", "list")
	if b := res["builds"].([]any); len(b) != 1 || b[0].(map[string]any)["id"] != id {
		t.Errorf("list result %v", res)
	}
	res = run("meta", "meta", "--get", "buildid", "--get", "images.qemu.size")
	if v := res["values"].(map[string]any); v["buildid"] != id || v["images.qemu.size"] != float64(orig.Images["qemu"].Size) || res["build"] != id {
		t.Errorf("meta --get result %v", res)
	}
	res = run("meta", "meta", "--set", "coreos-assembler.config-dirty=true")
	if v := res["set"].(map[string]any); v["coreos-assembler.config-dirty"] != "true" {
		t.Errorf("meta --set result %v", res)
	}
	res = run("meta", "meta", "--dump")
	if m := res["meta"].(map[string]any); m["buildid"] != id || m["coreos-assembler.config-dirty"] != "true" {
		t.Errorf("meta --dump result %v", res)
	}
	res = run("tag update", "tag", "update", "--tag", "stable", "--description", "good")
	if res["tag"] != "stable" || res["build"] != id || res["description"] != "good" {
		t.Errorf("tag update result %v", res)
	}
	res = run("tag list", "tag", "list")
	if tags := res["tags"].([]any); len(tags) != 1 || tags[0].(map[string]any)["target"] != id {
		t.Errorf("tag list result %v", res)
	}
	run("tag delete", "tag", "delete", "--tag", "stable")
	if res = run("tag list", "tag", "list"); len(res["tags"].([]any)) != 0 {
		t.Errorf("tag list after delete %v", res)
	}
	res = run("prune", "prune", "--keep-last-n", "1", "--dry-run")
	if res["dry_run"] != true || len(res["pruned"].([]any)) != 0 || !slices.Equal(toStrings(res["kept"]), []string{id}) {
		t.Errorf("prune result %v", res)
	}

	// compress and decompress: the result's paths, sizes and digests are
	// the files on disk.
	wantFiles := func(what string, res map[string]any, action string) {
		t.Helper()
		arts := res["artifacts"].([]any)
		if res["build"] != id || res["arch"] != arch || len(arts) != 3 {
			t.Fatalf("%s result %v", what, res)
		}
		acted := 0
		for _, a := range arts {
			a := a.(map[string]any)
			sum, size := fileDigest(t, filepath.Join(wd, a["path"].(string)))
			if a["sha256"] != sum || a["size"] != float64(size) {
				t.Errorf("%s: %v, but the file has sha256 %s size %d", what, a, sum, size)
			}
			if a["action"] == action {
				acted++
			}
		}
		if acted != 2 { // metal and qemu; ostree is skipped
			t.Errorf("%s: %d artifacts %s, want 2: %v", what, acted, action, res)
		}
	}
	wantFiles("compress", run("compress", "compress", "--compressor", "gzip", "--fast"), "compressed")
	wantFiles("decompress", run("decompress", "decompress"), "decompressed")
	if m := readLatestMeta(t, d); m.Images["qemu"] != orig.Images["qemu"] {
		t.Errorf("qemu after compress + decompress: %+v", m.Images["qemu"])
	}

	// buildupload and buildfetch against an in-process S3.
	res = run("buildupload s3", "buildupload", "s3", "--endpoint-url", endpoint, "bkt/json")
	objs := toStrings(res["objects"])
	if res["destination"] != "s3://bkt/json" || res["uploaded"] != float64(len(objs)) || len(objs) < 4 ||
		!slices.Contains(objs, "s3://bkt/json/"+id+"/"+arch+"/meta.json") || res["builds_json_written"] != true {
		t.Errorf("buildupload result %v", res)
	}
	other := initWorkdir(t)
	r = cosa(t, "-C", other, "--json", "buildfetch", "--url", "s3://bkt/json", "--endpoint-url", endpoint, "--artifact", "qemu").wantCode(t, 0)
	res = resultOf(t, "buildfetch", r.stdout)
	if res["build"] != id || res["arch"] != arch || res["fetched"] != float64(len(toStrings(res["objects"]))) || !slices.Contains(toStrings(res["objects"]), "s3://bkt/json/"+id+"/"+arch+"/meta.json") {
		t.Errorf("buildfetch result %v", res)
	}
	if sum, _ := fileDigest(t, filepath.Join(other, "builds", id, arch, orig.Images["qemu"].Path)); sum != orig.Images["qemu"].Sha256 {
		t.Error("buildfetch did not fetch the qemu image")
	}

	// pipeline run, with a one-stage manifest.
	opts, _ := json.Marshal(images.Truncate{Filename: "d.raw", Size: 1 << 30}) // sparse
	man, _ := json.Marshal(images.Manifest{Version: images.ManifestVersion, Pipelines: []images.Pipeline{
		{Name: "disk", Stages: []images.Stage{{Type: "org.cosa.truncate", Options: opts}}}}})
	manPath := filepath.Join(t.TempDir(), "m.json")
	os.WriteFile(manPath, man, 0o644)
	out := filepath.Join(t.TempDir(), "out")
	r = cosa(t, "-C", wd, "--json", "pipeline", "run", manPath, "--output", out).wantCode(t, 0)
	res = resultOf(t, "pipeline run", r.stdout)
	if res["stages_run"] != float64(1) || res["exports"].(map[string]any)["disk"] != filepath.Join(out, "disk") {
		t.Errorf("pipeline run result %v", res)
	}
	if evs := jsonEvents(t, r.stdout); evs[0]["event"] != "pipeline-start" {
		t.Errorf("pipeline run events %v", evs)
	}

	// clean
	res = run("clean", "clean", "--keep-packages")
	if res["workdir"] != wd || res["kept_packages"] != true || len(res["emptied"].([]any)) == 0 {
		t.Errorf("clean result %v", res)
	}

	// Failures end with an error event, with the exit code.
	for _, c := range []struct {
		args    []string
		command string
		code    int
	}{
		{[]string{"meta", "--get", "buildid", "--build", "42.20261122.dev.9"}, "meta", exitFailure},
		{[]string{"list", "--bogus"}, "list", exitBadInput},
		{[]string{"buildupload", "s3"}, "buildupload s3", exitBadInput},
		{[]string{"compress", "--artifact", "nope"}, "compress", exitBadInput},
	} {
		r := cosa(t, append([]string{"-C", wd, "--json"}, c.args...)...).wantCode(t, c.code)
		evs := jsonEvents(t, r.stdout)
		last := evs[len(evs)-1]
		if last["event"] != "error" || last["command"] != c.command || last["exit_code"] != float64(c.code) ||
			!strings.Contains(r.stderr, last["error"].(string)) {
			t.Errorf("cosa %s: last event %v, stderr %q", strings.Join(c.args, " "), last, r.stderr)
		}
	}
}

// Without --json the summaries stay text on stdout.
func TestTextModeSummaries(t *testing.T) {
	wd, _, orig := compressWorkdir(t)
	cosa(t, "-C", wd, "tag", "list").wantOK(t).wantStdout(t, "No tags.\n")
	r := cosa(t, "-C", wd, "prune", "--dry-run").wantOK(t)
	if !strings.HasPrefix(r.stdout, "Nothing to prune; keeping "+orig.BuildID) {
		t.Errorf("prune stdout %q", r.stdout)
	}
	r = cosa(t, "-C", wd, "clean").wantOK(t)
	if !strings.HasPrefix(r.stdout, "Emptied ") {
		t.Errorf("clean stdout %q", r.stdout)
	}
}

func toStrings(v any) []string {
	var s []string
	for _, x := range v.([]any) {
		s = append(s, x.(string))
	}
	return s
}

func fileDigest(t *testing.T, path string) (string, int64) {
	t.Helper()
	return testutil.FileSHA256(t, path)
}

// build's result (a real build needs the OS tools; tests/ runs one) is
// the build's meta.json: every artifact with its workdir-relative path,
// for a new build and for an unchanged one alike.
func TestBuildResult(t *testing.T) {
	wd, _, orig := compressWorkdir(t)
	w, err := workdir.Open(wd)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range []*assemble.Result{
		{BuildID: orig.BuildID, Commit: orig.OSTreeCommit, Pruned: []string{"1.20261101.dev.0"}},
		{BuildID: orig.BuildID, Commit: orig.OSTreeCommit, Unchanged: true},
	} {
		var out, errb bytes.Buffer
		g := &globals{Stdout: &out, Stderr: &errb, JSON: true}
		if err := buildResult(g, w, res, arch); err != nil {
			t.Fatal(err)
		}
		p := resultOf(t, "build", out.String())
		if p["build"] != orig.BuildID || p["changed"] != !res.Unchanged || p["commit"] != orig.OSTreeCommit ||
			len(p["artifacts"].([]any)) != len(orig.Images) || (len(res.Pruned) > 0) != (p["pruned"] != nil) {
			t.Errorf("build result %v", p)
		}
		for _, a := range p["artifacts"].([]any) {
			a := a.(map[string]any)
			if sum, size := fileDigest(t, filepath.Join(wd, a["path"].(string))); a["sha256"] != sum || a["size"] != float64(size) {
				t.Errorf("%v: the file has %s, %d bytes", a, sum, size)
			}
		}
	}
}

// TestJSONContractConfig: cosa config show and validate follow the same
// contract, and a bad config ends with an error event (exit 2).
func TestJSONContractConfig(t *testing.T) {
	wd := filepath.Join(t.TempDir(), "w")
	cosa(t, "init", "-C", wd).wantCode(t, 0)

	r := cosa(t, "-C", wd, "--json", "config", "validate").wantCode(t, 0)
	if res := resultOf(t, "config validate", r.stdout); res["ok"] != true {
		t.Errorf("config validate result %v", res)
	}
	r = cosa(t, "-C", wd, "--json", "config", "show").wantCode(t, 0)
	if res := resultOf(t, "config show", r.stdout); len(res) == 0 {
		t.Errorf("config show result is empty")
	}

	manifest := filepath.Join(wd, "src", "config", "manifest.yaml")
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, append(data, []byte("no-such-key: 1\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	r = cosa(t, "-C", wd, "--json", "config", "validate").wantCode(t, 2)
	evs := jsonEvents(t, r.stdout)
	if last := evs[len(evs)-1]; last["event"] != "error" || last["exit_code"] != float64(2) ||
		!strings.Contains(last["error"].(string), "no-such-key") {
		t.Errorf("bad config: last event %v", last)
	}
}
