package weldr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"sort"

	"github.com/cosa-build/cosa/pkg/blueprint"
)

func (h *Handler) blueprintRoutes() {
	h.handle("GET", "/blueprints/list", h.bpList, false)
	h.handle("GET", "/blueprints/info/{names}", h.bpInfo, false)
	h.handle("GET", "/blueprints/change/{name}/{commit}", h.bpChange, true)
	h.handle("POST", "/blueprints/new", h.bpPush(false), false)
	h.handle("POST", "/blueprints/workspace", h.bpPush(true), false)
	h.handle("DELETE", "/blueprints/workspace/{name}", h.bpDeleteWorkspace, false)
	h.handle("DELETE", "/blueprints/delete/{name}", h.bpNamed(false, func(ctx context.Context, name string) error {
		_, err := h.opt.Blueprints.Delete(ctx, name)
		return err
	}), false)
	h.handle("GET", "/blueprints/changes/{names}", h.bpChanges, false)
	h.handle("POST", "/blueprints/undo/{name}/{commit}", h.bpUndo, false)
	h.handle("POST", "/blueprints/tag/{name}", h.bpNamed(true, func(ctx context.Context, name string) error {
		_, err := h.opt.Blueprints.Tag(ctx, name)
		return err
	}), false)
	h.handle("GET", "/blueprints/freeze/{names}", h.bpFreeze, false)
	h.handle("GET", "/blueprints/depsolve/{names}", h.bpDepsolve, false)
}

// bpErr answers an error of the blueprint store with its Weldr id.
func bpErr(w http.ResponseWriter, err error) {
	fail(w, blueprint.ErrorID(err), "%v", err)
}

// bpFail answers an error from the blueprint store like bpErr, except an
// unknown blueprint, which each endpoint reports under its own id and words.
func bpFail(w http.ResponseWriter, err error, id, format string, args ...any) {
	if errors.Is(err, blueprint.ErrUnknownBlueprint) {
		fail(w, id, format, args...)
		return
	}
	bpErr(w, err)
}

func (h *Handler) bpList(w http.ResponseWriter, r *http.Request) {
	offset, limit, good := pageArgs(w, r)
	if !good {
		return
	}
	names, total, err := h.opt.Blueprints.List(r.Context(), offset, limit)
	if err != nil {
		bpErr(w, err)
		return
	}
	if names == nil {
		names = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": total, "offset": offset, "limit": limit, "blueprints": names})
}

// format reads ?format=, json by default.
func format(w http.ResponseWriter, r *http.Request) (string, bool) {
	f := r.URL.Query().Get("format")
	switch f {
	case "", "json":
		return "json", true
	case "toml":
		return f, true
	}
	fail(w, idInvalidChars, "invalid format %q: json or toml", f)
	return "", false
}

// writeTOML answers a bare TOML document.
// writeBlueprintTOML answers b as TOML; name is how the request named it.
func writeBlueprintTOML(w http.ResponseWriter, name string, b *blueprint.Blueprint) {
	data, err := b.TOML()
	if err != nil {
		fail(w, idBlueprints, "%s: %v", name, err)
		return
	}
	writeTOML(w, data)
}

func writeTOML(w http.ResponseWriter, data []byte) {
	w.Header().Set("Content-Type", "text/x-toml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

// eachBlueprint gets each named blueprint and calls fn with it, in order.
// The routes that take several names answer the ones they cannot get (or
// that fn refuses) in "errors" and go on with the rest.
func (h *Handler) eachBlueprint(ctx context.Context, names []string, fn func(name string, b *blueprint.Blueprint, changed bool) *apiError) []apiError {
	errs := []apiError{}
	for _, n := range names {
		b, changed, err := h.opt.Blueprints.Get(ctx, n)
		if err != nil {
			errs = append(errs, apiError{blueprint.ErrorID(err), err.Error()})
			continue
		}
		if e := fn(n, b, changed); e != nil {
			errs = append(errs, *e)
		}
	}
	return errs
}

// formatAndNames reads ?format= and the {names} of the info and freeze
// routes; TOML holds one blueprint, so it takes exactly one name.
func formatAndNames(w http.ResponseWriter, r *http.Request) (string, []string, bool) {
	fmtName, good := format(w, r)
	if !good {
		return "", nil, false
	}
	names, good := splitNames(w, "blueprint", r.PathValue("names"))
	if !good {
		return "", nil, false
	}
	if fmtName == "toml" && len(names) != 1 {
		fail(w, idHTTP, "format=toml takes exactly one blueprint name")
		return "", nil, false
	}
	return fmtName, names, true
}

type bpChanged struct {
	Name    string `json:"name"`
	Changed bool   `json:"changed"`
}

func (h *Handler) bpInfo(w http.ResponseWriter, r *http.Request) {
	fmtName, names, good := formatAndNames(w, r)
	if !good {
		return
	}
	if fmtName == "toml" {
		b, _, err := h.opt.Blueprints.Get(r.Context(), names[0])
		if err != nil {
			bpErr(w, err)
			return
		}
		writeBlueprintTOML(w, names[0], b)
		return
	}
	bps := []*blueprint.Blueprint{}
	changes := []bpChanged{}
	errs := h.eachBlueprint(r.Context(), names, func(n string, b *blueprint.Blueprint, changed bool) *apiError {
		bps = append(bps, b)
		changes = append(changes, bpChanged{n, changed})
		return nil
	})
	writeJSON(w, http.StatusOK, map[string]any{"blueprints": bps, "changes": changes, "errors": errs})
}

func (h *Handler) bpChange(w http.ResponseWriter, r *http.Request) {
	fmtName, good := format(w, r)
	if !good {
		return
	}
	name, commit := r.PathValue("name"), r.PathValue("commit")
	if !checkName(w, "blueprint", name) || !checkName(w, "commit", commit) {
		return
	}
	b, _, err := h.opt.Blueprints.GetAt(r.Context(), name, commit)
	if err != nil {
		bpFail(w, err, idUnknownCommit, "%s: %v", name, err)
		return
	}
	if fmtName == "toml" {
		writeBlueprintTOML(w, name, b)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// bpPush is the new and workspace routes: TOML or JSON by Content-Type.
func (h *Handler) bpPush(workspace bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data, good := readBody(w, r, idBlueprints)
		if !good {
			return
		}
		if len(data) == 0 {
			fail(w, idBlueprints, "missing blueprint: the request body is empty")
			return
		}
		var b *blueprint.Blueprint
		var err error
		switch mediaType(r) {
		case "text/x-toml":
			b, err = blueprint.ParseTOML(data)
		case "application/json":
			b, err = blueprint.ParseJSON(data)
		case "":
			fail(w, idBlueprints, "missing Content-Type: text/x-toml or application/json")
			return
		default:
			fail(w, idBlueprints, "unsupported Content-Type %q: text/x-toml or application/json", mediaType(r))
			return
		}
		if err != nil {
			fail(w, blueprint.ErrorID(err), "blueprint: %v", err)
			return
		}
		if !h.checkBlueprintDistro(w, b) {
			return
		}
		if workspace {
			err = h.opt.Blueprints.PushWorkspace(r.Context(), b)
		} else {
			_, err = h.opt.Blueprints.Push(r.Context(), b)
		}
		if err != nil {
			bpErr(w, err)
			return
		}
		// Accepted as stored (a blueprint is data), but what cosa cannot
		// build is said now, and refused when a compose starts.
		reply := map[string]any{"status": true}
		if u := b.Unsupported(h.opt.Supported); len(u) > 0 {
			reply["warnings"] = []string{"cosa cannot apply " + joinQuoted(u) + "; a compose of this blueprint will be refused"}
		}
		writeJSON(w, http.StatusOK, reply)
	}
}

// checkBlueprintDistro refuses a distro the service does not build.
func (h *Handler) checkBlueprintDistro(w http.ResponseWriter, b *blueprint.Blueprint) bool {
	if b.Distro == "" || len(h.opt.Distros) == 0 {
		return true
	}
	for _, d := range h.opt.Distros {
		if d == b.Distro {
			return true
		}
	}
	fail(w, idBlueprints, "blueprint %s: invalid distro %q: this service builds %s", b.Name, b.Distro, joinQuoted(h.opt.Distros))
	return false
}

func (h *Handler) bpDeleteWorkspace(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !checkName(w, "blueprint", name) {
		return
	}
	if err := h.opt.Blueprints.DeleteWorkspace(r.Context(), name); err != nil {
		bpErr(w, err)
		return
	}
	ok(w)
}

// bpNamed is the delete and tag routes: op on the blueprint the path names
// (a POST's body read and not used), answered with {"status": true} or
// op's error. The API answers an unknown blueprint here with
// BlueprintsError.
func (h *Handler) bpNamed(post bool, op func(ctx context.Context, name string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if !checkName(w, "blueprint", name) {
			return
		}
		if post {
			if _, good := readBody(w, r, idBlueprints); !good {
				return
			}
		}
		if err := op(r.Context(), name); err != nil {
			bpFail(w, err, idBlueprints, "Unknown blueprint: %s", name)
			return
		}
		ok(w)
	}
}

type bpChangeList struct {
	Name    string             `json:"name"`
	Changes []blueprint.Change `json:"changes"`
	Total   int                `json:"total"`
}

func (h *Handler) bpChanges(w http.ResponseWriter, r *http.Request) {
	offset, limit, good := pageArgs(w, r)
	if !good {
		return
	}
	names, good := splitNames(w, "blueprint", r.PathValue("names"))
	if !good {
		return
	}
	out := []bpChangeList{}
	errs := []apiError{}
	for _, n := range names {
		ch, total, err := h.opt.Blueprints.Changes(r.Context(), n, offset, limit)
		if err != nil {
			errs = append(errs, apiError{blueprint.ErrorID(err), n})
			continue
		}
		if ch == nil {
			ch = []blueprint.Change{}
		}
		out = append(out, bpChangeList{n, ch, total})
	}
	writeJSON(w, http.StatusOK, map[string]any{"blueprints": out, "errors": errs, "offset": offset, "limit": limit})
}

func (h *Handler) bpUndo(w http.ResponseWriter, r *http.Request) {
	name, commit := r.PathValue("name"), r.PathValue("commit")
	if !checkName(w, "blueprint", name) || !checkName(w, "commit", commit) {
		return
	}
	if _, good := readBody(w, r, idBlueprints); !good {
		return
	}
	if _, err := h.opt.Blueprints.Undo(r.Context(), name, commit); err != nil {
		bpFail(w, err, idUnknownCommit, "%s: %v", name, err)
		return
	}
	ok(w)
}

// specs are a blueprint's packages and modules as depsolve requests.
func specs(b *blueprint.Blueprint) []Spec {
	var out []Spec
	for _, p := range append(append([]blueprint.Package{}, b.Packages...), b.Modules...) {
		out = append(out, Spec{Name: p.Name, Version: p.Version})
	}
	return out
}

type bpDeps struct {
	Blueprint    *blueprint.Blueprint `json:"blueprint"`
	Dependencies []Dep                `json:"dependencies"`
}

func (h *Handler) bpDepsolve(w http.ResponseWriter, r *http.Request) {
	names, good := splitNames(w, "blueprint", r.PathValue("names"))
	if !good {
		return
	}
	out := []bpDeps{}
	errs := h.eachBlueprint(r.Context(), names, func(n string, b *blueprint.Blueprint, _ bool) *apiError {
		deps, err := h.depsolveBlueprint(b)
		if err != nil {
			// Listed all the same, with no dependencies.
			out = append(out, bpDeps{b, []Dep{}})
			return &apiError{idBlueprints, n + ": " + err.Error()}
		}
		out = append(out, bpDeps{b, deps})
		return nil
	})
	writeJSON(w, http.StatusOK, map[string]any{"blueprints": out, "errors": errs})
}

// depsolveBlueprint is the closure of b's packages, modules and the
// packages of its groups (Debian tasks, see Packages.Group).
func (h *Handler) depsolveBlueprint(b *blueprint.Blueprint) ([]Dep, error) {
	s := specs(b)
	for _, g := range b.Groups {
		if h.opt.Packages == nil {
			return nil, errNoPackages
		}
		pkgs, err := h.opt.Packages.Group(g.Name)
		if err != nil {
			return nil, err
		}
		for _, n := range pkgs {
			s = append(s, Spec{Name: n})
		}
	}
	return h.depsolve(s)
}

func (h *Handler) depsolve(s []Spec) ([]Dep, error) {
	if h.opt.Packages == nil {
		return nil, errNoPackages
	}
	if len(s) == 0 {
		return []Dep{}, nil
	}
	return h.opt.Packages.Depsolve(s)
}

var errNoPackages = fmt.Errorf("%w: the service has no apt lists (run apt-get update in its apt root)", ErrNoIndex)

// freeze pins every package and module entry of b to the version of the
// closure; a glob name becomes every package of the closure it matches.
func (h *Handler) freeze(b *blueprint.Blueprint) (*blueprint.Blueprint, error) {
	deps, err := h.depsolveBlueprint(b)
	if err != nil {
		return nil, err
	}
	pin := func(list []blueprint.Package) []blueprint.Package {
		out := []blueprint.Package{}
		seen := map[string]bool{}
		for _, p := range list {
			for _, d := range deps {
				if m, _ := path.Match(p.Name, d.Name); m && !seen[d.Name] {
					seen[d.Name] = true
					out = append(out, blueprint.Package{Name: d.Name, Version: d.Frozen()})
				}
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out
	}
	f := *b
	f.Packages = pin(b.Packages)
	f.Modules = pin(b.Modules)
	return &f, nil
}

type bpFrozen struct {
	Blueprint *blueprint.Blueprint `json:"blueprint"`
}

func (h *Handler) bpFreeze(w http.ResponseWriter, r *http.Request) {
	fmtName, names, good := formatAndNames(w, r)
	if !good {
		return
	}
	out := []bpFrozen{}
	errs := h.eachBlueprint(r.Context(), names, func(n string, b *blueprint.Blueprint, _ bool) *apiError {
		f, err := h.freeze(b)
		if err != nil {
			return &apiError{idBlueprints, n + ": " + err.Error()}
		}
		out = append(out, bpFrozen{f})
		return nil
	})
	if fmtName == "toml" {
		// The API answers a blueprint that cannot be frozen with an empty
		// 200 here; composer-cli's freeze show relies on it.
		if len(out) == 0 {
			writeTOML(w, nil)
			return
		}
		writeBlueprintTOML(w, names[0], out[0].Blueprint)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"blueprints": out, "errors": errs})
}
