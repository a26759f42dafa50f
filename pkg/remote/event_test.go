package remote

import (
	"strings"
	"testing"
)

// Event lines carry remote names and server text; they reach the
// terminal with control characters escaped.
func TestEventStringEscapesControls(t *testing.T) {
	for _, e := range []Event{
		{Event: "warning", Message: "server says \x1b]0;owned\x07"},
		{Event: "info", Message: "a\rb \u202ec"},
		{Event: "object", Action: "fetched", Object: "http://h/\x1b[2J", Bytes: 1},
		{Event: "object", Action: "kept", Object: "x\u009b", Message: "\x7f"},
		{Event: "index", Action: "unchanged", Object: "s3://b/\nbuilds.json"},
	} {
		s := e.String()
		if strings.ContainsAny(s, "\x1b\r\n\x7f\u009b\u202e") {
			t.Errorf("%q: String() = %q", e.Object+" "+e.Message, s)
		}
	}
	if got := (Event{Event: "warning", Message: "x\x1b[1m"}).String(); got != `warning: x\x1b[1m` {
		t.Errorf("warning = %q", got)
	}
}
