package events

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/termsafe"
)

// Text renders events as lines for people. On a terminal (Live) a running
// step's heartbeat rewrites one status line in place; elsewhere, in CI logs
// above all, every event is a plain line with no carriage returns to garble
// it. Result and error events are not rendered: each command prints its own
// summary, and main prints the error.
type Text struct {
	W io.Writer
	// Live rewrites step-running lines in place.
	Live bool
	mu   sync.Mutex
}

// NewText renders to w, live if w is a terminal.
func NewText(w io.Writer) *Text {
	t := &Text{W: w}
	if f, ok := w.(*os.File); ok {
		fi, err := f.Stat()
		t.Live = err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
	}
	return t
}

// IsLive reports whether heartbeats are cheap to show (a terminal status
// line) rather than a line each in a log.
func (t *Text) IsLive() bool { return t != nil && t.Live }

// Emit writes e's line.
func (t *Text) Emit(e Event) {
	if t == nil || t.W == nil {
		return
	}
	line := e.Text()
	if line == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case !t.Live:
		fmt.Fprintln(t.W, line)
	case e.Type == StepRunning:
		fmt.Fprintf(t.W, "\r\033[K%s", line)
	default:
		fmt.Fprintf(t.W, "\r\033[K%s\n", line)
	}
}

// Text is e as one human-readable line ("" for result and error events).
// Names and messages may come from elsewhere (a bucket, a server, a
// fetched meta.json), so control characters in them are shown escaped.
func (e Event) Text() string {
	s := termsafe.String
	short := e.ID
	if len(short) > 12 {
		short = short[:12]
	}
	switch e.Type {
	case StepStart:
		return "==> " + s(e.Step)
	case StepRunning:
		return fmt.Sprintf("    %s: running for %s", s(e.Step), seconds(e.DurationS).Round(time.Second))
	case StepFinish:
		return fmt.Sprintf("    %s: done in %s", s(e.Step), FormatDuration(seconds(e.DurationS)))
	case StepFailed:
		return fmt.Sprintf("    %s: failed after %s", s(e.Step), FormatDuration(seconds(e.DurationS)))
	case Info:
		return s(e.Message)
	case Warning:
		return "warning: " + s(e.Message)
	case PipelineStart:
		return "==> pipeline " + s(e.Pipeline)
	case StageStart:
		return fmt.Sprintf("    %s [%s] ...", s(e.Stage), short)
	case StageFinish:
		return fmt.Sprintf("    %s [%s] done in %.1fs", s(e.Stage), short, e.DurationS)
	case StageCached:
		return "    " + s(e.Message)
	case StageFailed:
		return fmt.Sprintf("error in %s/%s [%s]: %s", s(e.Pipeline), s(e.Stage), short, termsafe.Text(e.Error))
	case Object, Index:
		return s(e.transferLine())
	case Artifact:
		return s(e.artifactLine())
	case Test:
		return fmt.Sprintf("%s (%s): %s in %.0fs %s", s(e.Test), s(e.Firmware), e.Action, e.DurationS, s(e.Message))
	}
	return ""
}

func (e Event) transferLine() string {
	switch {
	case e.Action == "uploaded" || e.Action == "fetched":
		return fmt.Sprintf("%s %s (%s in %s, %.1f MB/s)", e.Action, e.Object, DecimalBytes(e.Bytes),
			seconds(e.DurationS).Round(time.Millisecond), e.MBPerS)
	case e.Action == "would-upload":
		return fmt.Sprintf("would upload %s (%s)", e.Object, DecimalBytes(e.Bytes))
	case e.Message != "":
		return fmt.Sprintf("%s %s (%s)", e.Action, e.Object, e.Message)
	}
	return fmt.Sprintf("%s %s", e.Action, e.Object)
}

func (e Event) artifactLine() string {
	if e.Action == "skipped" {
		return fmt.Sprintf("%s: skipped %s (%s)", e.Artifact, e.From, e.Reason)
	}
	resumed := ""
	if e.Resumed {
		resumed = ", finishing an interrupted run"
	}
	sizes := fmt.Sprintf("%s -> %s", fileutil.HumanBytes(e.CompressedSize), fileutil.HumanBytes(e.Size))
	if e.Action == "compressed" {
		pct := 0.0
		if e.Size > 0 {
			pct = float64(e.CompressedSize) / float64(e.Size) * 100
		}
		sizes = fmt.Sprintf("%s -> %s, %.1f%%", fileutil.HumanBytes(e.Size), fileutil.HumanBytes(e.CompressedSize), pct)
	}
	return fmt.Sprintf("%s: %s %s -> %s (%s) in %s, %.1f MB/s%s", e.Artifact, e.Action, e.From, e.To, sizes,
		seconds(e.DurationS).Round(10*time.Millisecond), e.MBPerS, resumed)
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// FormatDuration rounds d to what a person reads: 10 ms under ten
// seconds, 100 ms above.
func FormatDuration(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// DecimalBytes formats n in decimal units, as MB/s rates are.
func DecimalBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// Rate is n bytes in d as MB/s, rounded to 0.1; 0 for no time.
func Rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return Round1(float64(n) / 1e6 / d.Seconds())
}

// Round1 rounds to one decimal, which is all a rate is worth.
func Round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
