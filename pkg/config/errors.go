package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Error describes one problem with the configuration. It always names the
// file it was found in and, when known, the line and the dotted key path
// (with [i] for list indexes) of the offending value.
//
// Error() renders it as a single line, "FILE:LINE: KEY: MSG". The LINE part
// is left out when Line is 0 (the problem is not tied to a line, e.g. a
// missing file) and the KEY part is left out when Key is empty (e.g. a YAML
// syntax error).
type Error struct {
	File string // path of the file, as the caller spelled the config dir joined with the file name
	Line int    // 1-based line number; 0 if unknown or not applicable
	Key  string // dotted key path such as "distro.suite" or "postprocess[1]"; may be empty
	Msg  string // human readable description of the problem

	cause error // optional underlying error, reachable through Unwrap
}

// Error implements the error interface. The result never contains a newline.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": ")
		b.WriteString(clip(e.Key))
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return oneLine(b.String())
}

// Unwrap returns the underlying error, if any (for example an *fs.PathError).
func (e *Error) Unwrap() error { return e.cause }

// IsConfigError reports whether err is, or wraps, a *Error. Callers use it to
// tell a user mistake in the configuration (exit status 2) from other
// failures.
func IsConfigError(err error) bool {
	var ce *Error
	return errors.As(err, &ce)
}

func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// suggest returns the candidate closest to word, or "" when none is close
// enough to be a plausible typo.
func suggest(word string, candidates []string) string {
	best, bestDist := "", -1
	if len(word) > 64 {
		// No key or value is that long; the distance table would be
		// len(word) times the candidate's length.
		return ""
	}
	lw := strings.ToLower(word)
	for _, c := range candidates {
		d := editDistance(lw, strings.ToLower(c))
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist < 0 {
		return ""
	}
	limit := max(1, len(best)/3)
	if bestDist > limit || bestDist >= len(word) {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// the number of single-byte insertions, deletions, substitutions and
// transpositions of adjacent bytes needed to turn one into the other (keys
// are ASCII).
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// allowedList renders a set of allowed values for messages, in the order
// given.
func allowedList(vals []string) string {
	return strings.Join(vals, ", ")
}

// sortedKeys returns the keys of m in lexical order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
