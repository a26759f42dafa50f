package build

import (
	"encoding/json"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// decodeJSONFile unmarshals data read from path into v and, on failure,
// names the file and turns encoding/json's byte offset into a line and
// column, which is what a person editing the file needs.
func decodeJSONFile(path string, data []byte, v any) error {
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	return fileutil.JSONFileError(path, data, err)
}
