package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cosa-build/cosa/pkg/events"
)

// jsonEvents checks that stdout of a --json run is nothing but event
// lines that follow pkg/events/schema.json, and decodes them.
func jsonEvents(t *testing.T, stdout string) []map[string]any {
	t.Helper()
	if stdout == "" {
		t.Fatal("--json run wrote nothing to stdout")
	}
	var evs []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		if err := events.Validate([]byte(l)); err != nil {
			t.Fatalf("--json stdout line fails the schema: %v", err)
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	return evs
}

// resultOf checks a successful --json run's stdout and returns the
// payload of its last line, which must be the result event of command.
func resultOf(t *testing.T, command, stdout string) map[string]any {
	t.Helper()
	evs := jsonEvents(t, stdout)
	last := evs[len(evs)-1]
	if last["event"] != "result" || last["command"] != command {
		t.Fatalf("last --json line is %v, want the result of %q", last, command)
	}
	for _, e := range evs[:len(evs)-1] {
		if e["event"] == "result" || e["event"] == "error" {
			t.Errorf("%s event before the end: %v", e["event"], e)
		}
	}
	return last["result"].(map[string]any)
}
