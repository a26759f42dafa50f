package platform

import (
	"slices"
	"strings"
	"testing"
)

func TestTableEntriesAreUsable(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range All() {
		if err := p.check(); err != nil {
			t.Error(err)
		}
		for _, n := range append([]string{"buildextend-" + p.Name}, p.Aliases...) {
			if seen[n] {
				t.Errorf("%s: command name %s used twice", p, n)
			}
			seen[n] = true
		}
	}
	for _, name := range []string{Qemu, Metal, AWS} {
		if _, ok := Lookup(name); !ok {
			t.Errorf("%s is named in code but not in the table", name)
		}
	}
}

func TestParse(t *testing.T) {
	p, err := Parse("metal4k")
	if err != nil || p.SectorSize != 4096 || p.BIOS() {
		t.Errorf("Parse(metal4k) = %+v, %v", p, err)
	}
	_, err = Parse("nosuch")
	if err == nil || !strings.Contains(err.Error(), `unknown platform "nosuch"`) || !strings.Contains(err.Error(), "qemu") {
		t.Errorf("Parse(nosuch) error = %v", err)
	}
}

func TestAddAndRemove(t *testing.T) {
	before := Names()
	remove := Add(Platform{Name: "extra", Format: "x", Extension: "x", Pipeline: "raw", SectorSize: 512})
	if got := Names(); !slices.Equal(got, append(slices.Clone(before), "extra")) {
		t.Errorf("after Add: %v", got)
	}
	remove()
	if got := Names(); !slices.Equal(got, before) {
		t.Errorf("after remove: %v, want %v", got, before)
	}
	for _, bad := range []Platform{
		{Name: "qemu", Format: "x", Extension: "x", Pipeline: "raw", SectorSize: 512}, // duplicate
		{Name: "Bad-Name", Format: "x", Extension: "x", Pipeline: "raw", SectorSize: 512},
		{Name: "odd", Format: "x", Extension: "x", Pipeline: "raw", SectorSize: 1024},
		{Name: "noext", Format: "x", Pipeline: "raw", SectorSize: 512},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Add(%+v) did not panic", bad)
				}
			}()
			Add(bad)()
		}()
	}
	if got := Names(); !slices.Equal(got, before) {
		t.Errorf("after bad Adds: %v", got)
	}
}

// All hands out copies: a caller changing its entries changes no one else's.
func TestAllIsACopy(t *testing.T) {
	a := All()
	a[0].Name = "changed"
	a[3].Aliases = append(a[3].Aliases[:0], "changed")
	if All()[0].Name == "changed" || slices.Contains(All()[3].Aliases, "changed") {
		t.Error("All shares the table")
	}
}
