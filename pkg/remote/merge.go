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
//
// It runs in O(n log n): it is called under the builds/ lock with a remote
// builds.json nobody here controls, and inserting one build at a time (the
// obvious way, kept as the reference in the tests) was quadratic.
func MergeIndex(dst *build.BuildsIndex, entries []build.BuildEntry, tags []build.Tag, tagsWin bool) bool {
	changed := false
	n := len(dst.Builds)
	// where maps an id to its index in dst.Builds, or n+k for added[k].
	where := make(map[string]int, n+len(entries))
	for i, b := range dst.Builds {
		if _, dup := where[b.ID]; !dup {
			where[b.ID] = i
		}
	}
	var added []build.BuildEntry
	for _, e := range entries {
		i, ok := where[e.ID]
		if !ok {
			where[e.ID] = n + len(added)
			added = append(added, build.BuildEntry{ID: e.ID, Arches: slices.Clone(e.Arches)})
			changed = true
			continue
		}
		var have *build.BuildEntry
		if i < n {
			have = &dst.Builds[i]
		} else {
			have = &added[i-n]
		}
		for _, a := range e.Arches {
			if !slices.Contains(have.Arches, a) {
				have.Arches = append(have.Arches, a)
				changed = true
			}
		}
	}
	if len(added) > 0 {
		dst.Builds = insertOrdered(dst.Builds, added)
	}

	tagAt := make(map[string]int, len(dst.Tags)+len(tags))
	for i, t := range dst.Tags {
		if _, dup := tagAt[t.Name]; !dup {
			tagAt[t.Name] = i
		}
	}
	for _, t := range tags {
		if _, ok := where[t.Target]; !ok {
			continue
		}
		i, ok := tagAt[t.Name]
		switch {
		case !ok:
			tagAt[t.Name] = len(dst.Tags)
			dst.Tags = append(dst.Tags, t)
			changed = true
		case tagsWin && dst.Tags[i] != t:
			dst.Tags[i] = t
			changed = true
		}
	}
	return changed
}

// insertOrdered places each of added (in that order; it reorders added) before the first
// build of the list at the time that is older, which is where inserting
// them one by one would put them, without doing it one by one.
//
// A build inserted that way ends up before the first build of the original
// list that is older than it, and its predecessors are never older than it;
// so among the added builds the newer comes first, equal ones keep their
// order, and the original list decides only which gap each one falls in.
// The first older build of a list is always one of its running minima
// (older than everything before it). Those get older along the list, and
// the sorted added builds do too, so one pass over both finds every gap.
func insertOrdered(list, added []build.BuildEntry) []build.BuildEntry {
	var minima []int
	for i, b := range list {
		if len(minima) == 0 || build.CompareBuildIDs(b.ID, list[minima[len(minima)-1]].ID) < 0 {
			minima = append(minima, i)
		}
	}
	newestFirst := func(x, y build.BuildEntry) int { return build.CompareBuildIDs(y.ID, x.ID) }
	// A remote builds.json is normally newest first already.
	if !slices.IsSortedFunc(added, newestFirst) {
		slices.SortStableFunc(added, newestFirst)
	}
	out := make([]build.BuildEntry, 0, len(list)+len(added))
	next, m := 0, 0
	for _, e := range added {
		for m < len(minima) && build.CompareBuildIDs(e.ID, list[minima[m]].ID) <= 0 {
			m++
		}
		gap := len(list)
		if m < len(minima) {
			gap = minima[m]
		}
		out = append(out, list[next:gap]...)
		next = gap
		out = append(out, e)
	}
	return append(out, list[next:]...)
}
