// Package events is cosa's one machine-readable output. Under --json every
// command writes only these objects to stdout, one per line; humans get the
// same events rendered as text on stderr (Text). The shape is versioned: a
// consumer checks "v" and ignores fields it does not know. docs/events.md
// documents each event type and schema.json is the contract tests validate
// every emitted line against (Validate).
package events

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cosa-build/cosa/pkg/termsafe"
)

// Version is the value of "v" in every event. Bump it only for a change
// that breaks a consumer (a removed field, a changed meaning); new optional
// fields and new event types keep it.
const Version = 1

// Event types. Types lists them all; schema.json has the same list.
const (
	StepStart   = "step-start"   // a long step began (Step)
	StepRunning = "step-running" // heartbeat of a running step (Step, DurationS so far)
	StepFinish  = "step-finish"  // the step ended well (Step, DurationS)
	StepFailed  = "step-failed"  // the step failed (Step, DurationS, Error)
	Info        = "info"         // a one-off message (Message)
	Warning     = "warning"      // something worth a look that did not stop the command (Message)

	PipelineStart = "pipeline-start" // an image pipeline begins (Pipeline, ID)
	StageStart    = "stage-start"    // a pipeline stage begins (Pipeline, Stage, ID)
	StageFinish   = "stage-finish"   // the stage ended well (Pipeline, Stage, ID, DurationS)
	StageCached   = "stage-cached"   // a pipeline or stage was found in the cache (Pipeline, ID, Message)
	StageFailed   = "stage-failed"   // the stage failed (Pipeline, Stage, ID, Error)

	Object   = "object"   // one remote object moved or considered (Action, Object, Bytes...)
	Index    = "index"    // the remote builds.json (Action, Object)
	Artifact = "artifact" // one artifact (de)compressed or skipped (Artifact, Action...)
	Test     = "test"     // one test's outcome (Test, Firmware, Action pass|fail)

	Result = "result" // the last event of a successful command (Command, Result)
	Error  = "error"  // the last event of a failed command (Command, Error, ExitCode)
)

// Types are every event type, in the order docs/events.md lists them.
var Types = []string{StepStart, StepRunning, StepFinish, StepFailed, Info, Warning,
	PipelineStart, StageStart, StageFinish, StageCached, StageFailed,
	Object, Index, Artifact, Test, Result, Error}

// Event is one line of --json output. Only V, Type and Time are always set;
// which others are depends on Type (docs/events.md).
type Event struct {
	V    int    `json:"v"`
	Type string `json:"event"`
	Time string `json:"time"`

	// Command is the cosa command that emitted the event ("build",
	// "buildextend-aws", "tag update"); set on result and error events.
	Command string `json:"command,omitempty"`

	Step     string `json:"step,omitempty"`
	Pipeline string `json:"pipeline,omitempty"`
	Stage    string `json:"stage,omitempty"`
	// ID is a content id (pipeline stage, import task, ...).
	ID string `json:"id,omitempty"`
	// Artifact is an images key of meta.json ("qemu", "ostree").
	Artifact string `json:"artifact,omitempty"`
	// Object is a remote object (s3://bucket/key, a URL or a path).
	Object string `json:"object,omitempty"`
	// Action says what happened to Object or Artifact ("uploaded",
	// "compressed", "skipped", ...), or a test's "pass" or "fail".
	Action string `json:"action,omitempty"`
	Reason string `json:"reason,omitempty"`
	// From and To are an artifact's file before and after, relative to
	// the build's arch directory.
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
	Resumed bool   `json:"resumed,omitempty"`
	// Bytes moved; Size an artifact's uncompressed size and
	// CompressedSize its compressed size.
	Bytes          int64 `json:"bytes,omitempty"`
	Size           int64 `json:"size,omitempty"`
	CompressedSize int64 `json:"compressed_size,omitempty"`
	// DurationS is the one duration field: seconds, fractional.
	DurationS float64 `json:"duration_s,omitempty"`
	// MBPerS is a throughput in megabytes (10^6 bytes) per second.
	MBPerS   float64 `json:"mb_per_s,omitempty"`
	Test     string  `json:"test,omitempty"`
	Firmware string  `json:"firmware,omitempty"`
	Message  string  `json:"message,omitempty"`
	Error    string  `json:"error,omitempty"`
	// ExitCode is cosa's exit status, on error events: 1 for a failure,
	// 2 for bad input.
	ExitCode int `json:"exit_code,omitempty"`

	// Result is what a command made; set only on the "result" event that
	// ends every successful command. Its shape depends on Command.
	Result any `json:"result,omitempty"`
}

// Sink receives events. Implementations are safe for concurrent use.
type Sink interface{ Emit(Event) }

// Func adapts a function to a Sink.
type Func func(Event)

// Emit calls f.
func (f Func) Emit(e Event) { f(e) }

// Emit sends e to s unless s is nil, so optional sinks need no checks.
func Emit(s Sink, e Event) {
	if s != nil {
		s.Emit(e)
	}
}

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
		b, _ = json.Marshal(Event{V: Version, Type: Error, Time: e.Time, Command: e.Command, Error: "unencodable event: " + err.Error()})
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	// Events carry names and text from elsewhere (a bucket's keys, a
	// server's reply): what a terminal would act on is \u-escaped.
	fmt.Fprintf(j.W, "%s\n", termsafe.JSON(b))
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
