package assemble

import (
	"encoding/json"
	"os"
	"sort"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compose"
)

// PkgListFile is the package list written into every build's arch dir.
const PkgListFile = "pkglist.json"

func readPkgList(path string) ([]compose.Package, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pkgs []compose.Package
	return pkgs, json.Unmarshal(data, &pkgs)
}

// PkgDiff compares two package lists; entries sorted by name.
func PkgDiff(prev, cur []compose.Package) []build.PkgDiffEntry {
	old := map[string]string{}
	for _, p := range prev {
		old[p.Name] = p.Version
	}
	now := map[string]string{}
	for _, p := range cur {
		now[p.Name] = p.Version
	}
	var out []build.PkgDiffEntry
	for name, v := range now {
		pv, ok := old[name]
		switch {
		case !ok:
			out = append(out, build.PkgDiffEntry{Name: name, Kind: build.PkgAdded, New: &build.PkgVersion{Version: v}})
		case pv != v:
			kind := build.PkgUpgraded
			if compareDebVersions(v, pv) < 0 {
				kind = build.PkgDowngraded
			}
			out = append(out, build.PkgDiffEntry{Name: name, Kind: kind,
				Previous: &build.PkgVersion{Version: pv}, New: &build.PkgVersion{Version: v}})
		}
	}
	for name, v := range old {
		if _, ok := now[name]; !ok {
			out = append(out, build.PkgDiffEntry{Name: name, Kind: build.PkgRemoved, Previous: &build.PkgVersion{Version: v}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
