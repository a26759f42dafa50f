package blueprint

import (
	"bytes"
	"encoding/json"

	"github.com/BurntSushi/toml"
)

// fillLists is the part of normalize that encoding applies to a copy: the
// lists the API always shows, as [] rather than null.
func fillLists(b *Blueprint) {
	if b.Packages == nil {
		b.Packages = []Package{}
	}
	if b.Modules == nil {
		b.Modules = []Package{}
	}
	if b.EnabledModules == nil {
		b.EnabledModules = []EnabledModule{}
	}
	if b.Groups == nil {
		b.Groups = []Group{}
	}
}

// MarshalJSON writes the blueprint as the API returns it.
func (b Blueprint) MarshalJSON() ([]byte, error) {
	type plain Blueprint
	fillLists(&b)
	return json.Marshal(plain(b))
}

// JSON is the blueprint as the API's JSON routes return it.
func (b *Blueprint) JSON() ([]byte, error) {
	return json.Marshal(b)
}

// TOML is the blueprint as the API's format=toml routes return it (and as
// the store keeps it).
func (b *Blueprint) TOML() ([]byte, error) {
	c := *b
	fillLists(&c)
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.Indent = ""
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
