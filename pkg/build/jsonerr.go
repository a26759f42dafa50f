package build

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// decodeJSONFile unmarshals data read from path into v and, on failure,
// names the file and turns encoding/json's byte offset into a line and
// column, which is what a person editing the file needs.
func decodeJSONFile(path string, data []byte, v any) error {
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	var offset int64 = -1
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		offset = syn.Offset
	case errors.As(err, &typ):
		offset = typ.Offset
	}
	if offset < 0 || offset > int64(len(data)) {
		return fmt.Errorf("%s: %w", path, err)
	}
	line, col := lineCol(data, int(offset))
	return fmt.Errorf("%s:%d:%d: %w", path, line, col, err)
}

// lineCol converts a byte offset into a 1-based line and column.
func lineCol(data []byte, offset int) (line, col int) {
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = offset - (bytes.LastIndexByte(before, '\n') + 1)
	if col == 0 {
		col = 1
	}
	return line, col
}
