package weldr

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
)

// Source is an apt repository as the sources routes show it. Type is
// "deb"; Suites and Components are cosa's (apt's) additions to the Weldr
// shape, which composer-cli prints without interpreting.
type Source struct {
	ID         string   `json:"id" toml:"id"`
	Name       string   `json:"name" toml:"name"`
	Type       string   `json:"type" toml:"type"`
	URL        string   `json:"url" toml:"url"`
	Suites     []string `json:"suites,omitempty" toml:"suites,omitempty"`
	Components []string `json:"components,omitempty" toml:"components,omitempty"`
	CheckGPG   bool     `json:"check_gpg" toml:"check_gpg"`
	CheckSSL   bool     `json:"check_ssl" toml:"check_ssl"`
	System     bool     `json:"system" toml:"system"`
	RHSM       bool     `json:"rhsm" toml:"rhsm"`
	GPGKeys    []string `json:"gpgkeys,omitempty" toml:"gpgkeys,omitempty"`
	Distros    []string `json:"distros,omitempty" toml:"distros,omitempty"`
	Proxy      string   `json:"proxy,omitempty" toml:"proxy,omitempty"`
}

// Sources holds the system sources (read-only, from the service's apt
// configuration) and the user's, one TOML file each under Dir.
type Sources struct {
	Dir    string
	System []Source
	mu     sync.Mutex
}

var errUnknownSource = errors.New("unknown source")

// All returns every source, system ones first, each group sorted by id.
// A damaged user source file is reported, not skipped silently.
func (s *Sources) All() ([]Source, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]Source{}, s.System...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	files, err := filepath.Glob(filepath.Join(s.Dir, "*.toml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		var src Source
		if _, err := toml.DecodeFile(f, &src); err != nil {
			return nil, fmt.Errorf("source file %s: %w", f, err)
		}
		src.System = false
		out = append(out, src)
	}
	return out, nil
}

func (s *Sources) isSystem(id string) bool {
	for _, x := range s.System {
		if x.ID == id {
			return true
		}
	}
	return false
}

// Put stores a user source, replacing one of the same id; the file is
// written beside its final name and renamed, so a reader never sees half.
func (s *Sources) Put(src Source) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(src); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.Dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(s.Dir, src.ID+".toml"))
}

// Delete removes a user source.
func (s *Sources) Delete(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := os.Remove(filepath.Join(s.Dir, id+".toml"))
	if errors.Is(err, os.ErrNotExist) {
		return errUnknownSource
	}
	return err
}

// parseSource reads a posted source: TOML in the flat form or as one table
// named by the id (the first by name if several), or JSON. Unknown keys are
// errors naming them.
func parseSource(data []byte, isJSON bool) (Source, error) {
	var src Source
	if isJSON {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&src); err != nil {
			return src, fmt.Errorf("Problem parsing POST body: %v", err)
		}
		return src, checkSource(&src)
	}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return src, fmt.Errorf("Problem parsing POST body: %v", err)
	}
	flat := false
	var tables []string
	for k, v := range raw {
		if _, isTable := v.(map[string]any); isTable {
			tables = append(tables, k)
		} else {
			flat = true
		}
	}
	body := data
	tableID := ""
	if !flat && len(tables) > 0 {
		sort.Strings(tables)
		tableID = tables[0]
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(raw[tableID]); err != nil {
			return src, err
		}
		body = buf.Bytes()
	}
	md, err := toml.Decode(string(body), &src)
	if err != nil {
		return src, fmt.Errorf("Problem parsing POST body: %v", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return src, fmt.Errorf("Problem parsing POST body: unknown key %q", und[0].String())
	}
	if src.ID == "" {
		src.ID = tableID
	}
	return src, checkSource(&src)
}

func checkSource(src *Source) error {
	for _, f := range []struct{ key, val string }{{"id", src.ID}, {"name", src.Name}, {"type", src.Type}, {"url", src.URL}} {
		if f.val == "" {
			return fmt.Errorf("Problem parsing POST body: '%s' field is missing", f.key)
		}
	}
	if !nameRE.MatchString(src.ID) || src.ID == "." || src.ID == ".." {
		return fmt.Errorf("invalid source id %q: only letters, digits, '.', '_' and '-'", src.ID)
	}
	if src.Type != "deb" {
		return fmt.Errorf("source %s: type %q is not supported: cosa's sources are apt repositories, type \"deb\"", src.ID, src.Type)
	}
	u, err := url.Parse(src.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") {
		return fmt.Errorf("source %s: url %q: an http://, https:// or file:// URL is required", src.ID, src.URL)
	}
	if src.CheckGPG && len(src.GPGKeys) == 0 {
		return fmt.Errorf("source %s: check_gpg is true but gpgkeys is empty", src.ID)
	}
	src.System = false
	return nil
}

// SystemSources reads apt's one-line sources (sources.list and
// sources.list.d/*.list) and deb822 sources (*.sources) under an apt
// etc directory; each gives a read-only source, named after its file.
func SystemSources(etcApt string) ([]Source, error) {
	var out []Source
	files := []string{filepath.Join(etcApt, "sources.list")}
	more, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", "*"))
	files = append(files, more...)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		base := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(f), ".list"), ".sources")
		var found []Source
		switch {
		case strings.HasSuffix(f, ".sources"):
			found = deb822Sources(data)
		case strings.HasSuffix(f, ".list"):
			found = oneLineSources(data)
		}
		for i := range found {
			found[i].ID = base
			if len(found) > 1 {
				found[i].ID = fmt.Sprintf("%s-%d", base, i+1)
			}
			found[i].Name = found[i].ID
			found[i].Type, found[i].System, found[i].CheckSSL = "deb", true, true
			out = append(out, found[i])
		}
	}
	return out, nil
}

func oneLineSources(data []byte) []Source {
	var out []Source
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(strings.SplitN(sc.Text(), "#", 2)[0])
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		// Options ("[signed-by=... arch=...]") sit between "deb" and the URL.
		if strings.HasPrefix(f[1], "[") {
			for len(f) > 1 && !strings.HasSuffix(f[1], "]") {
				f = append(f[:1], f[2:]...)
			}
			if len(f) > 1 {
				f = append(f[:1], f[2:]...)
			}
		}
		if len(f) < 3 {
			continue
		}
		out = append(out, Source{URL: f[1], Suites: []string{f[2]}, Components: f[3:], CheckGPG: true})
	}
	return out
}

func deb822Sources(data []byte) []Source {
	var out []Source
	for _, stanza := range strings.Split(strings.ReplaceAll(string(data), "\r", ""), "\n\n") {
		fields := map[string]string{}
		last := ""
		for _, l := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
				continue
			}
			if l[0] == ' ' || l[0] == '\t' {
				if last != "" {
					fields[last] += "\n" + strings.TrimSpace(l)
				}
				continue
			}
			k, v, _ := strings.Cut(l, ":")
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
		if !strings.Contains(" "+fields["types"]+" ", " deb ") || fields["uris"] == "" {
			continue
		}
		if strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		out = append(out, Source{
			URL:        strings.Fields(fields["uris"])[0],
			Suites:     strings.Fields(fields["suites"]),
			Components: strings.Fields(fields["components"]),
			CheckGPG:   true,
		})
	}
	return out
}

func (h *Handler) sourceRoutes() {
	h.handle("GET", "/projects/source/list", h.sourcesList, false)
	h.handle("GET", "/projects/source/info/{names}", h.sourcesInfo, false)
	h.handle("POST", "/projects/source/new", h.sourcesNew, false)
	h.handle("DELETE", "/projects/source/delete/{name}", h.sourcesDelete, false)
}

func (h *Handler) sources(w http.ResponseWriter) ([]Source, bool) {
	if h.opt.Sources == nil {
		return []Source{}, true
	}
	all, err := h.opt.Sources.All()
	if err != nil {
		fail(w, idProjects, "%v", err)
		return nil, false
	}
	return all, true
}

func (h *Handler) sourcesList(w http.ResponseWriter, r *http.Request) {
	all, good := h.sources(w)
	if !good {
		return
	}
	// v1 lists ids, v0 (lorax) names.
	ids := []string{}
	for _, s := range all {
		ids = append(ids, sourceKey(r, s))
	}
	writeJSON(w, http.StatusOK, map[string]any{"sources": ids})
}

// sourceKey is how a route names a source: by id in v1, by name in v0.
func sourceKey(r *http.Request, s Source) string {
	if isV1(r) {
		return s.ID
	}
	return s.Name
}

func (h *Handler) sourcesInfo(w http.ResponseWriter, r *http.Request) {
	all, good := h.sources(w)
	if !good {
		return
	}
	list := r.PathValue("names")
	out := map[string]Source{}
	errs := []apiError{}
	for _, id := range strings.Split(list, ",") {
		if id == "*" {
			for _, s := range all {
				out[sourceKey(r, s)] = s
			}
			continue
		}
		if !checkName(w, "source", id) {
			return
		}
		found := false
		for _, s := range all {
			if sourceKey(r, s) == id {
				out[id], found = s, true
			}
		}
		if !found {
			errs = append(errs, apiError{idUnknownSource, id + " is not a valid source"})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"sources": out, "errors": errs})
}

func (h *Handler) sourcesNew(w http.ResponseWriter, r *http.Request) {
	if h.opt.Sources == nil {
		fail(w, idProjects, "this service keeps no user sources")
		return
	}
	data, good := readBody(w, r, idProjects)
	if !good {
		return
	}
	mt := mediaType(r)
	if mt == "" {
		fail(w, idHTTP, "missing Content-Type: text/x-toml or application/json")
		return
	}
	if len(bytes.TrimSpace(data)) == 0 {
		fail(w, idProjects, "Problem parsing POST body: the body is empty")
		return
	}
	if mt != "text/x-toml" && mt != "application/json" {
		fail(w, idProjects, "unsupported Content-Type %q: text/x-toml or application/json", mt)
		return
	}
	src, err := parseSource(data, mt == "application/json")
	if err != nil {
		fail(w, idProjects, "%v", err)
		return
	}
	if h.opt.Sources.isSystem(src.ID) {
		fail(w, idSystemSource, "%s is a system source, it cannot be changed", src.ID)
		return
	}
	for _, d := range src.Distros {
		if len(h.opt.Distros) > 0 && !contains(h.opt.Distros, d) {
			fail(w, idProjects, "source %s: invalid distro %q", src.ID, d)
			return
		}
	}
	if err := h.opt.Sources.Put(src); err != nil {
		fail(w, idProjects, "storing source %s: %v", src.ID, err)
		return
	}
	ok(w)
}

func (h *Handler) sourcesDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("name")
	if !checkName(w, "source", id) {
		return
	}
	if h.opt.Sources == nil {
		fail(w, idUnknownSource, "%s is not a valid source", id)
		return
	}
	if h.opt.Sources.isSystem(id) {
		fail(w, idSystemSource, "%s is a system source, it cannot be deleted", id)
		return
	}
	if err := h.opt.Sources.Delete(id); err != nil {
		if errors.Is(err, errUnknownSource) {
			fail(w, idUnknownSource, "%s is not a valid source", id)
			return
		}
		fail(w, idProjects, "deleting source %s: %v", id, err)
		return
	}
	ok(w)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
