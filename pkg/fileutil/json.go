package fileutil

import (
	"bytes"
	"encoding/json"
)

// MarshalNoEscape is json.Marshal without turning <, > and & into \u003c
// and friends, so summaries and URLs stay readable in the files cosa
// writes and the documents it hashes.
func MarshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
