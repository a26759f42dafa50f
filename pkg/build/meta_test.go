package build

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestMetaDumpValidatesAndIsSorted(t *testing.T) {
	m := realisticMeta("12.20261122.dev.1")
	m.Extra = map[string]json.RawMessage{
		"coreos-assembler.code-source": json.RawMessage(`"container"`),
		"oscontainer":                  json.RawMessage(`{"image":"quay.io/x/y","digest":"sha256:00"}`),
	}
	data, err := m.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateMeta(data); err != nil {
		t.Fatalf("our own output does not validate: %v\n%s", err, data)
	}
	if !bytes.HasSuffix(data, []byte("}\n")) || !bytes.Contains(data, []byte("\n  \"amis\": [")) {
		t.Errorf("want 2-space indent and trailing newline:\n%s", data)
	}
	// Extra objects get sorted keys too.
	if !bytes.Contains(data, []byte(`"digest": "sha256:00",`+"\n"+`    "image"`)) {
		t.Errorf("oscontainer keys not sorted:\n%s", data)
	}
	var keys []string
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			t.Errorf("top-level keys not sorted: %q before %q", keys[i-1], keys[i])
		}
	}
	// pkgdiff in array form, zero counters kept.
	for _, want := range []string{
		`"kernel",` + "\n      3,",
		`"previous": {` + "\n          \"version\": \"6.11.3-300.fc41\"",
		`"ostree-n-cache-hits": 0`,
		`"coreos-assembler.config-dirty": "false"`,
	} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, data)
		}
	}
}

func TestMetaRoundTripKeepsUnknownKeys(t *testing.T) {
	m := realisticMeta("12.20261122.dev.1")
	data, _ := m.Dump()
	// Add keys Meta does not model, the way another tool would.
	var generic map[string]any
	json.Unmarshal(data, &generic)
	generic["coreos-assembler.meta-stamp"] = 1732269913123456789
	generic["oscontainer"] = map[string]any{"image": "quay.io/a/b", "digest": "sha256:1"}
	generic["pkgdiff"].([]any)[0].([]any)[2].(map[string]any)["PreviousPackage"] = []any{"kernel", "6.11.3"}
	withExtra, _ := json.Marshal(generic)

	var back Meta
	if err := json.Unmarshal(withExtra, &back); err != nil {
		t.Fatal(err)
	}
	if _, ok := back.Extra["oscontainer"]; !ok || len(back.Extra) != 2 {
		t.Errorf("Extra = %v", back.Extra)
	}
	if back.PkgDiff[0].Extra["PreviousPackage"] == nil {
		t.Errorf("pkgdiff details extra lost: %+v", back.PkgDiff[0])
	}
	out, err := back.Dump()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"coreos-assembler.meta-stamp": 1732269913123456789`, `"image": "quay.io/a/b"`, `"PreviousPackage": [`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rewritten meta lacks %s", want)
		}
	}
	// Modelled fields survive unchanged.
	back.Extra = nil
	back.PkgDiff[0].Extra = nil
	if !reflect.DeepEqual(&back, m) {
		t.Errorf("typed fields changed in round trip:\n got %+v\nwant %+v", back, *m)
	}
}

func TestWriteReadMeta(t *testing.T) {
	d, _ := Open(t.TempDir())
	id := "12.20261122.dev.1"
	m := realisticMeta(id)
	if err := d.WriteMeta(id, "x86_64", m); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(d.MetaPath(id, "x86_64"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("meta.json stat = %v, %v", fi, err)
	}
	back, err := d.ReadMeta(id, "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Errorf("read back differs")
	}

	bad := realisticMeta(id)
	bad.OSTreeCommit = "abc"
	if err := d.WriteMeta(id, "x86_64", bad); err == nil || !strings.Contains(err.Error(), `"/ostree-commit"`) {
		t.Errorf("WriteMeta(bad commit) = %v", err)
	}
	if err := d.WriteMeta("other", "x86_64", m); err == nil {
		t.Error("WriteMeta accepted a buildid that does not match the directory")
	}
	if err := d.WriteMeta(id, "aarch64", m); err == nil {
		t.Error("WriteMeta accepted a basearch that does not match the directory")
	}
	if _, err := d.ReadMeta("../x", "x86_64"); err == nil {
		t.Error("ReadMeta accepted a bad id")
	}
	noImagesOstree := realisticMeta(id)
	delete(noImagesOstree.Images, "ostree")
	if err := d.WriteMeta(id, "x86_64", noImagesOstree); err == nil || !strings.Contains(err.Error(), "ostree") {
		t.Errorf("WriteMeta without images.ostree = %v", err)
	}
}

func TestReadMetaMalformed(t *testing.T) {
	d, _ := Open(t.TempDir())
	os.MkdirAll(d.BuildDir("a", "x86_64"), 0o755)
	os.WriteFile(d.MetaPath("a", "x86_64"), []byte("{\n \"buildid\": \"a\",\n \"pkgdiff\": 7\n}"), 0o644)
	_, err := d.ReadMeta("a", "x86_64")
	if err == nil || !strings.Contains(err.Error(), "meta.json:3:") {
		t.Errorf("error = %v, want file and line 3", err)
	}
}
