// Package progress reports long-running steps in the three forms cosa's users
// need: a live elapsed-time line on a terminal, plain periodic lines in CI
// logs (no carriage returns to garble them), and JSON events for machines.
package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Mode selects how events are written.
type Mode int

const (
	// Plain writes one line per event plus a heartbeat line every Heartbeat.
	Plain Mode = iota
	// TTY rewrites one status line in place while a step runs.
	TTY
	// JSON writes one JSON object per line per event.
	JSON
)

// Heartbeat is how often a running step reports in Plain mode; CI systems
// kill jobs that print nothing for a while, and people like to see life.
var Heartbeat = 30 * time.Second

// Reporter writes step events to W.
type Reporter struct {
	W    io.Writer
	Mode Mode
	mu   sync.Mutex
}

// New picks TTY mode when w is a terminal, unless asJSON.
func New(w io.Writer, asJSON bool) *Reporter {
	m := Plain
	if asJSON {
		m = JSON
	} else if f, ok := w.(*os.File); ok && isTerminal(f) {
		m = TTY
	}
	return &Reporter{W: w, Mode: m}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

// Event is the JSON form of a report.
type Event struct {
	Event   string  `json:"event"` // step-start, step-running, step-finish, step-failed, info
	Step    string  `json:"step,omitempty"`
	Message string  `json:"message,omitempty"`
	Elapsed float64 `json:"elapsed_s,omitempty"`
	Error   string  `json:"error,omitempty"`
	Time    string  `json:"time"`
}

func (r *Reporter) emit(e Event, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.W == nil {
		return
	}
	e.Time = time.Now().UTC().Format(time.RFC3339Nano)
	switch r.Mode {
	case JSON:
		b, _ := json.Marshal(e)
		fmt.Fprintf(r.W, "%s\n", b)
	case TTY:
		if e.Event == "step-running" {
			fmt.Fprintf(r.W, "\r\033[K%s", text)
		} else {
			fmt.Fprintf(r.W, "\r\033[K%s\n", text)
		}
	default:
		fmt.Fprintln(r.W, text)
	}
}

// Infof reports a one-off message.
func (r *Reporter) Infof(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.emit(Event{Event: "info", Message: msg}, msg)
}

// Step is a running step.
type Step struct {
	r     *Reporter
	name  string
	start time.Time
	stop  chan struct{}
	done  sync.WaitGroup
}

// Start reports the start of a step and keeps reporting until Done.
func (r *Reporter) Start(name string) *Step {
	s := &Step{r: r, name: name, start: time.Now(), stop: make(chan struct{})}
	r.emit(Event{Event: "step-start", Step: name}, "==> "+name)
	interval := Heartbeat
	if r.Mode == TTY {
		interval = time.Second
	}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				el := time.Since(s.start)
				r.emit(Event{Event: "step-running", Step: name, Elapsed: el.Seconds()},
					fmt.Sprintf("    %s: running for %s", name, el.Round(time.Second)))
			}
		}
	}()
	return s
}

// Done ends the step, reporting its duration or error, and returns err.
func (s *Step) Done(err error) error {
	close(s.stop)
	s.done.Wait()
	el := time.Since(s.start)
	if err != nil {
		s.r.emit(Event{Event: "step-failed", Step: s.name, Elapsed: el.Seconds(), Error: err.Error()},
			fmt.Sprintf("    %s: failed after %s", s.name, fmtDur(el)))
		return err
	}
	s.r.emit(Event{Event: "step-finish", Step: s.name, Elapsed: el.Seconds()},
		fmt.Sprintf("    %s: done in %s", s.name, fmtDur(el)))
	return nil
}

func fmtDur(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
