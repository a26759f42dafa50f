package images

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// ManifestVersion is the only manifest format version understood.
const ManifestVersion = "2"

// Manifest is a set of pipelines, serialised as JSON.
type Manifest struct {
	Version   string     `json:"version"`
	Pipelines []Pipeline `json:"pipelines"`
}

// Pipeline is an ordered list of stages building one tree.
type Pipeline struct {
	Name   string  `json:"name"`
	Stages []Stage `json:"stages"`
}

// Stage is one step. Inputs map an input name the stage type defines
// ("tree", "image") to "name:<pipeline>".
type Stage struct {
	Type       string            `json:"type"`
	Options    json.RawMessage   `json:"options,omitempty"`
	Inputs     map[string]string `json:"inputs,omitempty"`
	Checkpoint bool              `json:"checkpoint,omitempty"`
}

// LoadManifest reads and validates a manifest file.
func LoadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := ParseManifest(data)
	if err != nil {
		var de decodeError
		if errors.As(err, &de) {
			return nil, fileutil.JSONFileError(path, data, de.err)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// decodeError is a JSON syntax or type error; LoadManifest turns its
// offset into a line and column of the file.
type decodeError struct{ err error }

func (e decodeError) Error() string { return "manifest: " + e.err.Error() }

// ParseManifest decodes and validates a manifest; unknown keys are errors.
func ParseManifest(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, decodeError{err}
	}
	if dec.More() {
		return nil, fmt.Errorf("manifest: trailing data after the JSON object")
	}
	return &m, m.Validate()
}

// Marshal renders the manifest as indented JSON.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Pipeline returns the named pipeline.
func (m *Manifest) Pipeline(name string) *Pipeline {
	for i := range m.Pipelines {
		if m.Pipelines[i].Name == name {
			return &m.Pipelines[i]
		}
	}
	return nil
}

// Validate checks the structure, every stage's options, and that inputs
// name earlier pipelines (so there are no cycles).
func (m *Manifest) Validate() error {
	if m.Version != ManifestVersion {
		return fmt.Errorf("manifest: version: want %q, got %q", ManifestVersion, m.Version)
	}
	if len(m.Pipelines) == 0 {
		return fmt.Errorf("manifest: pipelines: empty")
	}
	seen := map[string]bool{}
	for pi, p := range m.Pipelines {
		where := fmt.Sprintf("pipelines[%d]", pi)
		if p.Name == "" || strings.ContainsAny(p.Name, "/:\x00 ") {
			return fmt.Errorf("manifest: %s.name: %q is not a valid pipeline name", where, p.Name)
		}
		if seen[p.Name] {
			return fmt.Errorf("manifest: %s.name: duplicate pipeline %q", where, p.Name)
		}
		if len(p.Stages) == 0 {
			return fmt.Errorf("manifest: pipeline %s: no stages", p.Name)
		}
		for si, s := range p.Stages {
			where := fmt.Sprintf("pipeline %s stage %d (%s)", p.Name, si, s.Type)
			st, err := newStage(s.Type)
			if err != nil {
				return fmt.Errorf("manifest: %s: %w", where, err)
			}
			if err := decodeOptions(s.Options, st); err != nil {
				return fmt.Errorf("manifest: %s: options: %w", where, err)
			}
			want := st.Inputs()
			for name, ref := range s.Inputs {
				if !slices.Contains(want, name) {
					return fmt.Errorf("manifest: %s: unknown input %q (takes %v)", where, name, want)
				}
				target, ok := strings.CutPrefix(ref, "name:")
				if !ok || !seen[target] {
					return fmt.Errorf("manifest: %s: input %s: %q must be name:<an earlier pipeline>", where, name, ref)
				}
			}
			for _, name := range want {
				if _, ok := s.Inputs[name]; !ok {
					return fmt.Errorf("manifest: %s: missing input %q", where, name)
				}
			}
		}
		seen[p.Name] = true
	}
	return nil
}

// canonicalJSON re-encodes JSON with sorted keys and no whitespace, so the
// same options in another key order or layout hash the same.
func canonicalJSON(raw json.RawMessage) ([]byte, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return []byte("{}"), nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// IDs computes the ID of every stage of every pipeline: ids[pipeline][i].
func (m *Manifest) IDs() (map[string][]string, error) {
	ids := map[string][]string{}
	for _, p := range m.Pipelines {
		prev := ""
		for _, s := range p.Stages {
			opts, err := canonicalJSON(s.Options)
			if err != nil {
				return nil, fmt.Errorf("pipeline %s stage %s: %v", p.Name, s.Type, err)
			}
			h := sha256.New()
			fmt.Fprintf(h, "type %s\noptions %s\nprev %s\n", s.Type, opts, prev)
			names := make([]string, 0, len(s.Inputs))
			for n := range s.Inputs {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				target := strings.TrimPrefix(s.Inputs[n], "name:")
				tids := ids[target]
				if len(tids) == 0 {
					return nil, fmt.Errorf("pipeline %s: input %s refers to unknown pipeline %s", p.Name, n, target)
				}
				fmt.Fprintf(h, "input %s %s\n", n, tids[len(tids)-1])
			}
			prev = hex.EncodeToString(h.Sum(nil))
			ids[p.Name] = append(ids[p.Name], prev)
		}
	}
	return ids, nil
}

// needed returns the pipelines the exports depend on, in manifest order.
func (m *Manifest) needed(exports []string) ([]*Pipeline, error) {
	want := map[string]bool{}
	var visit func(name string) error
	visit = func(name string) error {
		if want[name] {
			return nil
		}
		p := m.Pipeline(name)
		if p == nil {
			return fmt.Errorf("no pipeline named %q to export", name)
		}
		want[name] = true
		for _, s := range p.Stages {
			for _, ref := range s.Inputs {
				if err := visit(strings.TrimPrefix(ref, "name:")); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, e := range exports {
		if err := visit(e); err != nil {
			return nil, err
		}
	}
	var out []*Pipeline
	for i := range m.Pipelines {
		if want[m.Pipelines[i].Name] {
			out = append(out, &m.Pipelines[i])
		}
	}
	return out, nil
}
