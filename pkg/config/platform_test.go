package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/platform"
)

// image.yaml accepts an override for every platform of the table and
// lists exactly the table's names when refusing one: there is no second
// list to drift from it.
func TestEveryPlatformAccepted(t *testing.T) {
	var y strings.Builder
	y.WriteString("platforms:\n")
	for i, name := range platform.Names() {
		fmt.Fprintf(&y, "  %s: {size: %d}\n", name, 2+i)
	}
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{"manifest.yaml": minimalManifest, "image.yaml": y.String()})
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range platform.Names() {
		if got := c.Image.ForPlatform(name).Size; got != 2+i {
			t.Errorf("%s: size %d, want %d", name, got, 2+i)
		}
	}

	testutil.WriteTree(t, dir, map[string]string{"image.yaml": "platforms:\n  nosuch: {}\n"})
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), "allowed: "+strings.Join(platform.Names(), ", ")+")") {
		t.Fatalf("err = %v, want the table's names", err)
	}
}
