package weldr

import (
	"strconv"
	"strings"
)

// debVersion is a Debian version split into its parts.
type debVersion struct {
	Epoch    int
	Upstream string
	Revision string
}

// parseDebVersion splits [epoch:]upstream[-revision]; a malformed epoch is
// kept as part of the upstream string rather than failing an index.
func parseDebVersion(s string) debVersion {
	var v debVersion
	if i := strings.IndexByte(s, ':'); i > 0 {
		if e, err := strconv.Atoi(s[:i]); err == nil && e >= 0 {
			v.Epoch = e
			s = s[i+1:]
		}
	}
	if i := strings.LastIndexByte(s, '-'); i >= 0 {
		v.Upstream, v.Revision = s[:i], s[i+1:]
	} else {
		v.Upstream = s
	}
	return v
}

func (v debVersion) String() string {
	s := v.Upstream
	if v.Revision != "" {
		s += "-" + v.Revision
	}
	if v.Epoch != 0 {
		s = strconv.Itoa(v.Epoch) + ":" + s
	}
	return s
}

// compareDebVersions orders two Debian versions the way dpkg does.
func compareDebVersions(a, b string) int {
	va, vb := parseDebVersion(a), parseDebVersion(b)
	if va.Epoch != vb.Epoch {
		if va.Epoch < vb.Epoch {
			return -1
		}
		return 1
	}
	if c := compareFragment(va.Upstream, vb.Upstream); c != 0 {
		return c
	}
	return compareFragment(va.Revision, vb.Revision)
}

// order is dpkg's weight of a non-digit character: '~' before everything,
// even the end of the string, letters before other characters.
func order(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return 0
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return int(c)
	case c == '~':
		return -1
	case c == 0:
		return 0
	}
	return int(c) + 256
}

func compareFragment(a, b string) int {
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	at := func(s string, i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		// Non-digit prefix, character by character.
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ca, cb := at(a, i), at(b, j)
			if isDigit(ca) {
				ca = 0
			}
			if isDigit(cb) {
				cb = 0
			}
			if oa, ob := order(ca), order(cb); oa != ob {
				if oa < ob {
					return -1
				}
				return 1
			}
			if ca != 0 {
				i++
			}
			if cb != 0 {
				j++
			}
		}
		// Numeric part, compared as a number.
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		si, sj := i, j
		for i < len(a) && isDigit(a[i]) {
			i++
		}
		for j < len(b) && isDigit(b[j]) {
			j++
		}
		na, nb := a[si:i], b[sj:j]
		if len(na) != len(nb) {
			if len(na) < len(nb) {
				return -1
			}
			return 1
		}
		if c := strings.Compare(na, nb); c != 0 {
			return c
		}
	}
	return 0
}

// satisfies reports whether version v meets the relation op ref
// (<<, <=, =, >=, >>; the old < and > mean <= and >=).
func satisfies(v, op, ref string) bool {
	if op == "" {
		return true
	}
	c := compareDebVersions(v, ref)
	switch op {
	case "<<":
		return c < 0
	case "<=", "<":
		return c <= 0
	case "=":
		return c == 0
	case ">=", ">":
		return c >= 0
	case ">>":
		return c > 0
	}
	return false
}
