package build

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// ErrNoSuchKey is wrapped by Meta.Get when the path does not exist.
var ErrNoSuchKey = errors.New("no such key")

// Get returns the value at a dotted path such as "images.ostree.sha256" or
// "amis.0.hvm", for the `cosa meta` command. Because meta.json keys
// themselves contain dots ("coreos-assembler.basearch"), each step takes the
// longest run of path segments that names an existing key. The result is
// what encoding/json produces for an `any` with UseNumber: map[string]any,
// []any, string, json.Number, bool or nil.
func (m *Meta) Get(key string) (any, error) {
	segs, err := splitKey(key)
	if err != nil {
		return nil, err
	}
	node, err := m.tree()
	if err != nil {
		return nil, err
	}
	for walked := 0; walked < len(segs); {
		switch x := node.(type) {
		case map[string]any:
			n := existingKeyLen(x, segs[walked:])
			if n == 0 {
				return nil, fmt.Errorf("meta key %q: %w", key, ErrNoSuchKey)
			}
			node = x[strings.Join(segs[walked:walked+n], ".")]
			walked += n
		case []any:
			i, err := strconv.Atoi(segs[walked])
			if err != nil || i < 0 || i >= len(x) {
				return nil, fmt.Errorf("meta key %q: %w", key, ErrNoSuchKey)
			}
			node = x[i]
			walked++
		default:
			return nil, fmt.Errorf("meta key %q: %w", key, ErrNoSuchKey)
		}
	}
	return node, nil
}

// Set stores value at a dotted path (see Get), creating objects on the way,
// and fails, leaving m unchanged, if the result does not validate. value is
// taken as JSON when it parses as JSON and as a plain string otherwise;
// when the JSON reading does not validate but the plain string does (e.g.
// "true" for coreos-assembler.config-dirty, or "38" for ostree-version),
// the string is used, because that is what the user meant.
func (m *Meta) Set(key, value string) error {
	segs, err := splitKey(key)
	if err != nil {
		return err
	}
	candidates := []any{value}
	if json.Valid([]byte(value)) {
		if v, err := decodeGeneric([]byte(value)); err == nil {
			candidates = []any{v}
			if _, isString := v.(string); !isString {
				candidates = append(candidates, value)
			}
		}
	}
	var firstErr error
	for _, v := range candidates {
		next, err := m.withValue(segs, v)
		if err == nil {
			*m = *next
			return nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return fmt.Errorf("cannot set %q: %w", key, firstErr)
}

// withValue returns a copy of m with segs set to v, validated.
func (m *Meta) withValue(segs []string, v any) (*Meta, error) {
	tree, err := m.tree()
	if err != nil {
		return nil, err
	}
	tree, err = setPath(tree, segs, v, true)
	if err != nil {
		return nil, err
	}
	data, err := encodeIndented(tree)
	if err != nil {
		return nil, err
	}
	if err := ValidateMeta(data); err != nil {
		return nil, err
	}
	next := &Meta{}
	if err := json.Unmarshal(data, next); err != nil {
		return nil, err
	}
	return next, nil
}

func setPath(node any, segs []string, v any, top bool) (any, error) {
	if len(segs) == 0 {
		return v, nil
	}
	switch x := node.(type) {
	case nil:
		// Creating a missing level: a numeric segment starts a list
		// (e.g. amis.0), anything else an object.
		if segs[0] == "0" {
			return setPath([]any{}, segs, v, top)
		}
		return setPath(map[string]any{}, segs, v, top)
	case map[string]any:
		n := existingKeyLen(x, segs)
		if n == 0 && top {
			n = knownTopKeyLen(segs)
		}
		if n == 0 {
			n = 1
		}
		k := strings.Join(segs[:n], ".")
		child, err := setPath(x[k], segs[n:], v, false)
		if err != nil {
			return nil, err
		}
		x[k] = child
		return x, nil
	case []any:
		i, err := strconv.Atoi(segs[0])
		if err != nil || i < 0 || i > len(x) {
			return nil, fmt.Errorf("index %q out of range for a list of %d", segs[0], len(x))
		}
		if i == len(x) {
			x = append(x, nil)
		}
		child, err := setPath(x[i], segs[1:], v, false)
		if err != nil {
			return nil, err
		}
		x[i] = child
		return x, nil
	default:
		return nil, fmt.Errorf("%q is inside a %T, not an object or list", strings.Join(segs, "."), node)
	}
}

// existingKeyLen returns how many leading segments, joined with dots, form
// the longest key present in obj (0 if none).
func existingKeyLen(obj map[string]any, segs []string) int {
	for n := len(segs); n > 0; n-- {
		if _, ok := obj[strings.Join(segs[:n], ".")]; ok {
			return n
		}
	}
	return 0
}

// knownTopKeyLen is existingKeyLen against the top-level keys our schema
// defines, so that setting an absent "coreos-assembler.config-dirty" creates
// that key rather than an object "coreos-assembler".
func knownTopKeyLen(segs []string) int {
	keys := schemaTopKeys()
	for n := len(segs); n > 0; n-- {
		if keys[strings.Join(segs[:n], ".")] {
			return n
		}
	}
	return 0
}

var schemaTopKeys = sync.OnceValue(func() map[string]bool {
	var doc struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(metaSchemaJSON, &doc); err != nil {
		panic("build: embedded meta.schema.json: " + err.Error())
	}
	keys := make(map[string]bool, len(doc.Properties))
	for k := range doc.Properties {
		keys[k] = true
	}
	return keys
})

func splitKey(key string) ([]string, error) {
	segs := strings.Split(key, ".")
	for _, s := range segs {
		if s == "" {
			return nil, fmt.Errorf("invalid meta key %q: empty path segment", key)
		}
	}
	return segs, nil
}

// tree is m as generic JSON values, the form Get and Set walk.
func (m *Meta) tree() (any, error) {
	data, err := fileutil.MarshalNoEscape(m)
	if err != nil {
		return nil, err
	}
	return decodeGeneric(data)
}
