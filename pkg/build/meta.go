package build

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"sync"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// Meta is builds/<id>/<arch>/meta.json. Typed fields cover the keys cosa
// itself writes; anything else found in a file (keys written by
// coreos-assembler or later versions of cosa) is kept verbatim in Extra so
// that reading and writing a meta.json never drops information.
//
// The ostree-n-* counters are pointers because 0 is a real value (no cache
// hits) that must not vanish through omitempty.
type Meta struct {
	BuildID               string `json:"buildid"`
	Name                  string `json:"name"`
	Ref                   string `json:"ref,omitempty"`
	Summary               string `json:"summary,omitempty"`
	OSTreeCommit          string `json:"ostree-commit"`
	OSTreeContentChecksum string `json:"ostree-content-checksum,omitempty"`
	OSTreeTimestamp       string `json:"ostree-timestamp"`
	OSTreeVersion         string `json:"ostree-version"`

	OSTreeNMetadataTotal      *int64 `json:"ostree-n-metadata-total,omitempty"`
	OSTreeNMetadataWritten    *int64 `json:"ostree-n-metadata-written,omitempty"`
	OSTreeNContentTotal       *int64 `json:"ostree-n-content-total,omitempty"`
	OSTreeNContentWritten     *int64 `json:"ostree-n-content-written,omitempty"`
	OSTreeNCacheHits          *int64 `json:"ostree-n-cache-hits,omitempty"`
	OSTreeContentBytesWritten *int64 `json:"ostree-content-bytes-written,omitempty"`

	BaseArch       string `json:"coreos-assembler.basearch,omitempty"`
	BuildTimestamp string `json:"coreos-assembler.build-timestamp,omitempty"`
	ConfigGitRev   string `json:"coreos-assembler.config-gitrev,omitempty"`
	// ConfigDirty is "true" or "false": coreos-assembler's schema types it
	// as a string, and its readers compare against the string.
	ConfigDirty        string `json:"coreos-assembler.config-dirty,omitempty"`
	ImageInputChecksum string `json:"coreos-assembler.image-input-checksum,omitempty"`
	RpmOstreeInputHash string `json:"rpm-ostree-inputhash,omitempty"`
	// CosaSource names the cosa that made the build ("cosa v1.4.0
	// go1.25.4"), CosaGit the commit it was built from, when known.
	CosaSource string     `json:"coreos-assembler.code-source,omitempty"`
	CosaGit    *GitSource `json:"coreos-assembler.container-image-git,omitempty"`

	PkgDiff []PkgDiffEntry      `json:"pkgdiff,omitempty"`
	Images  map[string]Artifact `json:"images,omitempty"`
	AMIs    []AMI               `json:"amis,omitempty"`
	S3      *S3                 `json:"s3,omitempty"`

	// Extra holds the keys not modelled above, as found on disk.
	Extra map[string]json.RawMessage `json:"-"`
}

// Artifact is one file of a build, e.g. images["qemu"]. Path is relative to
// the build's arch directory. Fields are in key order so output is sorted.
type Artifact struct {
	Path               string `json:"path"`
	Sha256             string `json:"sha256"`
	Size               int64  `json:"size"`
	SkipCompression    bool   `json:"skip-compression,omitempty"`
	UncompressedSha256 string `json:"uncompressed-sha256,omitempty"`
	UncompressedSize   int64  `json:"uncompressed-size,omitempty"`
}

// GitSource is coreos-assembler's git object: a commit and where it lives.
// Dirty is "true" or "false", a string as in that schema.
type GitSource struct {
	Branch string `json:"branch,omitempty"`
	Commit string `json:"commit"`
	Dirty  string `json:"dirty,omitempty"`
	Origin string `json:"origin"`
}

// AMI is an uploaded AWS image; Name is the region.
type AMI struct {
	HVM      string `json:"hvm"`
	Name     string `json:"name"`
	Snapshot string `json:"snapshot"`
}

// S3 says where the build was uploaded.
type S3 struct {
	Bucket    string `json:"bucket,omitempty"`
	Key       string `json:"key,omitempty"`
	PublicURL string `json:"public-url,omitempty"`
}

// Int64 returns a pointer to v, for the optional counters in Meta.
func Int64(v int64) *int64 { return &v }

// metaNoMethods has Meta's fields but not its methods, so encoding/json
// handles the typed part without recursing into our Marshal/UnmarshalJSON.
type metaNoMethods Meta

// metaKeys is the set of JSON keys that Meta models as typed fields.
var metaKeys = sync.OnceValue(func() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeFor[Meta]()
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
})

// UnmarshalJSON fills the typed fields and keeps every other key in Extra.
func (m *Meta) UnmarshalJSON(data []byte) error {
	var typed metaNoMethods
	if err := json.Unmarshal(data, &typed); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	for k := range all {
		if metaKeys()[k] {
			delete(all, k)
		}
	}
	typed.Extra = nil
	if len(all) > 0 {
		typed.Extra = all
	}
	*m = Meta(typed)
	return nil
}

// MarshalJSON writes the typed fields and Extra as one object with sorted
// keys. A typed field wins over an Extra entry of the same name.
func (m Meta) MarshalJSON() ([]byte, error) {
	typed, err := fileutil.MarshalNoEscape(metaNoMethods(m))
	if err != nil {
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(typed, &all); err != nil {
		return nil, err
	}
	for k, v := range m.Extra {
		if _, ok := all[k]; !ok && !metaKeys()[k] {
			all[k] = v
		}
	}
	return fileutil.MarshalNoEscape(all) // maps marshal with sorted keys
}

// Dump renders m the way meta.json is stored: keys sorted at every level,
// 2-space indent, trailing newline.
func (m *Meta) Dump() ([]byte, error) {
	raw, err := fileutil.MarshalNoEscape(m)
	if err != nil {
		return nil, err
	}
	// Re-decode generically so that objects kept verbatim in Extra get
	// their keys sorted too; json.Number keeps numbers exactly as written.
	tree, err := decodeGeneric(raw)
	if err != nil {
		return nil, err
	}
	return encodeIndented(tree)
}

func decodeGeneric(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func encodeIndented(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil { // Encode adds the trailing newline
		return nil, err
	}
	return buf.Bytes(), nil
}
