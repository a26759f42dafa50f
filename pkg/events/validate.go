package events

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed schema.json
var schemaJSON []byte

const schemaURL = "https://github.com/cosa-build/cosa/pkg/events/schema.json"

// Schema returns the JSON Schema (draft 2020-12) every event line follows.
func Schema() []byte { return slices.Clone(schemaJSON) }

// compiled is built on first use; the schema is part of the binary, so a
// failure to compile it is a bug in this package and panics.
var compiled = sync.OnceValue(func() *jsonschema.Schema {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		panic("events: embedded schema.json: " + err.Error())
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(schemaURL, doc); err != nil {
		panic("events: embedded schema.json: " + err.Error())
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		panic("events: embedded schema.json: " + err.Error())
	}
	return s
})

// Validate checks one line of --json output against schema.json. Tests
// use it on everything a command writes to stdout under --json.
func Validate(line []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := compiled().Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return fmt.Errorf("%s: %v", line, ve)
		}
		return err
	}
	return nil
}

// ValidateLines checks every line of out (stdout of a --json run) and
// that there is at least one.
func ValidateLines(out []byte) error {
	lines := bytes.Split(bytes.TrimRight(out, "\n"), []byte("\n"))
	if len(out) == 0 {
		return errors.New("no output")
	}
	for i, l := range lines {
		if err := Validate(l); err != nil {
			return fmt.Errorf("line %d: %w", i+1, err)
		}
	}
	return nil
}
