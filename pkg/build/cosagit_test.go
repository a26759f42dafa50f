package build

import (
	"bytes"
	"testing"
)

// The record of which cosa made a build must pass both schemas: ours and
// coreos-assembler's (whose git object needs commit and origin).
func TestMetaCosaGitValidates(t *testing.T) {
	m := realisticMeta("12.20261122.dev.1")
	m.CosaSource = "cosa v1.4.0 go1.25.4"
	m.CosaGit = &GitSource{Commit: "742edc307e58f35824d906958b6493510e12b593", Origin: "https://github.com/cosa-build/cosa", Dirty: "false"}
	data, err := m.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"coreos-assembler.container-image-git": {`)) || !bytes.Contains(data, []byte(`"coreos-assembler.code-source": "cosa v1.4.0 go1.25.4"`)) {
		t.Fatalf("key missing:\n%s", data)
	}
	if err := ValidateMeta(data); err != nil {
		t.Errorf("our schema: %v", err)
	}
	s := cosaMetaSchema(t)
	if err := ValidateWith(s, data); err != nil {
		t.Errorf("coreos-assembler's schema: %v\n%s", err, data)
	}
	// Without an origin the object is invalid there: the check is real.
	m.CosaGit.Origin = ""
	bad, _ := m.Dump()
	if err := ValidateWith(s, bad); err == nil {
		t.Error("a git object without origin passed coreos-assembler's schema")
	}
	// And it survives a read.
	var back Meta
	if err := back.UnmarshalJSON(data); err != nil || back.CosaGit == nil || back.CosaGit.Commit != "742edc307e58f35824d906958b6493510e12b593" || back.CosaSource != m.CosaSource {
		t.Errorf("round trip: %q %+v, %v", back.CosaSource, back.CosaGit, err)
	}
}
