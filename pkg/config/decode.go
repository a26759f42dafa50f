package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// entry is a key/value node pair seen while decoding. key is nil for the
// document root and for list items.
type entry struct {
	key, val *yaml.Node
}

// decoder walks a YAML node tree against a Go struct, driven by the yaml
// struct tags, and rejects anything the struct does not describe: unknown
// and duplicate keys and values of the wrong type. It records the nodes it
// visited by key path so that the validator can locate problems.
//
// Supported Go types are string, int, []string, []struct, structs and
// map[string]struct. The top-level "include" key additionally accepts a
// single string in place of a list.
type decoder struct {
	l   *loader
	rec map[string]entry
}

var bigIntRE = regexp.MustCompile(`^[-+]?[0-9][0-9_]*$`)

func rvOf(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

// resolve follows alias nodes to the node they refer to.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names the type of a node for messages: "a string", "a sequence".
func describe(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.DocumentNode:
		return "a document"
	}
	switch t := n.ShortTag(); t {
	case "!!null":
		return "null"
	case "!!bool":
		return "a boolean"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a float"
	case "!!str":
		return "a string"
	case "!!timestamp":
		return "a timestamp"
	case "!!binary":
		return "binary data"
	default:
		return "a value tagged " + t
	}
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// note records the file-local key path of n (first one wins, so that for
// nodes shared through aliases the first use is reported).
func (d *decoder) note(n *yaml.Node, path string) {
	o := d.l.origin[n]
	if o == nil {
		o = &origin{}
		d.l.origin[n] = o
	}
	if o.path == "" {
		o.path = path
	}
}

func (d *decoder) fail(n *yaml.Node, path, msg string) error {
	return d.l.errAt(n, path, msg)
}

// decode stores the value of node val (found under key, which may be nil)
// at path into v. A null value leaves v untouched (its default applies).
func (d *decoder) decode(key, val *yaml.Node, v reflect.Value, path string) error {
	val = resolve(val)
	if key != nil {
		d.note(key, path)
	}
	d.note(val, path)
	d.rec[path] = entry{key: key, val: val}
	if isNull(val) {
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		s, err := d.scalarString(val, path)
		if err != nil {
			return err
		}
		v.SetString(s)
	case reflect.Int:
		if val.Kind == yaml.ScalarNode && val.ShortTag() == "!!float" && bigIntRE.MatchString(val.Value) {
			// yaml.v3 resolves integers too large for int64 as floats.
			return d.fail(val, path, fmt.Sprintf("integer %s is out of range", val.Value))
		}
		if val.Kind != yaml.ScalarNode || val.ShortTag() != "!!int" {
			return d.fail(val, path, "expected an integer, got "+describe(val))
		}
		var n int64
		if err := val.Decode(&n); err != nil || int64(int(n)) != n {
			return d.fail(val, path, fmt.Sprintf("integer %s is out of range", val.Value))
		}
		v.SetInt(n)
	case reflect.Slice:
		return d.decodeList(val, v, path)
	case reflect.Struct:
		return d.decodeStruct(val, v, path)
	case reflect.Map:
		return d.decodeMap(val, v, path)
	default:
		panic("config: unsupported field type " + v.Type().String())
	}
	return nil
}

// scalarString accepts scalars that read naturally as text. Integers and
// floats are taken literally ("version-prefix: 2" means "2"); booleans,
// null, timestamps, collections and custom tags are rejected.
func (d *decoder) scalarString(n *yaml.Node, path string) (string, error) {
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!str", "!!int", "!!float":
			return n.Value, nil
		}
	}
	return "", d.fail(n, path, "expected a string, got "+describe(n))
}

func (d *decoder) decodeList(val *yaml.Node, v reflect.Value, path string) error {
	if val.Kind == yaml.ScalarNode && path == "include" {
		s, err := d.scalarString(val, path)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf([]string{s}))
		return nil
	}
	if val.Kind != yaml.SequenceNode {
		want := "a list"
		if path == "include" {
			want = "a string or a list"
		}
		return d.fail(val, path, "expected "+want+", got "+describe(val))
	}
	out := reflect.MakeSlice(v.Type(), 0, len(val.Content))
	for i, it := range val.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		it = resolve(it)
		if v.Type().Elem().Kind() != reflect.String {
			// A list of mappings (repos, users): each item is a struct.
			elem := reflect.New(v.Type().Elem()).Elem()
			if isNull(it) {
				d.note(it, ipath)
				d.rec[ipath] = entry{val: it}
				return d.fail(it, ipath, "expected a mapping, got null")
			}
			if err := d.decode(nil, it, elem, ipath); err != nil {
				return err
			}
			out = reflect.Append(out, elem)
			continue
		}
		d.note(it, ipath)
		d.rec[ipath] = entry{val: it}
		s, err := d.scalarString(it, ipath)
		if err != nil {
			return err
		}
		out = reflect.Append(out, reflect.ValueOf(s))
	}
	v.Set(out)
	return nil
}

// mappingPairs checks that val is a mapping with plain string keys and no
// duplicates, and calls fn for each pair in order.
func (d *decoder) mappingPairs(val *yaml.Node, path string, fn func(name string, k, v *yaml.Node) error) error {
	if val.Kind != yaml.MappingNode {
		return d.fail(val, path, "expected a mapping, got "+describe(val))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(val.Content); i += 2 {
		k, v := resolve(val.Content[i]), val.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			return d.fail(k, joinKey(path, k.Value), "YAML merge keys are not supported (use include)")
		}
		if k.Kind != yaml.ScalarNode || isNull(k) {
			return d.fail(k, path, "mapping keys must be strings, got "+describe(k))
		}
		kpath := joinKey(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			return d.fail(k, kpath, fmt.Sprintf("duplicate key (first defined on line %d)", first))
		}
		seen[k.Value] = k.Line
		if err := fn(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) decodeStruct(val *yaml.Node, v reflect.Value, path string) error {
	t := v.Type()
	fields := map[string]int{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		fields[name] = i
		names = append(names, name)
	}
	return d.mappingPairs(val, path, func(name string, k, n *yaml.Node) error {
		kpath := joinKey(path, name)
		idx, ok := fields[name]
		if !ok {
			d.note(k, kpath)
			msg := "unknown key"
			if s := suggest(name, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return d.fail(k, kpath, msg)
		}
		return d.decode(k, n, v.Field(idx), kpath)
	})
}

func (d *decoder) decodeMap(val *yaml.Node, v reflect.Value, path string) error {
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	return d.mappingPairs(val, path, func(name string, k, n *yaml.Node) error {
		elem := reflect.New(v.Type().Elem()).Elem()
		if err := d.decode(k, n, elem, joinKey(path, name)); err != nil {
			return err
		}
		v.SetMapIndex(reflect.ValueOf(name), elem)
		return nil
	})
}
