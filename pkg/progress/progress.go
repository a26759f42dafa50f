// Package progress reports long-running steps as events (pkg/events): a
// step-start, a step-running heartbeat while the step runs, and a
// step-finish or step-failed with its duration. How they look is the
// sink's business: a live status line on a terminal, plain periodic lines
// in CI logs, JSON lines under --json.
package progress

import (
	"fmt"
	"sync"
	"time"

	"github.com/cosa-build/cosa/pkg/events"
)

// Heartbeat is how often a running step reports when each report is a
// line of its own (CI logs, JSON); CI systems kill jobs that print nothing
// for a while, and people like to see life.
var Heartbeat = 30 * time.Second

// LiveInterval is how often a live terminal status line is refreshed.
var LiveInterval = time.Second

// Reporter sends step events to Sink.
type Reporter struct {
	Sink events.Sink
	// Interval between step-running events.
	Interval time.Duration
}

// New reports to sink, refreshing every second when the sink shows a live
// status line (events.Text on a terminal) and every Heartbeat otherwise.
func New(sink events.Sink) *Reporter {
	r := &Reporter{Sink: sink, Interval: Heartbeat}
	if l, ok := sink.(interface{ IsLive() bool }); ok && l.IsLive() {
		r.Interval = LiveInterval
	}
	return r
}

func (r *Reporter) emit(e events.Event) {
	if r != nil {
		events.Emit(r.Sink, e)
	}
}

// Infof reports a one-off message.
func (r *Reporter) Infof(format string, args ...any) {
	r.emit(events.Event{Type: events.Info, Message: fmt.Sprintf(format, args...)})
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
	r.emit(events.Event{Type: events.StepStart, Step: name})
	interval := Heartbeat
	if r != nil && r.Interval > 0 {
		interval = r.Interval
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
				r.emit(events.Event{Type: events.StepRunning, Step: name, DurationS: time.Since(s.start).Seconds()})
			}
		}
	}()
	return s
}

// Done ends the step, reporting its duration or error, and returns err.
func (s *Step) Done(err error) error {
	close(s.stop)
	s.done.Wait()
	el := time.Since(s.start).Seconds()
	if err != nil {
		s.r.emit(events.Event{Type: events.StepFailed, Step: s.name, DurationS: el, Error: err.Error()})
		return err
	}
	s.r.emit(events.Event{Type: events.StepFinish, Step: s.name, DurationS: el})
	return nil
}
