package blueprint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// MaxSize caps a blueprint's text; the service caps request bodies anyway,
// this keeps the parser safe on its own.
const MaxSize = 1 << 20

// ParseTOML parses a blueprint in TOML, the form users push, and validates
// it. Errors are *Error values naming the key and, where it can be found,
// its line.
func ParseTOML(data []byte) (*Blueprint, error) {
	if len(data) > MaxSize {
		return nil, invalid("", "blueprint is larger than %d bytes", MaxSize)
	}
	var tree map[string]any
	if _, err := toml.Decode(string(data), &tree); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{Kind: ErrInvalid, Line: pe.Position.Line, Key: pe.LastKey, Msg: "TOML: " + pe.Message}
		}
		return nil, invalid("", "TOML: %v", err)
	}
	return build(tree, "toml", tomlLines(data))
}

// ParseJSON parses a blueprint in JSON, the form the API returns, and
// validates it. Duplicate keys are errors.
func ParseJSON(data []byte) (*Blueprint, error) {
	if len(data) > MaxSize {
		return nil, invalid("", "blueprint is larger than %d bytes", MaxSize)
	}
	r := &jsonReader{dec: json.NewDecoder(bytes.NewReader(data)), nl: newlines(data), lines: map[string]int{}}
	r.dec.UseNumber()
	v, err := r.value("")
	if err != nil {
		return nil, err
	}
	if _, err := r.dec.Token(); err != io.EOF {
		return nil, &Error{Kind: ErrInvalid, Line: r.line(), Msg: "JSON: data after the blueprint object"}
	}
	tree, ok := v.(map[string]any)
	if !ok {
		return nil, &Error{Kind: ErrInvalid, Line: 1, Msg: "JSON: a blueprint is an object"}
	}
	return build(tree, "json", r.lines)
}

// build turns a generic tree into a Blueprint, strictly, then validates it.
// lines maps key paths to lines for error messages.
func build(tree map[string]any, format string, lines map[string]int) (*Blueprint, error) {
	b := &Blueprint{}
	d := &treeDecoder{format: format}
	err := d.decode(tree, reflect.ValueOf(b).Elem(), "")
	if err == nil {
		err = b.Validate()
	}
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Line == 0 {
			e.Line = lookupLine(lines, e.Key)
		}
		return nil, err
	}
	b.normalize()
	return b, nil
}

// lookupLine finds the line of key, or of the nearest enclosing key known.
func lookupLine(lines map[string]int, key string) int {
	for key != "" {
		if l, ok := lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

var sizeType = reflect.TypeOf(Size(0))

// treeDecoder fills Go values from the generic trees the TOML and JSON
// readers produce, matching keys exactly against the format's struct tags.
// It exists so that both formats get the same strictness and the same
// messages, naming the key path.
type treeDecoder struct {
	format string
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindOf(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64, json.Number:
		return "a number"
	case float64:
		return "a float"
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

func (d *treeDecoder) decode(v any, rv reflect.Value, path string) error {
	if v == nil {
		// JSON null: the key is treated as absent.
		return nil
	}
	if rv.Type() == sizeType {
		n, err := sizeValue(v)
		if err != nil {
			return invalid(path, "%v", err)
		}
		rv.SetUint(uint64(n))
		return nil
	}
	switch rv.Kind() {
	case reflect.Interface:
		rv.Set(reflect.ValueOf(v))
		return nil
	case reflect.Pointer:
		nv := reflect.New(rv.Type().Elem())
		if err := d.decode(v, nv.Elem(), path); err != nil {
			return err
		}
		rv.Set(nv)
		return nil
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return invalid(path, "must be a table, not %s", kindOf(v))
		}
		fields := map[string]int{}
		t := rv.Type()
		for i := 0; i < t.NumField(); i++ {
			if name := tagName(t.Field(i), d.format); name != "" {
				fields[name] = i
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			i, ok := fields[k]
			if !ok {
				return invalid(join(path, k), "unknown key")
			}
			if err := d.decode(m[k], rv.Field(i), join(path, k)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		var items []any
		switch s := v.(type) {
		case []any:
			items = s
		case []map[string]any:
			for _, m := range s {
				items = append(items, m)
			}
		default:
			return invalid(path, "must be an array, not %s", kindOf(v))
		}
		out := reflect.MakeSlice(rv.Type(), len(items), len(items))
		for i, item := range items {
			if item == nil {
				return invalid(fmt.Sprintf("%s[%d]", path, i), "must not be null")
			}
			if err := d.decode(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		rv.Set(out)
		return nil
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return invalid(path, "must be a string, not %s", kindOf(v))
		}
		rv.SetString(s)
		return nil
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return invalid(path, "must be true or false, not %s", kindOf(v))
		}
		rv.SetBool(b)
		return nil
	case reflect.Int64:
		n, ok := intValue(v)
		if !ok {
			return invalid(path, "must be an integer, not %s", kindOf(v))
		}
		rv.SetInt(n)
		return nil
	}
	return invalid(path, "internal error: no decoder for %s", rv.Type())
}

func intValue(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case json.Number:
		i, err := strconv.ParseInt(n.String(), 10, 64)
		return i, err == nil
	}
	return 0, false
}

// sizeValue reads a size given as a number of bytes or as a string.
func sizeValue(v any) (Size, error) {
	if s, ok := v.(string); ok {
		return ParseSize(s)
	}
	n, ok := intValue(v)
	if !ok {
		return 0, fmt.Errorf("must be a number of bytes or a string such as \"4 GiB\", not %s", kindOf(v))
	}
	if n < 0 {
		return 0, fmt.Errorf("must not be negative")
	}
	return Size(n), nil
}

// jsonReader builds the generic tree from JSON tokens, so that duplicate
// keys are found and every key path gets its line.
type jsonReader struct {
	dec   *json.Decoder
	nl    []int
	lines map[string]int
}

func newlines(data []byte) []int {
	var nl []int
	for i, c := range data {
		if c == '\n' {
			nl = append(nl, i)
		}
	}
	return nl
}

// line is the line of the decoder's current offset.
func (r *jsonReader) line() int {
	off := int(r.dec.InputOffset())
	return sort.SearchInts(r.nl, off) + 1
}

func (r *jsonReader) syntax(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &Error{Kind: ErrInvalid, Line: sort.SearchInts(r.nl, int(se.Offset)) + 1, Msg: "JSON: " + se.Error()}
	}
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{Kind: ErrInvalid, Line: len(r.nl) + 1, Msg: "JSON: unexpected end of input"}
	}
	return &Error{Kind: ErrInvalid, Line: r.line(), Msg: "JSON: " + err.Error()}
}

func (r *jsonReader) value(path string) (any, error) {
	tok, err := r.dec.Token()
	if err != nil {
		return nil, r.syntax(err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for r.dec.More() {
				kt, err := r.dec.Token()
				if err != nil {
					return nil, r.syntax(err)
				}
				k := kt.(string)
				kp := join(path, k)
				if _, dup := m[k]; dup {
					return nil, &Error{Kind: ErrInvalid, Line: r.line(), Key: kp, Msg: "key is given twice"}
				}
				r.lines[kp] = r.line()
				v, err := r.value(kp)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if _, err := r.dec.Token(); err != nil {
				return nil, r.syntax(err)
			}
			return m, nil
		case '[':
			a := []any{}
			for i := 0; r.dec.More(); i++ {
				ip := fmt.Sprintf("%s[%d]", path, i)
				r.lines[ip] = r.line()
				v, err := r.value(ip)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := r.dec.Token(); err != nil {
				return nil, r.syntax(err)
			}
			return a, nil
		}
	case json.Number:
		if f, err := t.Float64(); err != nil || math.IsInf(f, 0) {
			return nil, &Error{Kind: ErrInvalid, Line: r.line(), Key: path, Msg: "number out of range"}
		}
	}
	return tok, nil
}

// tomlLines maps key paths (as the decoder names them, with array indices)
// to the line that defines them. TOML's parser keeps key positions to
// itself, so this reads the text again, line by line: it understands table
// and array-of-table headers, dotted and quoted keys; keys inside inline
// tables get the line of the key holding the inline table.
func tomlLines(data []byte) map[string]int {
	lines := map[string]int{}
	counts := map[string]int{} // array-of-tables path (unindexed) -> count
	arrays := map[string]bool{}
	// indexed turns an unindexed key path into the decoder's form by
	// putting the current element index after each array-of-tables part.
	indexed := func(parts []string) string {
		var b strings.Builder
		for i, p := range parts {
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(p)
			if un := strings.Join(parts[:i+1], "."); arrays[un] {
				fmt.Fprintf(&b, "[%d]", counts[un]-1)
			}
		}
		return b.String()
	}
	var table []string
	for n, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(stripComment(raw))
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[[") && strings.HasSuffix(line, "]]") {
			table = splitKey(line[2 : len(line)-2])
			un := strings.Join(table, ".")
			arrays[un] = true
			counts[un]++
			// a new element starts the arrays below it afresh
			for k := range counts {
				if strings.HasPrefix(k, un+".") {
					counts[k] = 0
				}
			}
			lines[indexed(table)] = n + 1
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			table = splitKey(line[1 : len(line)-1])
			lines[indexed(table)] = n + 1
			continue
		}
		eq := indexOutsideQuotes(line, '=')
		if eq <= 0 {
			continue
		}
		key := splitKey(line[:eq])
		full := append(append([]string{}, table...), key...)
		lines[indexed(full)] = n + 1
	}
	return lines
}

// stripComment removes a # comment that is not inside a string.
func stripComment(s string) string {
	if i := indexOutsideQuotes(s, '#'); i >= 0 {
		return s[:i]
	}
	return s
}

func indexOutsideQuotes(s string, c byte) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		switch {
		case quote != 0:
			if s[i] == '\\' && quote == '"' {
				i++
			} else if s[i] == quote {
				quote = 0
			}
		case s[i] == '"' || s[i] == '\'':
			quote = s[i]
		case s[i] == c:
			return i
		}
	}
	return -1
}

// splitKey splits a dotted TOML key into its parts, unquoting them.
func splitKey(s string) []string {
	var parts []string
	for {
		i := indexOutsideQuotes(s, '.')
		part := s
		if i >= 0 {
			part = s[:i]
		}
		part = strings.TrimSpace(part)
		if len(part) >= 2 && (part[0] == '"' || part[0] == '\'') && part[len(part)-1] == part[0] {
			if part[0] == '"' {
				if u, err := strconv.Unquote(part); err == nil {
					part = u
				} else {
					part = part[1 : len(part)-1]
				}
			} else {
				part = part[1 : len(part)-1]
			}
		}
		parts = append(parts, part)
		if i < 0 {
			return parts
		}
		s = s[i+1:]
	}
}
