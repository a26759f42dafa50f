package weldr

import (
	"errors"
	"net/http"
	"strings"
)

func (h *Handler) projectRoutes() {
	h.handle("GET", "/projects/list", h.projectsList, false)
	h.handle("GET", "/projects/info/{names}", h.projectsInfo, false)
	h.handle("GET", "/projects/info", h.noNames(idUnknownProject), false)
	h.handle("GET", "/projects/depsolve/{names}", h.projectsDepsolve, false)
	h.handle("GET", "/projects/depsolve", h.noNames(idUnknownProject), false)
	h.handle("GET", "/modules/list", h.modulesList, false)
	h.handle("GET", "/modules/list/{names}", h.modulesList, false)
	h.handle("GET", "/modules/info/{names}", h.modulesInfo, false)
	h.handle("GET", "/modules/info", h.noNames(idUnknownModule), false)
}

func (h *Handler) noNames(id string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fail(w, id, "no package names given")
	}
}

// packageNames splits a comma list of package names or globs.
func packageNames(w http.ResponseWriter, id, list string) ([]string, bool) {
	var out []string
	for _, n := range strings.Split(list, ",") {
		if n == "" || strings.ContainsAny(n, "/ \t") || strings.Contains(n, "..") {
			fail(w, id, "invalid package name %q", n)
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

func (h *Handler) packages(w http.ResponseWriter, r *http.Request, id string) bool {
	if !h.validDistro(w, r) {
		return false
	}
	if h.opt.Packages == nil {
		fail(w, id, "%v", errNoPackages)
		return false
	}
	return true
}

func (h *Handler) projectsList(w http.ResponseWriter, r *http.Request) {
	offset, limit, good := pageArgs(w, r)
	if !good || !h.packages(w, r, idProjects) {
		return
	}
	list, total, err := h.opt.Packages.List(offset, limit)
	if err != nil {
		fail(w, idProjects, "reading the package index: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": total, "offset": offset, "limit": limit, "projects": list})
}

func (h *Handler) projectsInfo(w http.ResponseWriter, r *http.Request) {
	list, good := h.info(w, r, idProjects, idUnknownProject, "packages")
	if !good {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"projects": list})
}

// info is the records of the packages the path names, for the projects
// and modules info routes; each answers its errors under its own ids, and
// none found as "No <what> have been found".
func (h *Handler) info(w http.ResponseWriter, r *http.Request, id, idUnknown, what string) ([]Project, bool) {
	names, good := packageNames(w, idUnknown, r.PathValue("names"))
	if !good || !h.packages(w, r, id) {
		return nil, false
	}
	list, err := h.opt.Packages.Info(names)
	if err != nil {
		fail(w, id, "reading the package index: %v", err)
		return nil, false
	}
	if len(list) == 0 {
		fail(w, idUnknown, "No %s have been found: %s", what, strings.Join(names, ", "))
		return nil, false
	}
	return list, true
}

func toSpecs(names []string) []Spec {
	var s []Spec
	for _, n := range names {
		s = append(s, Spec{Name: n})
	}
	return s
}

func (h *Handler) projectsDepsolve(w http.ResponseWriter, r *http.Request) {
	names, good := packageNames(w, idUnknownProject, r.PathValue("names"))
	if !good || !h.packages(w, r, idProjects) {
		return
	}
	deps, err := h.opt.Packages.Depsolve(toSpecs(names))
	if err != nil {
		id := idProjects
		if errors.Is(err, ErrUnknownPackage) {
			id = idUnknownProject
		}
		fail(w, id, "depsolving %s: %v", strings.Join(names, ", "), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"projects": deps})
}

type module struct {
	Name      string `json:"name"`
	GroupType string `json:"group_type"`
}

func (h *Handler) modulesList(w http.ResponseWriter, r *http.Request) {
	offset, limit, good := pageArgs(w, r)
	if !good || !h.packages(w, r, idModules) {
		return
	}
	var all []module
	if g := r.PathValue("names"); g != "" {
		names, good := packageNames(w, idUnknownModule, g)
		if !good {
			return
		}
		list, err := h.opt.Packages.Info(names)
		if err != nil {
			fail(w, idModules, "reading the package index: %v", err)
			return
		}
		for _, p := range list {
			all = append(all, module{p.Name, "deb"})
		}
	} else {
		list, _, err := h.opt.Packages.List(0, 1<<31-1)
		if err != nil {
			fail(w, idModules, "reading the package index: %v", err)
			return
		}
		for _, p := range list {
			all = append(all, module{p.Name, "deb"})
		}
	}
	if len(all) == 0 {
		fail(w, idUnknownModule, "No modules have been found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": len(all), "offset": offset, "limit": limit, "modules": page(all, offset, limit)})
}

type moduleInfo struct {
	Project
	Dependencies []Dep `json:"dependencies"`
}

func (h *Handler) modulesInfo(w http.ResponseWriter, r *http.Request) {
	list, good := h.info(w, r, idModules, idUnknownModule, "modules")
	if !good {
		return
	}
	out := []moduleInfo{}
	for _, p := range list {
		deps, err := h.opt.Packages.Depsolve([]Spec{{Name: p.Name}})
		if err != nil {
			fail(w, idModules, "depsolving %s: %v", p.Name, err)
			return
		}
		out = append(out, moduleInfo{p, deps})
	}
	writeJSON(w, http.StatusOK, map[string]any{"modules": out})
}

// joinQuoted lists names for a message.
func joinQuoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "\"" + n + "\""
	}
	return strings.Join(q, ", ")
}
