// Package events is cosa's one machine-readable output. Under --json every
// command writes only these objects to stdout, one per line; humans get the
// same events rendered as text on stderr. The shape is versioned: a consumer
// checks "v" and ignores fields it does not know. docs/events.md documents
// each event type and pkg/events/schema.json is the contract tests validate
// every emitted line against.
package events

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Version is the value of "v" in every event. Bump it only for a change
// that breaks a consumer (a removed field, a changed meaning); new optional
// fields and new event types keep it.
const Version = 1

// Event is one line of --json output. Only V, Type and Time are always set.
type Event struct {
	V    int    `json:"v"`
	Type string `json:"event"`
	Time string `json:"time"`

	// Command is the cosa command that emitted the event ("build",
	// "buildextend-aws"); set on result and error events.
	Command string `json:"command,omitempty"`

	Step     string `json:"step,omitempty"`
	Pipeline string `json:"pipeline,omitempty"`
	Stage    string `json:"stage,omitempty"`
	ID       string `json:"id,omitempty"`
	Object   string `json:"object,omitempty"`
	Action   string `json:"action,omitempty"`
	Bytes    int64  `json:"bytes,omitempty"`
	// DurationS is the one duration field: seconds, fractional.
	DurationS float64 `json:"duration_s,omitempty"`
	MBps      float64 `json:"mbps,omitempty"`
	Message   string  `json:"message,omitempty"`
	Error     string  `json:"error,omitempty"`

	// Result is what a command made; set only on the "result" event that
	// ends every successful command.
	Result any `json:"result,omitempty"`
}

// Sink receives events.
type Sink interface{ Emit(Event) }

// JSONLines writes each event as one JSON line. Safe for concurrent use.
type JSONLines struct {
	W  io.Writer
	mu sync.Mutex
}

// Emit stamps the version and time and writes e.
func (j *JSONLines) Emit(e Event) {
	if j == nil || j.W == nil {
		return
	}
	Stamp(&e)
	b, err := json.Marshal(e)
	if err != nil {
		b, _ = json.Marshal(Event{V: Version, Type: "error", Time: e.Time, Error: "unencodable event: " + err.Error()})
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	fmt.Fprintf(j.W, "%s\n", b)
}

// Stamp fills V and Time.
func Stamp(e *Event) {
	e.V = Version
	if e.Time == "" {
		e.Time = time.Now().UTC().Format(time.RFC3339Nano)
	}
}

// Discard drops every event.
type Discard struct{}

// Emit does nothing.
func (Discard) Emit(Event) {}
