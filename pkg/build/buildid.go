package build

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// buildIDPattern bounds ids to characters that are safe as a single path
// component, in an ostree ref and in a URL, and that cannot start with "."
// (which keeps ids apart from builds/.lock and builds/.deleted-*).
var buildIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// ValidBuildID reports why id cannot name a build, or nil if it can. Ids
// come from NextBuildID or from a user's --version, and end up as directory
// names under builds/, so anything that could escape that directory or clash
// with the "latest" symlink is refused.
func ValidBuildID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("invalid build id %q: must not be empty", id)
	case len(id) > 128:
		return fmt.Errorf("invalid build id %q: longer than 128 characters", id)
	case !buildIDPattern.MatchString(id):
		return fmt.Errorf("invalid build id %q: must match [A-Za-z0-9][A-Za-z0-9._+-]*", id)
	case strings.Contains(id, ".."):
		return fmt.Errorf("invalid build id %q: must not contain \"..\"", id)
	case id == LatestLink:
		return fmt.Errorf("invalid build id %q: reserved for the latest symlink", id)
	}
	return nil
}

// NextBuildID returns the id for a new build made at now:
// <prefix>.<YYYYMMDD>.<stream>.<n>, where n is one more than the largest n
// already used with the same prefix, UTC date and stream, or 0 for the first
// build of the day. An empty prefix or stream is left out rather than
// producing an id with "..".
func NextBuildID(prefix, stream string, now time.Time, existing []string) string {
	var parts []string
	for _, p := range []string{prefix, now.UTC().Format("20060102"), stream} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	base := strings.Join(parts, ".") + "."
	next := 0
	for _, id := range existing {
		rest, ok := strings.CutPrefix(id, base)
		if !ok || !allDigits(rest) {
			continue
		}
		// Compare numerically: "10" must beat "9".
		n, err := strconv.Atoi(rest)
		if err == nil && n >= next {
			next = n + 1
		}
	}
	return base + strconv.Itoa(next)
}

// CompareBuildIDs orders ids like "12.20261122.dev.10" the way a person
// would: dot-separated parts compare numerically when both are numbers and
// lexically when neither is, a number sorts before a word, and a shorter id
// sorts first when it is a prefix of a longer one. It returns -1, 0 or +1.
// Semver libraries reject these 4-part ids, hence our own.
//
// The order must be transitive, because builds.json merges sort by it: when
// a number met a word lexically, "9" < "10" < "10x" < "9" was a cycle.
func CompareBuildIDs(a, b string) int {
	// Walk the parts without strings.Split: a merge of a large builds.json
	// calls this n log n times and must not allocate each time.
	for {
		pa, resta, moreA := strings.Cut(a, ".")
		pb, restb, moreB := strings.Cut(b, ".")
		if c := comparePart(pa, pb); c != 0 {
			return c
		}
		switch {
		case !moreA && !moreB:
			return 0
		case !moreA:
			return -1
		case !moreB:
			return 1
		}
		a, b = resta, restb
	}
}

func comparePart(x, y string) int {
	dx, dy := allDigits(x), allDigits(y)
	switch {
	case dx && dy:
		// Compare digit strings without parsing so that arbitrarily long
		// numbers work: strip leading zeros, then longer is larger.
		x, y = strings.TrimLeft(x, "0"), strings.TrimLeft(y, "0")
		if len(x) != len(y) {
			if len(x) < len(y) {
				return -1
			}
			return 1
		}
	case dx:
		return -1
	case dy:
		return 1
	}
	return strings.Compare(x, y)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
