package fileutil

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// JSONFileError describes err, an encoding/json error decoding data read
// from path, on one line as "PATH:LINE:COL: what is wrong" (just "PATH:
// err" when err carries no position).
func JSONFileError(path string, data []byte, err error) error {
	var offset int64 = -1
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		offset = syn.Offset
	case errors.As(err, &typ):
		offset = typ.Offset
	case errors.Is(err, io.ErrUnexpectedEOF):
		// What json.Decoder returns for a truncated document.
		offset = int64(len(data))
		err = errors.New("unexpected end of JSON input")
	}
	if offset < 0 || offset > int64(len(data)) {
		return fmt.Errorf("%s: %w", path, err)
	}
	line, col := lineCol(data, int(offset))
	if typ != nil {
		// encoding/json names Go types ("Go struct field
		// BuildsIndex.builds of type []build.BuildEntry"); say what the
		// file should hold instead.
		msg := "expected " + jsonKind(typ.Type) + ", got " + article(typ.Value)
		if typ.Field != "" {
			msg = typ.Field + ": " + msg
		}
		return fmt.Errorf("%s:%d:%d: %s", path, line, col, msg)
	}
	return fmt.Errorf("%s:%d:%d: %w", path, line, col, err)
}

// jsonKind names the JSON value a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "another value"
}

// article turns encoding/json's description of a value ("object",
// "number 1.5", "array") into "an object", "the number 1.5", "an array".
func article(v string) string {
	switch {
	case v == "":
		return "another value"
	case strings.Contains(v, " "):
		return "the " + v
	case strings.ContainsAny(v[:1], "aeiou"):
		return "an " + v
	}
	return "a " + v
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
