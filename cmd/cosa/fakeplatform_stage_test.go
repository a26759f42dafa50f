package main

// The stage file of the fake platform used by TestFakePlatformReachesEveryConsumer:
// what a new platform adds next to its table entry when no existing
// pipeline builder makes its format. Nothing else in cosa names "fake".

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cosa-build/cosa/pkg/images"
	"github.com/cosa-build/cosa/pkg/platform"
)

// fakeFormat writes a small file describing the raw disk of its image
// input: a format cheap enough to make in a unit test.
type fakeFormat struct {
	Source   string `json:"source"`
	Filename string `json:"filename"`
}

func (s *fakeFormat) Validate() error {
	for _, f := range []string{s.Source, s.Filename} {
		if f == "" || filepath.Base(f) != f {
			return fmt.Errorf("%q is not a plain file name", f)
		}
	}
	return nil
}

func (s *fakeFormat) Inputs() []string { return []string{"image"} }

func (s *fakeFormat) Run(ctx context.Context, e *images.Env) error {
	st, err := os.Stat(filepath.Join(e.Inputs["image"], s.Source))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(e.Tree, s.Filename), []byte(fmt.Sprintf("fake image of a %d-byte disk\n", st.Size())), 0o644)
}

func init() {
	images.RegisterStage("org.cosa.test.fake-format", func() images.StageImpl { return &fakeFormat{} })
	images.RegisterPipeline("fake-format", func(m *images.Manifest, p platform.Platform, disk images.Disk, spec images.ImageSpec) (string, string) {
		m.Pipelines = append(m.Pipelines, images.Pipeline{Name: p.Name, Stages: []images.Stage{{
			Type:    "org.cosa.test.fake-format",
			Inputs:  map[string]string{"image": "name:" + disk.Pipeline},
			Options: []byte(fmt.Sprintf(`{"source":%q,"filename":"disk.fake"}`, disk.File)),
		}}})
		return p.Name, "disk.fake"
	})
}
