package progress

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/events"
)

func TestJSONEvents(t *testing.T) {
	var buf bytes.Buffer
	r := New(&events.JSONLines{W: &buf})
	r.Start("compose").Done(nil)
	r.Start("commit").Done(errors.New("boom"))
	var kinds []string
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		if err := events.Validate(sc.Bytes()); err != nil {
			t.Error(err)
		}
		var e events.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		kinds = append(kinds, e.Type+":"+e.Step+":"+e.Error)
	}
	want := "step-start:compose:,step-finish:compose:,step-start:commit:,step-failed:commit:boom"
	if got := strings.Join(kinds, ","); got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
}

func TestPlainHasNoCarriageReturns(t *testing.T) {
	var buf bytes.Buffer
	r := New(&events.Text{W: &buf})
	if r.Interval != Heartbeat {
		t.Errorf("plain text interval %s, want the heartbeat %s", r.Interval, Heartbeat)
	}
	r.Start("x").Done(nil)
	if strings.Contains(buf.String(), "\r") || !strings.Contains(buf.String(), "x: done in") {
		t.Errorf("plain output %q", buf.String())
	}
}

// A live terminal gets a status line rewritten in place, refreshed often.
func TestLiveRewritesRunningLine(t *testing.T) {
	var mu testutil.SyncBuffer
	r := New(&events.Text{W: &mu, Live: true})
	if r.Interval != LiveInterval {
		t.Fatalf("live interval %s, want %s", r.Interval, LiveInterval)
	}
	r.Interval = time.Millisecond
	s := r.Start("y")
	for !strings.Contains(mu.String(), "y: running for") {
		time.Sleep(time.Millisecond) // polling the output, not synchronising on time
	}
	s.Done(nil)
	out := mu.String()
	if !strings.Contains(out, "\r\033[K    y: running for") || !strings.Contains(out, "\r\033[K    y: done in ") || !strings.HasSuffix(out, "\n") {
		t.Errorf("live output %q", out)
	}
}
