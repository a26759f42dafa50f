package build

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// The schema must know every key Meta writes, or WriteMeta would reject
// our own output once that field is set.
func TestSchemaCoversMetaFields(t *testing.T) {
	typ := reflect.TypeFor[Meta]()
	for i := 0; i < typ.NumField(); i++ {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if !schemaTopKeys()[name] {
			t.Errorf("meta.schema.json has no property %q", name)
		}
	}
}

func TestValidateMetaErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"not json", `{`, "not valid JSON"},
		{"missing required", `{"buildid":"a","name":"n","ostree-timestamp":"2026-11-22T10:00:00Z","ostree-version":"1"}`, `meta.json invalid at "": missing property 'ostree-commit'`},
		{"unknown key", `{"buildid":"a","name":"n","ostree-commit":"` + hex64("c") + `","ostree-timestamp":"2026-11-22T10:00:00Z","ostree-version":"1","bogus":1}`, `additional properties 'bogus' not allowed`},
		{"bad timestamp", `{"buildid":"a","name":"n","ostree-commit":"` + hex64("c") + `","ostree-timestamp":"yesterday","ostree-version":"1"}`, `at "/ostree-timestamp"`},
		{"build id", `{"buildid":"a..b","name":"n","ostree-commit":"` + hex64("c") + `","ostree-timestamp":"2026-11-22T10:00:00Z","ostree-version":"1"}`, `at "/buildid"`},
		{"pkgdiff kind", `{"buildid":"a","name":"n","ostree-commit":"` + hex64("c") + `","ostree-timestamp":"2026-11-22T10:00:00Z","ostree-version":"1","pkgdiff":[["k",9,{}]]}`, `at "/pkgdiff/0/1"`},
		{"config-dirty bool", `{"buildid":"a","name":"n","ostree-commit":"` + hex64("c") + `","ostree-timestamp":"2026-11-22T10:00:00Z","ostree-version":"1","coreos-assembler.config-dirty":true}`, `at "/coreos-assembler.config-dirty"`},
	} {
		err := ValidateMeta([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want one line containing %s", tc.name, err, tc.want)
		}
	}
}

func TestSchemaIsDraft07AndOurs(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(MetaSchema(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["$schema"] != "http://json-schema.org/draft-07/schema#" || doc["additionalProperties"] != false {
		t.Errorf("$schema = %v, additionalProperties = %v", doc["$schema"], doc["additionalProperties"])
	}
	art := doc["definitions"].(map[string]any)["artifact"].(map[string]any)
	if art["additionalProperties"] != false {
		t.Error("artifact allows additional properties")
	}
}

// ValidBuildID and the schema's build-id pattern must agree.
func TestSchemaBuildIDMatchesValidBuildID(t *testing.T) {
	for _, id := range []string{"12.20261122.dev.3", "a+b", "a..b", "latest", ".x", "a/b", strings.Repeat("z", 129)} {
		m := realisticMeta("x")
		m.BuildID = id
		data, _ := m.Dump()
		schemaOK := ValidateMeta(data) == nil
		if goOK := ValidBuildID(id) == nil; goOK != schemaOK {
			t.Errorf("%q: ValidBuildID ok=%v, schema ok=%v", id, goOK, schemaOK)
		}
	}
}
