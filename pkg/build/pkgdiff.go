package build

import (
	"encoding/json"
	"fmt"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// PkgDiffKind says how a package changed between two builds.
type PkgDiffKind int

// Values match the integers stored in meta.json.
const (
	PkgAdded      PkgDiffKind = 1
	PkgRemoved    PkgDiffKind = 2
	PkgUpgraded   PkgDiffKind = 3
	PkgDowngraded PkgDiffKind = 4
)

func (k PkgDiffKind) String() string {
	switch k {
	case PkgAdded:
		return "added"
	case PkgRemoved:
		return "removed"
	case PkgUpgraded:
		return "upgraded"
	case PkgDowngraded:
		return "downgraded"
	}
	return fmt.Sprintf("PkgDiffKind(%d)", int(k))
}

// PkgVersion is one side of a package change.
type PkgVersion struct {
	Version string `json:"version"`
}

// PkgDiffEntry is one element of meta.json "pkgdiff". On disk it is a
// 3-element array, [name, kind, {"previous": {...}, "new": {...}}], because
// that is the shape coreos-assembler's readers index into. Previous is nil
// for an added package and New for a removed one.
type PkgDiffEntry struct {
	Name     string
	Kind     PkgDiffKind
	Previous *PkgVersion
	New      *PkgVersion
	// Extra keeps other keys of the details object (e.g. from
	// coreos-assembler's richer form) so they survive a rewrite.
	Extra map[string]json.RawMessage
}

// MarshalJSON writes the array form.
func (e PkgDiffEntry) MarshalJSON() ([]byte, error) {
	details := map[string]any{}
	for k, v := range e.Extra {
		details[k] = v
	}
	if e.Previous != nil {
		details["previous"] = e.Previous
	}
	if e.New != nil {
		details["new"] = e.New
	}
	return fileutil.MarshalNoEscape([]any{e.Name, int(e.Kind), details})
}

// UnmarshalJSON reads the array form; the details object may be absent.
func (e *PkgDiffEntry) UnmarshalJSON(data []byte) error {
	var parts []json.RawMessage
	if err := json.Unmarshal(data, &parts); err != nil {
		return fmt.Errorf("pkgdiff entry: %w", err)
	}
	if len(parts) < 2 || len(parts) > 3 {
		return fmt.Errorf("pkgdiff entry: want [name, kind, details], got %d elements", len(parts))
	}
	var out PkgDiffEntry
	if err := json.Unmarshal(parts[0], &out.Name); err != nil {
		return fmt.Errorf("pkgdiff entry name: %w", err)
	}
	if err := json.Unmarshal(parts[1], &out.Kind); err != nil {
		return fmt.Errorf("pkgdiff entry %q kind: %w", out.Name, err)
	}
	if len(parts) == 3 {
		var details map[string]json.RawMessage
		if err := json.Unmarshal(parts[2], &details); err != nil {
			return fmt.Errorf("pkgdiff entry %q details: %w", out.Name, err)
		}
		for key, dst := range map[string]**PkgVersion{"previous": &out.Previous, "new": &out.New} {
			raw, ok := details[key]
			if !ok {
				continue
			}
			if err := json.Unmarshal(raw, dst); err != nil {
				return fmt.Errorf("pkgdiff entry %q %s: %w", out.Name, key, err)
			}
			delete(details, key)
		}
		if len(details) > 0 {
			out.Extra = details
		}
	}
	*e = out
	return nil
}
