package remote

import (
	"slices"

	"github.com/cosa-build/cosa/pkg/build"
)

// MergeIndex adds entries and tags into dst and reports whether dst
// changed. dst's order is kept (it is the reader's idea of newest-first); a
// build dst lacks is inserted before the first build that CompareBuildIDs
// says is older, and a build it has gains the missing arches in place. A tag
// whose target is not in dst after the merge is dropped; for a tag name
// present on both sides, tagsWin decides whether the incoming one replaces
// dst's.
func MergeIndex(dst *build.BuildsIndex, entries []build.BuildEntry, tags []build.Tag, tagsWin bool) bool {
	changed := false
	for _, e := range entries {
		if have := dst.Find(e.ID); have != nil {
			for _, a := range e.Arches {
				if !slices.Contains(have.Arches, a) {
					have.Arches = append(have.Arches, a)
					changed = true
				}
			}
			continue
		}
		pos := len(dst.Builds)
		for i, b := range dst.Builds {
			if build.CompareBuildIDs(e.ID, b.ID) > 0 {
				pos = i
				break
			}
		}
		dst.Builds = slices.Insert(dst.Builds, pos, build.BuildEntry{ID: e.ID, Arches: slices.Clone(e.Arches)})
		changed = true
	}
	for _, t := range tags {
		if dst.Find(t.Target) == nil {
			continue
		}
		i := slices.IndexFunc(dst.Tags, func(x build.Tag) bool { return x.Name == t.Name })
		switch {
		case i < 0:
			dst.Tags = append(dst.Tags, t)
			changed = true
		case tagsWin && dst.Tags[i] != t:
			dst.Tags[i] = t
			changed = true
		}
	}
	return changed
}
