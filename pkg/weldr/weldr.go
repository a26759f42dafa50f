// Package weldr is `cosa serve`'s front end: the Weldr API (v1, and v0 where
// it is the same) that composer-cli speaks, as an http.Handler. Blueprints
// live in a pkg/blueprint Store, packages come from an apt package index
// (Packages), composes go to a composer.Service. See docs/serve.md for the
// routes and docs/dev/weldr-api.md for the client's expectations.
package weldr

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/cosa-build/cosa/pkg/blueprint"
	"github.com/cosa-build/cosa/pkg/composer"
)

// MaxBody caps every request body. A blueprint is capped at
// blueprint.MaxSize by its parser as well; sources and compose requests are
// far smaller in practice.
const MaxBody = 1 << 20

// Options configure a Handler. Blueprints is required; the others may be
// nil, and their routes then answer with an API error saying so.
type Options struct {
	Blueprints *blueprint.Store
	Packages   Packages
	Sources    *Sources
	Composer   composer.Service
	// Distros are the distro names (ID-VERSION_ID) the service builds;
	// the first is the default. Empty: none is checked.
	Distros []string
	// Build is the version reported by /api/status.
	Build string
	// Log receives routine problems (a client hanging up mid-download).
	Log *log.Logger
	// Supported are the blueprint features the composer applies (cosa
	// serve passes imagebuild.Supported, the one list of them); a compose
	// asking for more is refused. Nil supports none.
	Supported []string
}

// Handler serves the Weldr API.
type Handler struct {
	opt Options
	mux *http.ServeMux
}

// New returns the API handler.
func New(opt Options) *Handler {
	if opt.Log == nil {
		opt.Log = log.New(io.Discard, "", 0)
	}
	h := &Handler{opt: opt, mux: http.NewServeMux()}
	h.routes()
	return h
}

// apiError is one entry of an error reply.
type apiError struct {
	ID  string `json:"id"`
	Msg string `json:"msg"`
}

type errorReply struct {
	Status bool       `json:"status"`
	Errors []apiError `json:"errors"`
}

// Error ids (see docs/dev/weldr-api.md §3).
const (
	idHTTP             = "HTTPError"
	idInvalidChars     = "InvalidChars"
	idBadLimit         = "BadLimitOrOffset"
	idUnknownBlueprint = "UnknownBlueprint"
	idUnknownCommit    = "UnknownCommit"
	idBlueprints       = "BlueprintsError"
	idUnknownUUID      = "UnknownUUID"
	idWrongState       = "BuildInWrongState"
	idCompose          = "ComposeError"
	idDepsolve         = "DepsolveError"
	idMissingPost      = "MissingPost"
	idUnknownSource    = "UnknownSource"
	idSystemSource     = "SystemSource"
	idProjects         = "ProjectsError"
	idUnknownProject   = "UnknownProject"
	idModules          = "ModulesError"
	idUnknownModule    = "UnknownModule"
	idDistro           = "DistroError"
	idBuildMissingFile = "BuildMissingFile"
	idInternal         = "InternalServerError"
	idUpload           = "UploadError"
)

// writeJSON writes v with the status; the client ignores Content-Type but
// the API has always declared JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// fail answers an API error. composer-cli reads only 400, 404 and 500 as
// errors (400 and 404 for DELETE), so every API error is a 400.
func fail(w http.ResponseWriter, id, format string, args ...any) {
	failStatus(w, http.StatusBadRequest, id, format, args...)
}

func failStatus(w http.ResponseWriter, status int, id, format string, args ...any) {
	writeJSON(w, status, errorReply{Errors: []apiError{{ID: id, Msg: fmt.Sprintf(format, args...)}}})
}

func ok(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, map[string]bool{"status": true})
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// checkName refuses a path element that is not a plain name: the API's
// pattern lets "." and ".." through, which must never reach a file name.
func checkName(w http.ResponseWriter, kind, name string) bool {
	if name == "" || !nameRE.MatchString(name) || name == "." || name == ".." {
		fail(w, idInvalidChars, "invalid characters in %s name %q: only letters, digits, '.', '_' and '-' are allowed, and not '.' or '..'", kind, name)
		return false
	}
	return true
}

// splitNames splits a comma list from the path, checking each name.
func splitNames(w http.ResponseWriter, kind, list string) ([]string, bool) {
	var out []string
	for _, n := range strings.Split(list, ",") {
		if !checkName(w, kind, n) {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

// pageArgs reads offset and limit (default 0 and 20). composer-cli prints a
// large limit with %v of a float64 ("1e+06"), so floats are accepted when
// they are whole numbers.
func pageArgs(w http.ResponseWriter, r *http.Request) (offset, limit int, good bool) {
	get := func(key string, def int) (int, bool) {
		s := r.URL.Query().Get(key)
		if s == "" {
			return def, true
		}
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			return n, true
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f != float64(int64(f)) || f > 1<<31 {
			return 0, false
		}
		return int(f), true
	}
	var okO, okL bool
	offset, okO = get("offset", 0)
	limit, okL = get("limit", 20)
	if !okO || !okL {
		fail(w, idBadLimit, "offset and limit must be non-negative integers (got offset=%q limit=%q)",
			r.URL.Query().Get("offset"), r.URL.Query().Get("limit"))
		return 0, 0, false
	}
	return offset, limit, true
}

// page slices a list the way the list routes do.
func page[T any](all []T, offset, limit int) []T {
	if offset > len(all) {
		offset = len(all)
	}
	end := offset + limit
	if end > len(all) || end < offset {
		end = len(all)
	}
	out := make([]T, 0, end-offset)
	return append(out, all[offset:end]...)
}

// readBody reads a capped request body; an oversized one is an error naming
// the cap.
func readBody(w http.ResponseWriter, r *http.Request, id string) ([]byte, bool) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			fail(w, id, "request body too large: the limit is %d bytes (1 MiB)", MaxBody)
		} else {
			fail(w, id, "reading the request body: %v", err)
		}
		return nil, false
	}
	return data, true
}

// mediaType is the request's Content-Type without parameters.
func mediaType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// validDistro checks ?distro= against the service's distros.
func (h *Handler) validDistro(w http.ResponseWriter, r *http.Request) bool {
	d := r.URL.Query().Get("distro")
	if d == "" || len(h.opt.Distros) == 0 {
		return true
	}
	for _, x := range h.opt.Distros {
		if x == d {
			return true
		}
	}
	fail(w, idDistro, "invalid distro: %s (this service builds %s)", d, strings.Join(h.opt.Distros, ", "))
	return false
}

// ServeHTTP answers one request; a route the API does not have is a 404
// HTTPError in the API's error shape, which the client parses.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// ServeMux would answer "." and ".." path elements with a redirect to
	// the cleaned path; here they are names the API refuses.
	for _, seg := range strings.Split(r.URL.Path, "/") {
		if seg == "." || seg == ".." {
			fail(w, idInvalidChars, "invalid characters in %q: '.' and '..' are not names", r.URL.Path)
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

// handle registers a route under both API versions unless v1only.
func (h *Handler) handle(method, route string, fn http.HandlerFunc, v1only bool) {
	h.mux.HandleFunc(method+" /api/v1"+route, fn)
	if !v1only {
		h.mux.HandleFunc(method+" /api/v0"+route, fn)
	}
}

func (h *Handler) routes() {
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		failStatus(w, http.StatusNotFound, idHTTP, "%s %s is not a route of this API", r.Method, r.URL.Path)
	})
	h.mux.HandleFunc("GET /api/status", h.status)
	h.mux.HandleFunc("GET /api/v1/status", h.status)
	h.mux.HandleFunc("GET /api/v0/status", h.status)
	h.blueprintRoutes()
	h.projectRoutes()
	h.sourceRoutes()
	h.composeRoutes()
	h.uploadRoutes()
	h.handle("GET", "/distros/list", h.distros, true)
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	build := h.opt.Build
	if build == "" {
		build = "devel"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"api":            "1",
		"db_supported":   true,
		"db_version":     "0",
		"schema_version": "0",
		"backend":        "cosa",
		"build":          build,
		"messages":       []string{},
		"msgs":           []string{},
	})
}

func (h *Handler) distros(w http.ResponseWriter, r *http.Request) {
	d := h.opt.Distros
	if d == nil {
		d = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"distros": d})
}
