package main

import (
	"fmt"

	"github.com/cosa-build/cosa/pkg/events"
)

// jsonEvents returns where this command's machine-readable events go: JSON
// lines on stdout under --json, nowhere otherwise (text output is the
// command's own).
func (g *globals) jsonEvents() events.Sink {
	if !g.JSON {
		return events.Discard{}
	}
	if g.sink == nil {
		g.sink = &events.JSONLines{W: g.Stdout}
	}
	return g.sink
}

// result ends a successful command: under --json the "result" event that
// carries what the command made, otherwise text (if any) on stdout.
func (g *globals) result(command string, payload any, text string) {
	if g.JSON {
		g.jsonEvents().Emit(events.Event{Type: "result", Command: command, Result: payload})
		return
	}
	if text != "" {
		fmt.Fprintln(g.Stdout, text)
	}
}
