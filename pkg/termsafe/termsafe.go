// Package termsafe makes text that cosa did not write itself (build ids,
// tag names and descriptions, timestamps and paths from a builds.json or
// meta.json in a bucket, error text from a server) safe to print on a
// terminal. A terminal acts on control characters: ESC and the C1 CSI
// start sequences that can retitle the window, rewrite what is on screen
// or, on some terminals, answer back as if typed; carriage returns and
// backspaces overwrite what was printed; and Unicode bidi controls reorder
// the text that is shown. Such characters are shown as visible escapes.
package termsafe

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// String returns s with every character that is not plain printable text
// shown as an escape: C0 controls (tab and newline too, since fields such
// as a tag description are printed as one line), DEL, C1 controls, the
// line and paragraph separators, bidi controls, and bytes that are not
// UTF-8 (a lone 0x9b is the 8-bit CSI). Anything else is kept as is.
func String(s string) string { return escape(s, false) }

// Text is String for multi-line text such as an error message: newlines
// and tabs are kept.
func Text(s string) string { return escape(s, true) }

func escape(s string, multiline bool) string {
	if !needsEscape(s, func(r rune) bool { return unsafeRune(r, multiline) }) {
		return s // the common case: no allocation
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r, multiline) && r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r, multiline):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// needsEscape reports whether s holds a byte that is not UTF-8 or a rune
// for which bad is true.
func needsEscape(s string, bad func(rune) bool) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || bad(r) {
			return true
		}
		i += size
	}
	return false
}

// unsafeRune reports whether r must not reach a terminal as is.
func unsafeRune(r rune, multiline bool) bool {
	switch {
	case multiline && (r == '\n' || r == '\t'):
		return false
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	}
	return isFormatControl(r)
}

// isFormatControl is the bidi embedding, override, isolate and mark
// characters, and the line and paragraph separators, all of which change
// how the text around them is laid out.
func isFormatControl(r rune) bool {
	switch {
	case r == 0x061c, r == 0x200e, r == 0x200f:
		return true
	case r >= 0x2028 && r <= 0x202e:
		return true
	case r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// JSON makes JSON text from encoding/json safe to print. encoding/json
// already escapes C0 controls inside strings but writes DEL, C1 and bidi
// controls as they are; those become \u escapes, so the JSON value, as a
// program reading it sees it, does not change. Outside strings valid JSON
// holds only ASCII punctuation, digits, letters and whitespace.
func JSON(b []byte) []byte {
	s := string(b)
	if !needsEscape(s, jsonUnsafe) {
		return b
	}
	var out strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if jsonUnsafe(r) {
			fmt.Fprintf(&out, `\u%04x`, r)
		} else {
			out.WriteString(s[i : i+size]) // bytes that are not UTF-8 stay as they were
		}
		i += size
	}
	return []byte(out.String())
}

// jsonUnsafe is what encoding/json leaves unescaped that a terminal acts on.
func jsonUnsafe(r rune) bool {
	return r == 0x7f || (r >= 0x80 && r <= 0x9f) || isFormatControl(r)
}
