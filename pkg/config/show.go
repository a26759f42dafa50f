package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Location is where a value was read from.
type Location struct {
	File string // display path of the file
	Line int    // 1-based
}

// Setting is one value of a loaded config and where it came from, as
// `cosa config show` reports it.
type Setting struct {
	// Key is the value's path as errors name it: "distro.suite",
	// "packages[0]", "users[1].groups[0]". Empty lists and mappings are
	// one setting each, with the value [] or {}.
	Key string `json:"key"`
	// Value is a string, an integer, or an empty []any / map[string]any.
	Value any `json:"value"`
	// File is the file the value was read from (after includes, the
	// included file); for a default, the file the key belongs in.
	File string `json:"file"`
	// Line is the line of the value in File; 0 for a default.
	Line int `json:"line"`
	// Default is set when the key was not given and its default applies.
	Default bool `json:"default,omitempty"`
}

// Document names the two files a config is read from.
const (
	DocManifest = "manifest"
	DocImage    = "image"
)

// record keeps where each non-null value decoded by d came from.
func (l *loader) record(doc string, d *decoder) {
	if l.prov == nil {
		l.prov = map[string]Location{}
	}
	for path, e := range d.rec {
		if e.val == nil || isNull(e.val) {
			continue
		}
		loc := Location{Line: e.val.Line}
		if o := l.origin[e.val]; o != nil {
			loc.File = o.file
		}
		l.prov[doc+":"+path] = loc
	}
}

// Settings lists every value of the manifest (merged with its includes)
// or the image settings (doc is DocManifest or DocImage), defaults
// included, in the order of the reference docs/config.md, each with the
// file and line it came from.
func (c *Config) Settings(doc string) []Setting {
	w := c.walker(doc)
	w.walk()
	return w.out
}

// Show renders the manifest and image settings as YAML that loads back to
// the same config, each value followed by a comment naming the file and
// line it came from, or "default".
func (c *Config) Show() string {
	var b strings.Builder
	b.WriteString("# " + ManifestFile + ", merged with its includes; defaults applied.\n")
	if len(c.Files) > 0 {
		b.WriteString("# Files read: " + strings.Join(c.Files, ", ") + "\n")
	}
	m := c.walker(DocManifest)
	m.walk()
	b.WriteString(m.text.String())
	b.WriteString("---\n# " + ImageFile + "; defaults applied.\n")
	im := c.walker(DocImage)
	im.walk()
	b.WriteString(im.text.String())
	return b.String()
}

type walker struct {
	c    *Config
	doc  string
	file string // display path of the document's own file
	root reflect.Value
	out  []Setting
	text strings.Builder
}

func (c *Config) walker(doc string) *walker {
	display := c.display
	if display == "" {
		display = c.Dir
	}
	w := &walker{c: c, doc: doc}
	if doc == DocImage {
		w.root = reflect.ValueOf(c.Image)
		w.file = joinDisplay(display, ImageFile)
	} else {
		w.root = reflect.ValueOf(c.Manifest)
		w.file = joinDisplay(display, ManifestFile)
	}
	return w
}

func joinDisplay(dir, name string) string {
	if dir == "" || dir == "." {
		return name
	}
	return strings.TrimSuffix(dir, "/") + "/" + name
}

func (w *walker) walk() { w.structFields(w.root, "", "") }

// leaf records one value and writes "key: value  # where" (key may be
// "- " for a list item).
func (w *walker) leaf(indent, label, path string, value any) {
	s := Setting{Key: path, Value: value, File: w.file}
	if loc, ok := w.c.prov[w.doc+":"+path]; ok {
		s.File, s.Line = loc.File, loc.Line
	} else {
		s.Default = true
	}
	w.out = append(w.out, s)
	where, text := "default", scalarText(value)
	if !s.Default {
		where = fmt.Sprintf("%s:%d", s.File, s.Line)
	} else if value == "" || value == 0 {
		// Unset (no mirror, the next free uid): null is how a config
		// says "the default", and "" or 0 would not load back.
		text = "null"
	}
	fmt.Fprintf(&w.text, "%s%s%s  # %s\n", indent, label, text, where)
}

// structFields writes the fields of struct v at path. first, when set,
// replaces the indent of the first line (the "- " of a list item).
func (w *walker) structFields(v reflect.Value, path, indent string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" || name == "include" {
			continue
		}
		w.value(v.Field(i), joinKey(path, name), indent, name+": ")
	}
}

func (w *walker) value(v reflect.Value, path, indent, label string) {
	switch v.Kind() {
	case reflect.String:
		w.leaf(indent, label, path, v.String())
	case reflect.Int:
		w.leaf(indent, label, path, int(v.Int()))
	case reflect.Slice:
		if v.Len() == 0 {
			w.leaf(indent, label, path, []any{})
			return
		}
		fmt.Fprintf(&w.text, "%s%s\n", indent, strings.TrimSuffix(label, " "))
		for i := 0; i < v.Len(); i++ {
			ip := fmt.Sprintf("%s[%d]", path, i)
			if v.Index(i).Kind() == reflect.Struct {
				// A mapping in a list: its first line carries the "- ".
				start := w.text.Len()
				w.structFields(v.Index(i), ip, indent+"    ")
				s := w.text.String()
				body := s[start:]
				w.text.Reset()
				w.text.WriteString(s[:start])
				w.text.WriteString(indent + "  - " + strings.TrimPrefix(body, indent+"    "))
				continue
			}
			w.value(v.Index(i), ip, indent+"  ", "- ")
		}
	case reflect.Struct:
		fmt.Fprintf(&w.text, "%s%s\n", indent, strings.TrimSuffix(label, " "))
		w.structFields(v, path, indent+"  ")
	case reflect.Map:
		if v.Len() == 0 {
			w.leaf(indent, label, path, map[string]any{})
			return
		}
		fmt.Fprintf(&w.text, "%s%s\n", indent, strings.TrimSuffix(label, " "))
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		for _, k := range sortedKeys(toSet(keys)) {
			w.value(v.MapIndex(reflect.ValueOf(k)), joinKey(path, k), indent+"  ", k+": ")
		}
	}
}

func toSet(keys []string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// scalarText renders a setting's value as a one-line YAML scalar.
func scalarText(v any) string {
	switch x := v.(type) {
	case []any:
		return "[]"
	case map[string]any:
		return "{}"
	case int:
		return strconv.Itoa(x)
	case string:
		out, err := yaml.Marshal(x)
		s := strings.TrimSuffix(string(out), "\n")
		if err != nil || strings.Contains(s, "\n") {
			return strconv.Quote(x)
		}
		return s
	}
	return fmt.Sprint(v)
}
