package images

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Event is one thing the engine reports; with --json each is a JSON line.
type Event struct {
	Type     string  `json:"event"` // pipeline-start, stage-start, stage-finish, stage-cached, result, error
	Pipeline string  `json:"pipeline,omitempty"`
	Stage    string  `json:"stage,omitempty"`
	ID       string  `json:"id,omitempty"`
	Duration float64 `json:"duration_s,omitempty"`
	Message  string  `json:"message,omitempty"`
	Time     string  `json:"time"`
}

// Printer writes events as text lines or JSON lines.
type Printer struct {
	W    io.Writer
	JSON bool
	mu   sync.Mutex
}

// Emit writes one event.
func (p *Printer) Emit(e Event) {
	if p == nil || p.W == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e.Time = time.Now().UTC().Format(time.RFC3339Nano)
	if p.JSON {
		b, _ := json.Marshal(e)
		fmt.Fprintf(p.W, "%s\n", b)
		return
	}
	short := e.ID
	if len(short) > 12 {
		short = short[:12]
	}
	switch e.Type {
	case "pipeline-start":
		fmt.Fprintf(p.W, "==> pipeline %s\n", e.Pipeline)
	case "stage-start":
		fmt.Fprintf(p.W, "    %s [%s] ...\n", e.Stage, short)
	case "stage-finish":
		fmt.Fprintf(p.W, "    %s [%s] done in %.1fs\n", e.Stage, short, e.Duration)
	case "stage-cached":
		fmt.Fprintf(p.W, "    %s\n", e.Message)
	case "result":
		fmt.Fprintf(p.W, "%s\n", e.Message)
	case "error":
		fmt.Fprintf(p.W, "error in %s/%s [%s]: %s\n", e.Pipeline, e.Stage, short, e.Message)
	}
}
