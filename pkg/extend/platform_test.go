package extend

import (
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/platform"
)

// Every platform's artifact is named <name>-<id>-<platform>.<arch>.<ext>
// with the table's extension, and no two platforms share a name.
func TestArtifactNameEveryPlatform(t *testing.T) {
	seen := map[string]string{}
	for _, p := range platform.All() {
		got := ArtifactName("os", "1.2", p, "x86_64")
		if want := "os-1.2-" + p.Name + ".x86_64." + p.Extension; got != want {
			t.Errorf("%s: %s, want %s", p, got, want)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("%s and %s share the artifact name %s", p, other, got)
		}
		seen[got] = p.Name
		if strings.Count(got, "/") != 0 {
			t.Errorf("%s: %s is not a plain file name", p, got)
		}
	}
}
