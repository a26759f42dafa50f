package images

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/platform"
)

// Every platform of the table has a pipeline builder whose manifest
// validates and exports a disk.<extension> file, made from the disk its
// sector size calls for.
func TestEveryPlatformHasAManifest(t *testing.T) {
	spec := testSpec()
	for _, p := range platform.All() {
		if !HasPipeline(p.Pipeline) {
			t.Errorf("%s: no pipeline builder %q", p, p.Pipeline)
			continue
		}
		m, export, file, err := spec.Manifest(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if file != "disk."+p.Extension {
			t.Errorf("%s: exports %s, want disk.%s", p, file, p.Extension)
		}
		if m.Pipeline(export) == nil {
			t.Errorf("%s: export %q is not a pipeline", p, export)
		}
		disk := m.Pipeline(DiskPipeline(p))
		if disk == nil {
			t.Errorf("%s: no disk pipeline %s", p, DiskPipeline(p))
			continue
		}
		bios := false
		for _, st := range disk.Stages {
			if st.Type == "org.cosa.grub2.bios" {
				bios = true
			}
			if st.Type == "org.cosa.gpt" {
				var g GPT
				if err := json.Unmarshal(st.Options, &g); err != nil || g.SectorSize != p.SectorSize {
					t.Errorf("%s: gpt sector size %d (%v), table says %d", p, g.SectorSize, err, p.SectorSize)
				}
			}
		}
		if bios != p.BIOS() {
			t.Errorf("%s: BIOS boot stage %v, table says %v", p, bios, p.BIOS())
		}
	}
}

func TestManifestUnknownPipeline(t *testing.T) {
	p := platform.Must(platform.Qemu)
	p.Pipeline = "no-such-builder"
	if _, _, _, err := testSpec().Manifest(p); err == nil || !strings.Contains(err.Error(), `no pipeline builder "no-such-builder"`) {
		t.Fatalf("err = %v", err)
	}
}
