package termsafe

import (
	"encoding/json"
	"testing"
)

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"42.20261122.dev.0":          "42.20261122.dev.0",
		"plain text, ünïcödé, 日本語 ✓": "plain text, ünïcödé, 日本語 ✓",
		"\x1b]0;owned\x07title":      `\x1b]0;owned\x07title`,
		"red \x1b[31mred\x1b[0m":     `red \x1b[31mred\x1b[0m`,
		"ok\rFAIL":                   `ok\x0dFAIL`,
		"back\bspace":                `back\x08space`,
		"two\nlines\tand tab":        `two\x0alines\x09and tab`,
		"nul\x00del\x7f":             `nul\x00del\x7f`,
		"c1 \u009b31m csi":           `c1 \u009b31m csi`,
		"raw \x9b31m 8-bit csi":      `raw \x9b31m 8-bit csi`,
		"bidi \u202eevil\u202c":      `bidi \u202eevil\u202c`,
		"isolate \u2066x\u2069":      `isolate \u2066x\u2069`,
		"marks \u200e\u200f\u061c":   `marks \u200e\u200f\u061c`,
		"sep \u2028\u2029":           `sep \u2028\u2029`,
		"replacement \ufffd kept":    "replacement \ufffd kept",
		"truncated \xe2\x80":         `truncated \xe2\x80`,
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTextKeepsNewlinesAndTabs(t *testing.T) {
	in := "line one\n\tline two \x1b[2J\u202e\r"
	want := "line one\n\tline two \\x1b[2J\\u202e\\x0d"
	if got := Text(in); got != want {
		t.Errorf("Text(%q) = %q, want %q", in, got, want)
	}
}

// JSON's output decodes to exactly what went in, and holds no character a
// terminal acts on.
func TestJSON(t *testing.T) {
	v := map[string]string{"d": "a\x1b[31m\x7f\u009b\u202eb\u2066 ünï \ufffd", "plain": "x"}
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	safe := JSON(raw)
	var back map[string]string
	if err := json.Unmarshal(safe, &back); err != nil {
		t.Fatalf("%s: %v", safe, err)
	}
	if back["d"] != v["d"] || back["plain"] != v["plain"] {
		t.Errorf("round trip changed the value: %q", back)
	}
	if s := string(safe); String(s) != s {
		t.Errorf("JSON output still has unsafe characters: %q", s)
	}
	clean := []byte(`{"a":"b"}`)
	if got := JSON(clean); &got[0] != &clean[0] {
		t.Error("clean JSON was copied")
	}
}
