package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// origin records where a YAML node came from, so that problems found after
// merging still name the right file, line and file-local key path.
type origin struct {
	file string // display path of the file
	path string // key path of the node within its own file
}

// loader holds the state of one Load call.
type loader struct {
	display string // config dir as passed by the caller
	abs     string // absolute config dir
	real    string // abs with symlinks resolved

	origin map[*yaml.Node]*origin
	files  map[string]bool     // files read, relative to abs, slash separated
	prov   map[string]Location // "doc:key.path" -> where its value was read
}

func newLoader(dir string) (*loader, error) {
	if dir == "" {
		dir = "."
	}
	display := filepath.Clean(dir)
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, &Error{File: display, Msg: errText(err), cause: err}
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &Error{File: display, Msg: "config directory does not exist", cause: err}
	case err != nil:
		return nil, &Error{File: display, Msg: errText(err), cause: err}
	case !fi.IsDir():
		return nil, &Error{File: display, Msg: "not a directory"}
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, &Error{File: display, Msg: errText(err), cause: err}
	}
	return &loader{
		display: display,
		abs:     abs,
		real:    real,
		origin:  map[*yaml.Node]*origin{},
		files:   map[string]bool{},
	}, nil
}

// displayPath turns a path relative to the config dir into the form used
// in error messages.
func (l *loader) displayPath(rel string) string {
	return filepath.Join(l.display, filepath.FromSlash(rel))
}

// errAt builds an error located at node n. The key is the node's path
// within its own file when known, otherwise key.
func (l *loader) errAt(n *yaml.Node, key, msg string) *Error {
	e := &Error{Key: key, Msg: msg}
	if n != nil {
		e.Line = n.Line
		if o := l.origin[n]; o != nil {
			e.File = o.file
			if o.path != "" {
				e.Key = o.path
			}
		}
	}
	return e
}

// parseFile reads and parses one YAML file (rel is relative to the config
// dir) and returns its top-level mapping node. If allowEmpty is set an
// empty file yields a nil node instead of an error.
func (l *loader) parseFile(rel string, allowEmpty bool) (*yaml.Node, error) {
	file := l.displayPath(rel)
	data, err := os.ReadFile(filepath.Join(l.abs, filepath.FromSlash(rel)))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &Error{File: file, Msg: "file does not exist", cause: err}
		}
		return nil, &Error{File: file, Msg: errText(err), cause: err}
	}
	l.files[rel] = true

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err = dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		if allowEmpty {
			return nil, nil
		}
		return nil, &Error{File: file, Line: 1, Msg: "file is empty"}
	}
	if err != nil {
		return nil, syntaxError(file, data, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &Error{File: file, Line: extra.Line, Msg: "multiple YAML documents are not supported"}
	case !errors.Is(err, io.EOF):
		return nil, syntaxError(file, data, err)
	}

	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	l.markFile(root, file, map[*yaml.Node]bool{})
	switch {
	case isNull(root) && allowEmpty:
		return nil, nil
	case isNull(root):
		return nil, &Error{File: file, Line: 1, Msg: "file is empty"}
	case root.Kind != yaml.MappingNode:
		return nil, &Error{File: file, Line: root.Line, Msg: "expected a mapping at the top level, got " + describe(root)}
	}
	return root, nil
}

// markFile records file as the origin of n and everything below it.
func (l *loader) markFile(n *yaml.Node, file string, seen map[*yaml.Node]bool) {
	if n == nil || seen[n] {
		return
	}
	seen[n] = true
	if l.origin[n] == nil {
		l.origin[n] = &origin{file: file}
	}
	for _, c := range n.Content {
		l.markFile(c, file, seen)
	}
	if n.Alias != nil {
		l.markFile(n.Alias, file, seen)
	}
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// maxRescanLines bounds the prefix re-parsing syntaxError does: it costs a
// parse per line after the error, which is nothing for a config file but
// would make a fuzzer's megabyte input crawl.
const maxRescanLines = 5000

// syntaxError converts a YAML parse error into an *Error naming the line
// the error is on. The parser's own "line N" is unreliable: it prefers the
// start of the enclosing block (so a bad indent deep in a mapping is
// reported where the mapping begins), it is 0-based for parser errors and
// 1-based for scanner errors, and some errors carry no line at all. So the
// line is found again: it is the first line whose end the document cannot
// be cut at, i.e. one past the longest run of whole leading lines that
// still parses. For an unclosed quote or bracket that is the line that
// opens it, which is where the fix goes.
func syntaxError(file string, data []byte, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	reported := 0
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		reported, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	line := firstBadLine(data)
	if line == 0 {
		// Too long to re-scan: the parser's figure, or the first bad byte.
		line = max(reported, 1)
		if i := firstBadByte(data); reported == 0 && i >= 0 {
			line = 1 + bytes.Count(data[:i], []byte("\n"))
		}
	}
	return &Error{File: file, Line: line, Msg: "YAML syntax error: " + msg, cause: err}
}

// firstBadLine returns the 1-based line of the first syntax error in data,
// which does not parse as a whole, or 0 when data has too many lines to
// re-scan.
func firstBadLine(data []byte) int {
	// ends[i] is the offset just past line i+1's newline.
	var ends []int
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	if len(ends) > maxRescanLines {
		return 0
	}
	// Walk back from the end: the error is just after the longest prefix
	// of whole lines that parses.
	for k := len(ends) - 1; k >= 1; k-- {
		if parses(data[:ends[k-1]]) {
			return k + 1
		}
	}
	return 1
}

// parses reports whether data is syntactically valid YAML (any number of
// documents).
func parses(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		switch err := dec.Decode(&n); {
		case errors.Is(err, io.EOF):
			return true
		case err != nil:
			return false
		}
	}
}

// firstBadByte returns the offset of the first control character or
// invalid UTF-8 sequence in data, or -1.
func firstBadByte(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' {
			return i
		}
		i += size
	}
	return -1
}

// checkTopFile resolves manifest.yaml or image.yaml, which may be symlinks
// like any include: they must stay inside the config dir and be regular
// files. Reading a config must not read /etc/shadow into an error message,
// or /dev/zero until memory runs out.
func (l *loader) checkTopFile(rel string) (string, error) {
	file := l.displayPath(rel)
	real, err := filepath.EvalSymlinks(filepath.Join(l.abs, rel))
	if err != nil {
		return "", &Error{File: file, Msg: errText(err), cause: err}
	}
	if !within(l.real, real) {
		return "", &Error{File: file, Msg: "symlink points outside the config dir (to " + quote(real) + ")"}
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", &Error{File: file, Msg: errText(err), cause: err}
	}
	switch {
	case fi.IsDir():
		return "", &Error{File: file, Msg: "is a directory"}
	case !fi.Mode().IsRegular():
		return "", &Error{File: file, Msg: "not a regular file"}
	}
	return real, nil
}

// includeFrame is one file on the include stack, for cycle detection.
type includeFrame struct {
	rel  string // relative to the config dir
	real string // symlinks resolved
}

// loadManifestTree parses manifest.yaml and everything it includes and
// returns the merged tree.
func (l *loader) loadManifestTree() (*yaml.Node, error) {
	if _, err := os.Lstat(filepath.Join(l.abs, ManifestFile)); errors.Is(err, fs.ErrNotExist) {
		return nil, &Error{File: l.displayPath(ManifestFile), Msg: "required file is missing", cause: err}
	}
	real, err := l.checkTopFile(ManifestFile)
	if err != nil {
		return nil, err
	}
	tree, err := l.loadFragment(ManifestFile, []includeFrame{{rel: ManifestFile, real: real}})
	if err != nil {
		return nil, err
	}
	dedupeLists(tree, map[*yaml.Node]bool{})
	return tree, nil
}

// loadFragment parses one manifest file, type-checks it on its own, loads
// its includes (recursively) and returns the merge of the includes and the
// file itself. stack ends with the frame for rel.
func (l *loader) loadFragment(rel string, stack []includeFrame) (*yaml.Node, error) {
	root, err := l.parseFile(rel, false)
	if err != nil {
		return nil, err
	}
	// Type-check this file alone, so type errors point into it and the
	// merge below only ever sees well-formed trees.
	d := &decoder{l: l, rec: map[string]entry{}}
	var scratch Manifest
	if err := d.decode(nil, root, rvOf(&scratch), ""); err != nil {
		return nil, err
	}
	inc, ok := d.rec["include"]
	if !ok {
		return root, nil
	}
	removeKey(root, "include")

	var items []*yaml.Node
	switch v := resolve(inc.val); v.Kind {
	case yaml.ScalarNode:
		if !isNull(v) {
			items = []*yaml.Node{v}
		}
	case yaml.SequenceNode:
		for _, it := range v.Content {
			items = append(items, resolve(it))
		}
	}

	var merged *yaml.Node
	for _, it := range items {
		target, real, msg := l.checkPath(path.Dir(rel), it.Value, "the including file's directory")
		if msg != "" {
			return nil, l.errAt(it, "include", msg)
		}
		for i, fr := range stack {
			if fr.real == real {
				chain := make([]string, 0, len(stack)-i+1)
				for _, f := range stack[i:] {
					chain = append(chain, f.rel)
				}
				chain = append(chain, target)
				return nil, l.errAt(it, "include", "include cycle: "+strings.Join(chain, " -> "))
			}
		}
		sub, err := l.loadFragment(target, append(stack[:len(stack):len(stack)], includeFrame{rel: target, real: real}))
		if err != nil {
			return nil, err
		}
		merged = l.merge(merged, sub)
	}
	return l.merge(merged, root), nil
}

// removeKey deletes key from mapping node m.
func removeKey(m *yaml.Node, key string) {
	out := m.Content[:0:0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			continue
		}
		out = append(out, m.Content[i], m.Content[i+1])
	}
	m.Content = out
}

// merge combines base (from an included file) with over (from the file
// including it): mappings merge key by key, lists concatenate (base items
// first), and anything else, including an explicit null, is taken from
// over. Neither input is modified.
func (l *loader) merge(base, over *yaml.Node) *yaml.Node {
	if base == nil {
		return over
	}
	base, over = resolve(base), resolve(over)
	switch {
	case base.Kind == yaml.MappingNode && over.Kind == yaml.MappingNode:
		out := l.derive(over)
		idx := map[string]int{}
		for i := 0; i+1 < len(over.Content); i += 2 {
			idx[over.Content[i].Value] = i
		}
		used := map[string]bool{}
		for i := 0; i+1 < len(base.Content); i += 2 {
			k, v := base.Content[i], base.Content[i+1]
			if j, ok := idx[k.Value]; ok {
				out.Content = append(out.Content, over.Content[j], l.merge(v, over.Content[j+1]))
				used[k.Value] = true
				continue
			}
			out.Content = append(out.Content, k, v)
		}
		for i := 0; i+1 < len(over.Content); i += 2 {
			if !used[over.Content[i].Value] {
				out.Content = append(out.Content, over.Content[i], over.Content[i+1])
			}
		}
		return out
	case base.Kind == yaml.SequenceNode && over.Kind == yaml.SequenceNode:
		out := l.derive(over)
		out.Content = append(append(out.Content, base.Content...), over.Content...)
		return out
	}
	return over
}

// derive returns an empty node of the same kind and position as n that
// is reported as coming from the same place.
func (l *loader) derive(n *yaml.Node) *yaml.Node {
	out := &yaml.Node{Kind: n.Kind, Tag: n.Tag, Style: n.Style, Line: n.Line, Column: n.Column}
	if o := l.origin[n]; o != nil {
		l.origin[out] = o
	}
	return out
}

// dedupeLists removes repeated scalar items from every sequence below n,
// keeping the first occurrence.
func dedupeLists(n *yaml.Node, seen map[*yaml.Node]bool) {
	n = resolve(n)
	if n == nil || seen[n] {
		return
	}
	seen[n] = true
	switch n.Kind {
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			dedupeLists(n.Content[i], seen)
		}
	case yaml.SequenceNode:
		have := map[string]bool{}
		out := make([]*yaml.Node, 0, len(n.Content))
		for _, it := range n.Content {
			r := resolve(it)
			if r.Kind == yaml.ScalarNode {
				if have[r.Value] {
					continue
				}
				have[r.Value] = true
			}
			out = append(out, it)
		}
		n.Content = out
	}
}

// loadImage reads image.yaml if present and applies defaults.
func (l *loader) loadImage() (Image, error) {
	var im Image
	d := &decoder{l: l, rec: map[string]entry{}}
	if _, err := os.Lstat(filepath.Join(l.abs, ImageFile)); err == nil {
		if _, err := l.checkTopFile(ImageFile); err != nil {
			return im, err
		}
		root, err := l.parseFile(ImageFile, true)
		if err != nil {
			return im, err
		}
		if root != nil {
			if err := d.decode(nil, root, rvOf(&im), ""); err != nil {
				return im, err
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return im, &Error{File: l.displayPath(ImageFile), Msg: errText(err), cause: err}
	}
	l.record(DocImage, d)
	v := &validator{l: l, d: d, file: l.displayPath(ImageFile)}
	v.image(&im)
	return im, v.err
}

// decodeManifest decodes the merged manifest tree, applies defaults and
// validates the values.
func (l *loader) decodeManifest(tree *yaml.Node) (Manifest, error) {
	var m Manifest
	d := &decoder{l: l, rec: map[string]entry{}}
	if err := d.decode(nil, tree, rvOf(&m), ""); err != nil {
		return m, err
	}
	l.record(DocManifest, d)
	v := &validator{l: l, d: d, file: l.displayPath(ManifestFile)}
	v.manifest(&m)
	return m, v.err
}

// checkPath validates p, a path from the config relative to the directory
// base (itself relative to the config dir, "." for the config dir). It
// returns the cleaned path relative to the config dir and its resolved
// location, or a message describing why the path is not acceptable.
func (l *loader) checkPath(base, p, relTo string) (rel, real, msg string) {
	switch {
	case p == "":
		return "", "", "path is empty"
	case filepath.IsAbs(p) || strings.HasPrefix(p, "/"):
		return "", "", "absolute path " + quote(p) + " is not allowed; use a path relative to " + relTo
	case hasDotDot(p):
		if joined := path.Join(base, filepath.ToSlash(p)); joined == ".." || strings.HasPrefix(joined, "../") {
			return "", "", "path " + quote(p) + " escapes the config dir"
		}
		return "", "", "path " + quote(p) + " must not contain \"..\" components"
	}
	rel = path.Join(base, filepath.ToSlash(p))
	full := filepath.Join(l.abs, filepath.FromSlash(rel))
	real, err := filepath.EvalSymlinks(full)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, lerr := os.Lstat(full); lerr == nil {
				return "", "", "path " + quote(p) + " is a dangling symlink"
			}
			return "", "", "path " + quote(p) + " does not exist"
		}
		return "", "", "path " + quote(p) + ": " + errText(err)
	}
	if !within(l.real, real) {
		return "", "", "path " + quote(p) + " escapes the config dir (it resolves to " + quote(real) + ")"
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", "", "path " + quote(p) + ": " + errText(err)
	}
	if !fi.Mode().IsRegular() {
		return "", "", "path " + quote(p) + " is not a regular file"
	}
	return rel, real, ""
}

// hasDotDot reports whether p has a ".." component.
func hasDotDot(p string) bool {
	for _, c := range strings.Split(filepath.ToSlash(p), "/") {
		if c == ".." {
			return true
		}
	}
	return false
}

// within reports whether target is dir or inside it (both absolute and
// clean).
func within(dir, target string) bool {
	r, err := filepath.Rel(dir, target)
	if err != nil {
		return false
	}
	return r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) && !filepath.IsAbs(r)
}

// errText returns the message of err without the operation and path that
// *fs.PathError adds; the caller already names the file.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// fileSHA256 returns the hex sha256 of the file at p.
func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func quote(s string) string { return strconv.Quote(clip(s)) }

// maxShown bounds how much of a value or key an error message repeats, so
// that a megabyte-long string still gives a readable one-line error.
const maxShown = 200

// clip shortens s to maxShown bytes (on a rune boundary) plus "...".
func clip(s string) string {
	if len(s) <= maxShown {
		return s
	}
	cut := maxShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
