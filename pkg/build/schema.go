package build

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed meta.schema.json
var metaSchemaJSON []byte

const metaSchemaURL = "https://github.com/cosa-build/cosa/pkg/build/meta.schema.json"

// metaSchema is compiled on first use; the schema is part of the binary, so
// a failure here is a bug in this package and panics.
var metaSchema = sync.OnceValue(func() *jsonschema.Schema {
	s, err := CompileSchema(metaSchemaURL, metaSchemaJSON)
	if err != nil {
		panic("build: embedded meta.schema.json: " + err.Error())
	}
	return s
})

// MetaSchema returns the embedded JSON schema for meta.json.
func MetaSchema() []byte { return slices.Clone(metaSchemaJSON) }

// CompileSchema compiles a draft-07 schema document, registered under url
// so that its internal "#/definitions/..." references and any fragment-only
// "$id"s resolve against it.
func CompileSchema(url string, doc []byte) (*jsonschema.Schema, error) {
	parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	if err := c.AddResource(url, parsed); err != nil {
		return nil, err
	}
	return c.Compile(url)
}

// ValidateMeta checks a meta.json document against our schema.
func ValidateMeta(data []byte) error {
	return ValidateWith(metaSchema(), data)
}

// ValidateWith checks data against s and reduces a failure to one line
// naming the JSON pointer of the first problem, e.g.
// `meta.json invalid at "/images/ostree": missing property 'sha256'`.
func ValidateWith(s *jsonschema.Schema, data []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("meta.json is not valid JSON: %w", err)
	}
	err = s.Validate(inst)
	var ve *jsonschema.ValidationError
	if err == nil || !errors.As(err, &ve) {
		return err
	}
	leaf := firstLeaf(ve)
	ptr := jsonPointer(leaf.InstanceLocation)
	// A leaf's own Error() is "at '<ptr>': <message>"; keep the message.
	msg := leaf.Error()
	if _, after, ok := strings.Cut(msg, "': "); ok {
		msg = after
	}
	ptrJSON, _ := json.Marshal(ptr)
	return fmt.Errorf("meta.json invalid at %s: %s", ptrJSON, msg)
}

// firstLeaf picks, among the innermost errors, the one earliest in the
// document by JSON pointer; the library's own order depends on map
// iteration, and a stable message is easier to act on and to test.
func firstLeaf(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	if len(e.Causes) == 0 {
		return e
	}
	var best *jsonschema.ValidationError
	for _, c := range e.Causes {
		l := firstLeaf(c)
		if best == nil || slices.Compare(l.InstanceLocation, best.InstanceLocation) < 0 {
			best = l
		}
	}
	return best
}

// jsonPointer renders tokens as an RFC 6901 pointer ("" is the root).
func jsonPointer(toks []string) string {
	var b strings.Builder
	r := strings.NewReplacer("~", "~0", "/", "~1")
	for _, t := range toks {
		b.WriteByte('/')
		b.WriteString(r.Replace(t))
	}
	return b.String()
}
