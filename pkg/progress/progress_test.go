package progress

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestJSONEvents(t *testing.T) {
	var buf bytes.Buffer
	r := &Reporter{W: &buf, Mode: JSON}
	r.Start("compose").Done(nil)
	r.Start("commit").Done(errors.New("boom"))
	var kinds []string
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		kinds = append(kinds, e.Event+":"+e.Step+":"+e.Error)
	}
	want := "step-start:compose:,step-finish:compose:,step-start:commit:,step-failed:commit:boom"
	if got := strings.Join(kinds, ","); got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
}

func TestPlainHasNoCarriageReturns(t *testing.T) {
	var buf bytes.Buffer
	r := &Reporter{W: &buf, Mode: Plain}
	r.Start("x").Done(nil)
	if strings.Contains(buf.String(), "\r") || !strings.Contains(buf.String(), "x: done in") {
		t.Errorf("plain output %q", buf.String())
	}
}
