package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/build"
)

// complete runs cobra's hidden __complete command in-process, as the shell
// scripts do, and returns the offered values (descriptions dropped) and
// the directive line.
func complete(t *testing.T, args ...string) ([]string, string) {
	t.Helper()
	r := cosa(t, append([]string{"__complete"}, args...)...).wantCode(t, 0)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	var vals []string
	for _, l := range lines[:len(lines)-1] {
		v, _, _ := strings.Cut(l, "\t")
		vals = append(vals, v)
	}
	return vals, lines[len(lines)-1]
}

func TestCompletionLiveValues(t *testing.T) {
	wd := initWorkdir(t)
	id1, id2 := "12.20261121.dev.1", "12.20261122.dev.1"
	d := makeBuilds(t, wd, map[string]string{"stable": id1},
		fakeBuild{id: id1, onDisk: true, day: 21}, fakeBuild{id: id2, onDisk: true, day: 22})
	// The newest build gets a qemu image too.
	m, err := d.ReadMeta(id2, arch)
	if err != nil {
		t.Fatal(err)
	}
	m.Images["qemu"] = build.Artifact{Path: "x.qcow2", Sha256: hexOf("q"), Size: 1}
	if err := d.WriteMeta(id2, arch, m); err != nil {
		t.Fatal(err)
	}

	// -C is honoured wherever it is on the line.
	for _, args := range [][]string{
		{"-C", wd, "compress", "--build", ""},
		{"test", "-C", wd, "--build", ""},
		{"buildupload", "-C", wd, "s3", "--build", ""},
		{"--workdir", wd, "test", "--upgrade-from", ""},
	} {
		vals, dir := complete(t, args...)
		if want := []string{"latest", id2, id1, "stable"}; !slices.Equal(vals, want) {
			t.Errorf("%q: completions %q, want %q", args, vals, want)
		}
		if dir != ":4" { // ShellCompDirectiveNoFileComp
			t.Errorf("%q: directive %s, want :4 (no files)", args, dir)
		}
	}
	// tag update points a tag at a build id: no tags offered.
	if vals, _ := complete(t, "-C", wd, "tag", "update", "--build", ""); slices.Contains(vals, "stable") || !slices.Contains(vals, id1) {
		t.Errorf("tag update --build: %q", vals)
	}
	// Another workdir, other builds.
	if vals, _ := complete(t, "-C", initWorkdir(t), "compress", "--build", ""); !slices.Equal(vals, []string{"latest"}) {
		t.Errorf("empty workdir: %q", vals)
	}

	// Artifacts come from the chosen build's meta.json: latest has qemu,
	// the older one only ostree (a tag names it as well as its id).
	if vals, _ := complete(t, "-C", wd, "decompress", "--artifact", ""); !slices.Equal(vals, []string{"ostree", "qemu"}) {
		t.Errorf("latest build's artifacts: %q", vals)
	}
	for _, b := range []string{id1, "stable"} {
		if vals, _ := complete(t, "-C", wd, "compress", "--build", b, "--artifact", ""); !slices.Equal(vals, []string{"ostree"}) {
			t.Errorf("--build %s artifacts: %q", b, vals)
		}
	}
	// No build to read: every name a build can have.
	vals, _ := complete(t, "-C", t.TempDir(), "buildupload", "--artifact", "")
	if !slices.Contains(vals, "ostree") || !slices.Contains(vals, "metal4k") || !slices.Contains(vals, "aws") {
		t.Errorf("fallback artifacts: %q", vals)
	}
	if vals, _ := complete(t, "buildfetch", "--artifact", ""); !slices.Contains(vals, "all") || !slices.Contains(vals, "qemu") {
		t.Errorf("buildfetch --artifact: %q", vals)
	}

	if vals, _ := complete(t, "compress", "--compressor", ""); !slices.Equal(vals, []string{"gzip", "xz", "zstd"}) {
		t.Errorf("--compressor: %q", vals)
	}
	if vals, _ := complete(t, "run", "--platform", ""); !slices.Equal(vals, []string{"qemu", "metal"}) {
		t.Errorf("--platform: %q", vals)
	}
	// What completion offers works: a tag names its build.
	cosa(t, "-C", wd, "meta", "--get", "buildid", "--build", "stable").wantOK(t).wantStdout(t, id1+"\n")
	cosa(t, "-C", wd, "meta", "--get", "buildid", "--build", "nosuch").wantCode(t, 1)
	if vals, _ := complete(t, "buildupload", "s3", "--acl", ""); !slices.Contains(vals, "public-read") {
		t.Errorf("--acl: %q", vals)
	}
	// Subcommands and flags complete as usual.
	if vals, _ := complete(t, "buildext"); !slices.Contains(vals, "buildextend-qemu") {
		t.Errorf("commands: %q", vals)
	}
}

func TestCompletionScript(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		r := cosa(t, "completion", sh).wantOK(t)
		if !strings.Contains(r.stdout, "__complete") {
			t.Errorf("%s script does not call __complete:\n%.300s", sh, r.stdout)
		}
	}
}
