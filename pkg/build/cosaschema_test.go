package build

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// cosaMetaSchemaPath finds coreos-assembler's published meta schema, which
// lives outside this module (the repo root's ../shared/schema): we test
// against it but do not vendor it. COSA_META_SCHEMA overrides.
func cosaMetaSchemaPath(t *testing.T) string {
	if p := os.Getenv("COSA_META_SCHEMA"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "schema", "cosa-meta-v1.json")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// cosaMetaSchema compiles coreos-assembler's meta schema; the test is
// skipped where it is not installed.
func cosaMetaSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	path := cosaMetaSchemaPath(t)
	doc, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Skipf("coreos-assembler meta schema not found at %s; set COSA_META_SCHEMA to its path to run this test", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	// That schema gives many subschemas fragment-only "$id"s such as
	// "#/artifact/path". Registering the document under an absolute URL
	// gives them a base to resolve against; jsonschema/v6 then compiles
	// it unchanged.
	s, err := CompileSchema("file:///coreos-assembler/cosa-meta-v1.json", doc)
	if err != nil {
		t.Fatalf("compiling %s: %v", path, err)
	}
	return s
}

// Tools written for coreos-assembler builds must be able to read ours, so
// what we write has to pass coreos-assembler's own schema too.
func TestMetaValidatesAgainstCoreOSAssemblerSchema(t *testing.T) {
	s := cosaMetaSchema(t)
	m := realisticMeta("12.20261122.dev.1")
	m.Extra = map[string]json.RawMessage{"coreos-assembler.code-source": json.RawMessage(`"container"`)}
	data, err := m.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateWith(s, data); err != nil {
		t.Errorf("our meta.json fails coreos-assembler's schema: %v\n%s", err, data)
	}
	// A meta after `cosa meta --set` edits must pass too.
	if err := m.Set("coreos-assembler.config-dirty", "true"); err != nil {
		t.Fatal(err)
	}
	data, _ = m.Dump()
	if err := ValidateWith(s, data); err != nil {
		t.Errorf("after Set: %v", err)
	}
	// And the schema really is checking something.
	var generic map[string]any
	json.Unmarshal(data, &generic)
	generic["coreos-assembler.config-dirty"] = true
	bad, _ := json.Marshal(generic)
	if ValidateWith(s, bad) == nil {
		t.Error("coreos-assembler schema accepted a boolean config-dirty")
	}
}
