package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/extend"
	"github.com/cosa-build/cosa/pkg/images"
	"github.com/cosa-build/cosa/pkg/platform"
)

// Every platform of the table is a buildextend command whose help names
// its format, with the table's aliases, and only the table's platforms
// are: the command list cannot drift from the table.
func TestBuildextendCommandsFollowTheTable(t *testing.T) {
	root := newRootCmd(&globals{Stdout: io.Discard, Stderr: io.Discard})
	var have []string
	for _, c := range root.Commands() {
		if name, ok := strings.CutPrefix(c.Name(), "buildextend-"); ok {
			have = append(have, name)
		}
	}
	if !slices.Equal(have, sortedCopy(platform.Names())) {
		t.Errorf("buildextend commands %v, table %v", have, platform.Names())
	}
	for _, p := range platform.All() {
		c, _, err := root.Find([]string{"buildextend-" + p.Name})
		if err != nil || c.Name() != "buildextend-"+p.Name {
			t.Errorf("%s: no command (%v)", p, err)
			continue
		}
		if !strings.Contains(c.Short, p.Format) {
			t.Errorf("%s: help %q does not name the format %q", p, c.Short, p.Format)
		}
		if !slices.Equal(c.Aliases, p.Aliases) {
			t.Errorf("%s: aliases %v, table %v", p, c.Aliases, p.Aliases)
		}
		if up := c.Flags().Lookup("upload") != nil; up != (p.Upload != "") {
			t.Errorf("%s: --upload flag %v, table upload %q", p, up, p.Upload)
		}
	}
	// The platforms code names are in the table.
	for _, name := range []string{platform.Qemu, platform.Metal, platform.AWS} {
		if _, ok := platform.Lookup(name); !ok {
			t.Errorf("platform %s is named in code but not in the table", name)
		}
	}
}

// cobra lists subcommands sorted by name.
func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// A new platform is a table entry plus a stage file
// (fakeplatform_stage_test.go): with nothing else changed, image.yaml
// accepts an override for it, pkg/images makes and runs its pipelines,
// pkg/extend names its artifact, and the CLI has buildextend-fake, which
// finds the image a build already has.
func TestFakePlatformReachesEveryConsumer(t *testing.T) {
	fake := platform.Platform{Name: "fake", Format: "fake test format", Extension: "fake", Pipeline: "fake-format", SectorSize: 512}
	defer platform.Add(fake)()

	// Config validation.
	wd := initWorkdir(t)
	cfgDir := filepath.Join(wd, "src", "config")
	f, err := os.OpenFile(filepath.Join(cfgDir, "image.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("platforms:\n  fake:\n    size: 3\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cfg, err := config.Load(cfgDir)
	if err != nil {
		t.Fatalf("config with platforms.fake: %v", err)
	}
	if got := cfg.Image.ForPlatform("fake").Size; got != 3 {
		t.Errorf("platforms.fake.size = %d, want 3", got)
	}

	// The pipeline manifest: the shared tree and disk, then the stage file's pipeline.
	spec := images.ImageSpec{Commit: strings.Repeat("c", 64), Ref: "os/x", OSName: "os", SizeGiB: 3}
	m, export, file, err := spec.Manifest(fake)
	if err != nil {
		t.Fatal(err)
	}
	if export != "fake" || file != "disk.fake" || m.Pipeline("tree") == nil || m.Pipeline("image") == nil {
		t.Fatalf("manifest exports %s/%s, pipelines %v", export, file, m.Pipelines)
	}
	// Its stage runs in the engine, on a 1 GiB sparse disk standing in
	// for the image pipeline.
	small := &images.Manifest{Version: images.ManifestVersion, Pipelines: []images.Pipeline{
		{Name: "image", Stages: []images.Stage{{Type: "org.cosa.truncate", Options: []byte(`{"filename":"disk.raw","size":1073741824}`)}}},
		*m.Pipeline("fake"),
	}}
	if err := small.Validate(); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	en := &images.Engine{Store: &images.Store{Dir: filepath.Join(tmp, "objects")}, Scratch: filepath.Join(tmp, "scratch"),
		Log: io.Discard}
	res, err := en.Run(context.Background(), small, []string{"fake"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(filepath.Join(res.Exports["fake"], "disk.fake"))
	res.Close()
	if err != nil || string(out) != "fake image of a 1073741824-byte disk\n" {
		t.Fatalf("disk.fake = %q, %v", out, err)
	}

	// extend's artifact name.
	id := "1.20261122.dev.0"
	art := extend.ArtifactName("debian-ostree", id, fake, arch)
	if want := "debian-ostree-" + id + "-fake." + arch + ".fake"; art != want {
		t.Errorf("artifact %s, want %s", art, want)
	}

	// The CLI: buildextend-fake exists and, on a build that has its image,
	// reads the config, the build and meta.json and keeps the image.
	needTool(t, "ostree")
	d := makeBuilds(t, wd, nil, fakeBuild{id: id, onDisk: true, day: 22})
	if err := d.UpdateMeta(context.Background(), id, arch, func(m *build.Meta) error {
		m.Images["fake"] = build.Artifact{Path: art, Sha256: hexOf("fake"), Size: 4}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.BuildDir(id, arch), art), []byte("fake"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := cosa(t, "-C", wd, "buildextend-fake", "--build", id).wantCode(t, 0)
	if !strings.Contains(r.stdout, art) {
		t.Errorf("buildextend-fake did not find %s:\n%s", art, r.stdout)
	}
	r = cosa(t, "-C", wd, "--json", "buildextend-fake", "--build", id).wantCode(t, 0)
	if res := resultOf(t, "buildextend-fake", r.stdout); res["changed"] != false || res["platform"] != "fake" ||
		res["artifacts"].([]any)[0].(map[string]any)["path"] != "builds/"+id+"/"+arch+"/"+art {
		t.Errorf("buildextend-fake --json result %v", res)
	}
	if h := cosa(t, "buildextend-fake", "--help").wantOK(t); !strings.Contains(h.stdout, "Add the fake disk image (fake test format) to a build") {
		t.Errorf("buildextend-fake --help:\n%s", h.stdout)
	}
}
