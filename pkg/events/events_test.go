package events

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func line(t *testing.T, e Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	(&JSONLines{W: &buf}).Emit(e)
	b := buf.Bytes()
	if bytes.Count(b, []byte("\n")) != 1 || !bytes.HasSuffix(b, []byte("\n")) {
		t.Fatalf("JSONLines wrote %q, want one line", b)
	}
	return bytes.TrimSuffix(b, []byte("\n"))
}

const sha = "5909570f35c7b3e5844fba31f4c8a27456b93466c21c2a633defb9b070730d74"

// Every kind of event cosa emits, as cosa fills it in, passes the schema.
func TestSchemaAcceptsGoodEvents(t *testing.T) {
	good := []Event{
		{Type: StepStart, Step: "compose"},
		{Type: StepRunning, Step: "compose", DurationS: 30.5},
		{Type: StepFinish, Step: "compose", DurationS: 61.2},
		{Type: StepFailed, Step: "commit", DurationS: 1, Error: "boom"},
		{Type: Info, Message: "Building x"},
		{Type: Warning, Message: "no meta.json"},
		{Type: PipelineStart, Pipeline: "tree", ID: "abc"},
		{Type: StageStart, Pipeline: "tree", Stage: "ostree.deploy", ID: "abc"},
		{Type: StageFinish, Pipeline: "tree", Stage: "ostree.deploy", ID: "abc", DurationS: 2},
		{Type: StageCached, Pipeline: "tree", ID: "abc", Message: "tree: all 3 stages cached"},
		{Type: StageFailed, Pipeline: "tree", Stage: "ostree.deploy", ID: "abc", Error: "exit 1"},
		{Type: Object, Action: "uploaded", Object: "s3://b/k", Bytes: 10, DurationS: 0.1, MBPerS: 0.1},
		{Type: Object, Action: "kept", Object: "/x", Bytes: 10, Message: "already present"},
		{Type: Index, Action: "unchanged", Object: "s3://b/builds.json"},
		{Type: Artifact, Artifact: "qemu", Action: "compressed", From: "a.img", To: "a.img.gz", Size: 10, CompressedSize: 2, DurationS: 1, MBPerS: 2},
		{Type: Artifact, Artifact: "ostree", Action: "skipped", From: "o.tar", Reason: "not compressed"},
		{Type: Test, Test: "boot", Firmware: "uefi", Action: "pass", DurationS: 20},
		{Type: Error, Command: "build", Error: "no package cache", ExitCode: 1},
		{Type: Result, Command: "build", Result: map[string]any{"build": "1.2", "arch": "x86_64", "changed": true,
			"commit": sha, "artifacts": []any{map[string]any{"name": "qemu", "path": "builds/1.2/x86_64/q.img", "size": 5, "sha256": sha}}}},
		{Type: Result, Command: "build", Result: map[string]any{"build": "1.2", "arch": "x86_64", "changed": false, "commit": sha, "artifacts": []any{}}},
		{Type: Result, Command: "prune", Result: map[string]any{"dry_run": true, "pruned": []string{}, "kept": []string{"1.2"}}},
		{Type: Result, Command: "meta", Result: map[string]any{"build": "1.2", "arch": "x86_64", "values": map[string]any{"buildid": "1.2"}}},
		{Type: Result, Command: "some-future-command", Result: map[string]any{}},
	}
	for _, e := range good {
		if err := Validate(line(t, e)); err != nil {
			t.Errorf("%+v: %v", e, err)
		}
	}
	// Types is what the schema's enum lists, in order.
	var s struct {
		Properties struct {
			Event struct {
				Enum []string `json:"enum"`
			} `json:"event"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(Schema(), &s); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Properties.Event.Enum, Types) {
		t.Errorf("schema event enum %v, Types %v", s.Properties.Event.Enum, Types)
	}
}

func TestSchemaRejects(t *testing.T) {
	for name, l := range map[string]string{
		"missing v":              `{"event":"info","time":"2026-01-01T00:00:00Z","message":"x"}`,
		"v 2":                    `{"v":2,"event":"info","time":"2026-01-01T00:00:00Z","message":"x"}`,
		"v as a string":          `{"v":"1","event":"info","time":"2026-01-01T00:00:00Z","message":"x"}`,
		"missing time":           `{"v":1,"event":"info","message":"x"}`,
		"unknown event type":     `{"v":1,"event":"compress-artifact","time":"2026-01-01T00:00:00Z"}`,
		"old progress shape":     `{"v":1,"event":"step-finish","time":"2026-01-01T00:00:00Z","step":"x","elapsed_s":1}`,
		"old remote shape":       `{"v":1,"event":"object","time":"2026-01-01T00:00:00Z","action":"uploaded","object":"s3://b/k","seconds":1}`,
		"bytes as a string":      `{"v":1,"event":"object","time":"2026-01-01T00:00:00Z","action":"uploaded","object":"s3://b/k","bytes":"10"}`,
		"negative duration":      `{"v":1,"event":"step-finish","time":"2026-01-01T00:00:00Z","step":"x","duration_s":-1}`,
		"step without name":      `{"v":1,"event":"step-start","time":"2026-01-01T00:00:00Z"}`,
		"result without command": `{"v":1,"event":"result","time":"2026-01-01T00:00:00Z","result":{}}`,
		"result not an object":   `{"v":1,"event":"result","time":"2026-01-01T00:00:00Z","command":"list","result":[]}`,
		"result on another type": `{"v":1,"event":"info","time":"2026-01-01T00:00:00Z","message":"x","result":{}}`,
		"error without exit":     `{"v":1,"event":"error","time":"2026-01-01T00:00:00Z","command":"build","error":"x"}`,
		"build result, no id":    `{"v":1,"event":"result","time":"2026-01-01T00:00:00Z","command":"build","result":{"changed":false,"arch":"x","commit":"` + sha + `","artifacts":[]}}`,
		"artifact sha256 short":  `{"v":1,"event":"result","time":"2026-01-01T00:00:00Z","command":"build","result":{"build":"1","changed":true,"arch":"x","commit":"` + sha + `","artifacts":[{"name":"q","path":"builds/1/x/q","size":1,"sha256":"abc"}]}}`,
		"unknown action":         `{"v":1,"event":"artifact","time":"2026-01-01T00:00:00Z","artifact":"qemu","action":"zipped"}`,
		"two objects":            `{"v":1,"event":"info","time":"2026-01-01T00:00:00Z","message":"x"}{"v":1}`,
		"not JSON":               `Built 1.2: commit abc`,
		"empty":                  ``,
	} {
		if err := Validate([]byte(l)); err == nil {
			t.Errorf("%s: %s passes the schema", name, l)
		}
	}
}

func TestValidateLines(t *testing.T) {
	var buf bytes.Buffer
	j := &JSONLines{W: &buf}
	j.Emit(Event{Type: Info, Message: "a"})
	j.Emit(Event{Type: Result, Command: "list", Result: map[string]any{"builds": []any{}}})
	if err := ValidateLines(buf.Bytes()); err != nil {
		t.Error(err)
	}
	buf.WriteString("No changes in build inputs.\n")
	if err := ValidateLines(buf.Bytes()); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("text after the events: %v", err)
	}
	if err := ValidateLines(nil); err == nil {
		t.Error("no output passes")
	}
}

// The JSON line carries what a terminal would act on \u-escaped, and
// decodes to the original text.
func TestJSONLinesEscapesTerminalControls(t *testing.T) {
	msg := "a\x1b]0;x\x07 \u009b \u202e"
	l := line(t, Event{Type: Info, Message: msg})
	if regexp.MustCompile("[\x00-\x1f\x7f\u0080-\u009f\u202e]").Match(l) {
		t.Errorf("raw control in %q", l)
	}
	var e Event
	if err := json.Unmarshal(l, &e); err != nil || e.Message != msg || e.V != Version || e.Time == "" {
		t.Errorf("decoded %+v, %v", e, err)
	}
}

// Text lines carry remote names and server text; they reach the terminal
// with control characters escaped.
func TestTextEscapesControls(t *testing.T) {
	for _, e := range []Event{
		{Type: Warning, Message: "server says \x1b]0;owned\x07"},
		{Type: Info, Message: "a\rb \u202ec"},
		{Type: Object, Action: "fetched", Object: "http://h/\x1b[2J", Bytes: 1},
		{Type: Object, Action: "kept", Object: "x\u009b", Message: "\x7f"},
		{Type: Index, Action: "unchanged", Object: "s3://b/\nbuilds.json"},
		{Type: StageFailed, Pipeline: "p\x1b", Stage: "s", Error: "e\x1b[1m"},
	} {
		s := e.Text()
		if s == "" || strings.ContainsAny(s, "\x1b\r\n\x7f\u009b\u202e") {
			t.Errorf("%+v: Text() = %q", e, s)
		}
	}
	if got := (Event{Type: Warning, Message: "x\x1b[1m"}).Text(); got != `warning: x\x1b[1m` {
		t.Errorf("warning = %q", got)
	}
}

func TestTextRendering(t *testing.T) {
	for _, c := range []struct {
		e    Event
		want string
	}{
		{Event{Type: StepStart, Step: "compose"}, "==> compose"},
		{Event{Type: StepFinish, Step: "compose", DurationS: 1.234}, "    compose: done in 1.23s"},
		{Event{Type: StepFailed, Step: "commit", DurationS: 12.34, Error: "x"}, "    commit: failed after 12.3s"},
		{Event{Type: StepRunning, Step: "compose", DurationS: 61.4}, "    compose: running for 1m1s"},
		{Event{Type: StageFinish, Stage: "qemu", ID: "0123456789abcdef", DurationS: 2.04}, "    qemu [0123456789ab] done in 2.0s"},
		{Event{Type: Object, Action: "uploaded", Object: "s3://b/k", Bytes: 2e6, DurationS: 1, MBPerS: 2}, "uploaded s3://b/k (2.0 MB in 1s, 2.0 MB/s)"},
		{Event{Type: Object, Action: "would-upload", Object: "s3://b/k", Bytes: 1500}, "would upload s3://b/k (1.5 kB)"},
		{Event{Type: Artifact, Artifact: "qemu", Action: "skipped", From: "q.img", Reason: "skip-compression"}, "qemu: skipped q.img (skip-compression)"},
		{Event{Type: Artifact, Artifact: "qemu", Action: "compressed", From: "q.img", To: "q.img.gz", Size: 4 << 20, CompressedSize: 1 << 20, DurationS: 0.5, MBPerS: 8.4},
			"qemu: compressed q.img -> q.img.gz (4.0 MiB -> 1.0 MiB, 25.0%) in 500ms, 8.4 MB/s"},
		{Event{Type: Result, Command: "build", Result: map[string]any{}}, ""},
		{Event{Type: Error, Command: "build", Error: "x", ExitCode: 1}, ""},
	} {
		if got := c.e.Text(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.e, got, c.want)
		}
	}
}

func TestTextSink(t *testing.T) {
	var buf bytes.Buffer
	plain := &Text{W: &buf}
	plain.Emit(Event{Type: StepRunning, Step: "x", DurationS: 1})
	plain.Emit(Event{Type: Result, Command: "list", Result: map[string]any{}})
	if buf.String() != "    x: running for 1s\n" {
		t.Errorf("plain: %q", buf.String())
	}
	buf.Reset()
	live := &Text{W: &buf, Live: true}
	live.Emit(Event{Type: StepRunning, Step: "x", DurationS: 1})
	live.Emit(Event{Type: StepFinish, Step: "x", DurationS: 2})
	if want := "\r\033[K    x: running for 1s\r\033[K    x: done in 2s\n"; buf.String() != want {
		t.Errorf("live: %q, want %q", buf.String(), want)
	}
	if NewText(&buf).IsLive() {
		t.Error("a buffer is live")
	}
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if NewText(f).IsLive() {
		t.Error("a regular file is live")
	}
}
