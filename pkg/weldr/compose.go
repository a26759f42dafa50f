package weldr

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"context"

	"github.com/cosa-build/cosa/pkg/blueprint"
	"github.com/cosa-build/cosa/pkg/composer"
)

func (h *Handler) composeRoutes() {
	h.handle("POST", "/compose", h.composeStart, false)
	h.handle("GET", "/compose/types", h.composeTypes, false)
	h.handle("GET", "/compose/queue", h.composeQueue, false)
	h.handle("GET", "/compose/finished", h.composeByState(composer.Finished, "finished"), false)
	h.handle("GET", "/compose/failed", h.composeByState(composer.Failed, "failed"), false)
	h.handle("GET", "/compose/status/{uuids}", h.composeStatus, false)
	h.handle("GET", "/compose/info/{uuid}", h.composeInfo, false)
	h.handle("GET", "/compose/log/{uuid}", h.composeLog, false)
	h.handle("GET", "/compose/logs/{uuid}", h.composeTar("logs"), false)
	h.handle("GET", "/compose/metadata/{uuid}", h.composeTar("metadata"), false)
	h.handle("GET", "/compose/results/{uuid}", h.composeTar("results"), false)
	h.handle("GET", "/compose/image/{uuid}", h.composeImage, false)
	h.handle("DELETE", "/compose/cancel/{uuid}", h.composeCancel, false)
	h.handle("DELETE", "/compose/delete/{uuids}", h.composeDelete, false)
}

// service answers the compose routes' error when no queue is wired in.
func (h *Handler) service(w http.ResponseWriter) bool {
	if h.opt.Composer == nil {
		fail(w, idCompose, "this service has no compose queue")
		return false
	}
	return true
}

// startRequest is POST /compose's body as composer-cli sends it.
type startRequest struct {
	BlueprintName string `json:"blueprint_name"`
	ComposeType   string `json:"compose_type"`
	// ComposeTypes is cosa's extension: several image types in one
	// compose, one image build each (compose_type, if also given, must be
	// the first of them).
	ComposeTypes []string         `json:"compose_types,omitempty"`
	Branch       string           `json:"branch"`
	Size         uint64           `json:"size"`
	OSTree       *composer.OSTree `json:"ostree,omitempty"`
	Upload       *composer.Upload `json:"upload,omitempty"`
}

// uploadProviders are the providers a compose can upload to.
var uploadProviders = map[string]bool{"aws": true}

func (h *Handler) composeStart(w http.ResponseWriter, r *http.Request) {
	if !h.service(w) {
		return
	}
	if mediaType(r) != "application/json" {
		fail(w, idMissingPost, "compose start needs a JSON body with Content-Type: application/json")
		return
	}
	data, good := readBody(w, r, idCompose)
	if !good {
		return
	}
	if len(bytes.TrimSpace(data)) == 0 {
		fail(w, idMissingPost, "compose start needs a JSON body")
		return
	}
	// ?test=1 or 2: a mock compose that fails or finishes at once, after
	// the same checks as a real one (client test suites rely on it).
	test := 0
	if v := r.URL.Query().Get("test"); v != "" {
		if v != "1" && v != "2" {
			fail(w, idCompose, "test=%s: a test compose is test=1 (fails at once) or test=2 (finishes at once)", v)
			return
		}
		test = int(v[0] - '0')
	}
	var req startRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(w, idCompose, "malformed compose request: %v", err)
		return
	}
	if req.BlueprintName == "" {
		fail(w, idUnknownBlueprint, "compose request without blueprint_name")
		return
	}
	if !checkName(w, "blueprint", req.BlueprintName) {
		return
	}
	types, err := requestTypes(req)
	if err != nil {
		fail(w, idCompose, "%v", err)
		return
	}
	for _, t := range types {
		if !h.typeEnabled(w, t) {
			return
		}
	}
	b, err := h.opt.Blueprints.GetCommitted(r.Context(), req.BlueprintName)
	if err != nil {
		bpFail(w, err, idUnknownBlueprint, "Unknown blueprint name: %s", req.BlueprintName)
		return
	}
	if u := b.Unsupported(h.opt.Supported); len(u) > 0 {
		fail(w, idCompose, "blueprint %s asks for what cosa cannot apply: %s", b.Name, joinQuoted(u))
		return
	}
	if b.Distro != "" && len(h.opt.Distros) > 0 && !contains(h.opt.Distros, b.Distro) {
		fail(w, idDistro, "blueprint %s: unknown distro %q", b.Name, b.Distro)
		return
	}
	// A package that does not exist or cannot be installed is refused now,
	// not found out half way through a build.
	warnings := []string{}
	if _, err := h.depsolveBlueprint(b); err != nil {
		if errors.Is(err, ErrNoIndex) {
			warnings = append(warnings, "packages not checked: "+err.Error())
		} else {
			fail(w, idDepsolve, "blueprint %s: %v", b.Name, err)
			return
		}
	}
	if req.Upload != nil && !uploadProviders[req.Upload.Provider] {
		fail(w, idCompose, "unknown upload provider %q: cosa uploads to aws", req.Upload.Provider)
		return
	}
	size := req.Size
	var fsSum uint64
	if b.Customizations != nil {
		for _, f := range b.Customizations.Filesystem {
			fsSum += uint64(f.MinSize)
		}
	}
	fsSum = (fsSum + 511) / 512 * 512
	size = max(size, fsSum)
	if size > math.MaxInt64 {
		fail(w, idCompose, "size %d is too large", req.Size)
		return
	}
	text, err := b.TOML()
	if err != nil {
		fail(w, idCompose, "encoding blueprint %s: %v", b.Name, err)
		return
	}
	c, err := h.opt.Composer.Start(r.Context(), composer.Request{
		Blueprint: text, Types: types, Size: int64(size), OSTree: req.OSTree, Upload: req.Upload, Test: test,
	})
	if err != nil {
		h.composeErr(w, "", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"build_id": c.ID, "status": true, "warnings": warnings})
}

// requestTypes is the image types a start request asks for, in order.
func requestTypes(req startRequest) ([]string, error) {
	if len(req.ComposeTypes) == 0 {
		if req.ComposeType == "" {
			return nil, errors.New("compose request without compose_type")
		}
		return []string{req.ComposeType}, nil
	}
	if req.ComposeType != "" && req.ComposeType != req.ComposeTypes[0] {
		return nil, fmt.Errorf("compose_type %s is not the first of compose_types %s", req.ComposeType, strings.Join(req.ComposeTypes, ","))
	}
	seen := map[string]bool{}
	for _, t := range req.ComposeTypes {
		if t == "" {
			return nil, errors.New("compose_types has an empty type")
		}
		if seen[t] {
			return nil, fmt.Errorf("compose_types names %s twice", t)
		}
		seen[t] = true
	}
	return req.ComposeTypes, nil
}

// typeEnabled refuses a type the service does not list, or lists as not
// buildable here.
func (h *Handler) typeEnabled(w http.ResponseWriter, name string) bool {
	var names []string
	for _, t := range h.opt.Composer.Types() {
		if t.Name == name {
			if !t.Enabled {
				fail(w, idCompose, "compose type %s cannot be built on this host", name)
				return false
			}
			return true
		}
		if t.Enabled {
			names = append(names, t.Name)
		}
	}
	fail(w, idCompose, "unknown compose type %s: one of %s", name, strings.Join(names, ", "))
	return false
}

// composeErr maps the Service's errors onto API ids.
func (h *Handler) composeErr(w http.ResponseWriter, id string, err error) {
	switch {
	case errors.Is(err, composer.ErrUnknownCompose):
		fail(w, idUnknownUUID, "%s is not a valid build uuid", id)
	case errors.Is(err, composer.ErrBadState):
		fail(w, idWrongState, "Build %s is in the wrong state: %v", id, err)
	case errors.Is(err, composer.ErrUnknownType):
		fail(w, idCompose, "%v", err)
	default:
		fail(w, idCompose, "%v", err)
	}
}

func (h *Handler) composeTypes(w http.ResponseWriter, r *http.Request) {
	if !h.validDistro(w, r) || !h.service(w) {
		return
	}
	types := h.opt.Composer.Types()
	if types == nil {
		types = []composer.ImageType{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"types": types})
}

// entry is a compose as the queue, finished, failed and status routes list
// it.
type entry struct {
	ID          string         `json:"id"`
	Blueprint   string         `json:"blueprint"`
	Version     string         `json:"version"`
	ComposeType string         `json:"compose_type"`
	ImageSize   int64          `json:"image_size"`
	QueueStatus composer.State `json:"queue_status"`
	JobCreated  float64        `json:"job_created"`
	JobStarted  float64        `json:"job_started,omitempty"`
	JobFinished float64        `json:"job_finished,omitempty"`
	Uploads     []upload       `json:"uploads,omitempty"`
	// Error says why a compose failed (cosa's addition; the client
	// ignores it).
	Error string `json:"error,omitempty"`
	// ImageBuilds are the compose's image builds (cosa's addition): a
	// compose of several types is listed under its first build's type and
	// size, and each build is here.
	ImageBuilds []buildEntry `json:"image_builds"`
}

// buildEntry is one image build of a compose as the compose routes list it.
type buildEntry struct {
	ID          string         `json:"id"`
	ComposeType string         `json:"compose_type"`
	QueueStatus composer.State `json:"queue_status"`
	ImageSize   int64          `json:"image_size"`
	JobStarted  float64        `json:"job_started,omitempty"`
	JobFinished float64        `json:"job_finished,omitempty"`
	Image       string         `json:"image,omitempty"` // the file compose/image sends
	Error       string         `json:"error,omitempty"`
}

// buildSize is what an image build reports as its size: its image's once
// built, else the size asked for.
func buildSize(b composer.ImageBuild) int64 {
	if b.State == composer.Finished {
		if a, ok := imageArtifact(b); ok {
			return a.Size
		}
		return 0
	}
	return b.Size
}

// upload is an upload as compose info and upload info show it. Settings
// never carry the secret ones (the queue never gives them out).
type upload struct {
	UUID         string            `json:"uuid"`
	Status       composer.State    `json:"status"`
	ProviderName string            `json:"provider_name"`
	ImageName    string            `json:"image_name"`
	CreationTime float64           `json:"creation_time"`
	Settings     map[string]string `json:"settings"`
	// cosa's additions: what the upload made (the AMI id per region), or
	// why it failed.
	Result map[string]string `json:"result,omitempty"`
	Error  string            `json:"error,omitempty"`
}

func toUpload(u *composer.UploadStatus) upload {
	settings := map[string]string{}
	for k, v := range u.Settings {
		if !contains(composer.SecretSettings, k) {
			settings[k] = v
		}
	}
	return upload{UUID: u.ID, Status: u.State, ProviderName: u.Provider, ImageName: u.ImageName,
		CreationTime: seconds(u.Created), Settings: settings, Result: u.Result, Error: u.Error}
}

// seconds is a time as the API sends it: float seconds, always with a
// fractional part (composer-cli takes a whole number for another unit).
func seconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	f := float64(t.UnixNano()) / 1e9
	if f == math.Trunc(f) {
		f += 0.001
	}
	return f
}

// imageArtifact is the image among a build's files: the first that is not
// metadata (JSON), a log or a checksum.
func imageArtifact(b composer.ImageBuild) (composer.Artifact, bool) {
	for _, a := range b.Artifacts {
		if !isMetadata(a.Name) && !isLog(a.Name) {
			return a, true
		}
	}
	return composer.Artifact{}, false
}

func isMetadata(name string) bool { return strings.HasSuffix(name, ".json") }
func isLog(name string) bool {
	return strings.HasSuffix(name, ".log") || strings.HasSuffix(name, ".txt") || strings.HasSuffix(name, ".sha256")
}

func toEntry(c *composer.Compose, v1 bool) entry {
	e := entry{ID: c.ID, Blueprint: c.Blueprint, Version: c.BlueprintVersion, QueueStatus: c.State(),
		JobCreated: seconds(c.Created), Error: c.Broken}
	var started, finished time.Time
	e.ImageBuilds = []buildEntry{}
	for i, b := range c.Builds {
		be := buildEntry{ID: b.ID, ComposeType: b.Type, QueueStatus: b.State, ImageSize: buildSize(b),
			JobStarted: seconds(b.Started), JobFinished: seconds(b.Finished), Error: b.Error}
		if a, ok := imageArtifact(b); ok && b.State == composer.Finished {
			be.Image = a.Name
		}
		e.ImageBuilds = append(e.ImageBuilds, be)
		if i == 0 {
			e.ComposeType, e.ImageSize = b.Type, be.ImageSize
		}
		if !b.Started.IsZero() && (started.IsZero() || b.Started.Before(started)) {
			started = b.Started
		}
		if b.Finished.After(finished) {
			finished = b.Finished
		}
		if b.Error != "" && e.Error == "" {
			e.Error = b.Error
		}
		if b.Upload != nil && b.Upload.Error != "" && e.Error == "" && b.Upload.State == composer.Failed && b.State == composer.Finished {
			e.Error = "upload " + b.Upload.ID + " failed: " + b.Upload.Error
		}
		if b.Upload != nil && v1 {
			e.Uploads = append(e.Uploads, toUpload(b.Upload))
		}
	}
	if e.QueueStatus != composer.Waiting {
		e.JobStarted = seconds(started)
	}
	if e.QueueStatus == composer.Finished || e.QueueStatus == composer.Failed {
		e.JobFinished = seconds(finished)
		if e.JobFinished == 0 {
			e.JobFinished = seconds(c.Created)
		}
	}
	return e
}

func isV1(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/v1/") }

func (h *Handler) list(w http.ResponseWriter, r *http.Request) ([]composer.Compose, bool) {
	if !h.service(w) {
		return nil, false
	}
	all, err := h.opt.Composer.List(r.Context())
	if err != nil {
		fail(w, idCompose, "listing composes: %v", err)
		return nil, false
	}
	return all, true
}

func (h *Handler) entries(r *http.Request, all []composer.Compose, st composer.State) []entry {
	out := []entry{}
	for i := range all {
		if all[i].State() == st {
			out = append(out, toEntry(&all[i], isV1(r)))
		}
	}
	return out
}

func (h *Handler) composeQueue(w http.ResponseWriter, r *http.Request) {
	all, good := h.list(w, r)
	if !good {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"new": h.entries(r, all, composer.Waiting),
		"run": h.entries(r, all, composer.Running),
	})
}

func (h *Handler) composeByState(st composer.State, key string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		all, good := h.list(w, r)
		if !good {
			return
		}
		out := h.entries(r, all, st)
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		writeJSON(w, http.StatusOK, map[string]any{key: out})
	}
}

func (h *Handler) composeStatus(w http.ResponseWriter, r *http.Request) {
	all, good := h.list(w, r)
	if !good {
		return
	}
	q := r.URL.Query()
	want := map[string]bool{}
	list := r.PathValue("uuids")
	if list != "*" {
		for _, id := range strings.Split(list, ",") {
			if !nameRE.MatchString(id) {
				fail(w, idUnknownUUID, "%s is not a valid build uuid", id)
				return
			}
			want[id] = true
		}
	}
	out := []entry{}
	errs := []apiError{}
	found := map[string]bool{}
	for i := range all {
		c := &all[i]
		if list != "*" && !want[c.ID] {
			continue
		}
		found[c.ID] = true
		e := toEntry(c, isV1(r))
		if bp := q.Get("blueprint"); bp != "" && bp != e.Blueprint {
			continue
		}
		if st := q.Get("status"); st != "" && st != string(e.QueueStatus) {
			continue
		}
		if t := q.Get("type"); t != "" && !slices.ContainsFunc(e.ImageBuilds, func(b buildEntry) bool { return b.ComposeType == t }) {
			continue
		}
		out = append(out, e)
	}
	for id := range want {
		if !found[id] {
			errs = append(errs, apiError{idUnknownUUID, id + " is not a valid build uuid"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	sort.Slice(errs, func(i, j int) bool { return errs[i].Msg < errs[j].Msg })
	writeJSON(w, http.StatusOK, map[string]any{"uuids": out, "errors": errs})
}

// get reads one compose from the path's uuid.
func (h *Handler) get(w http.ResponseWriter, r *http.Request) (*composer.Compose, bool) {
	if !h.service(w) {
		return nil, false
	}
	id := r.PathValue("uuid")
	if !nameRE.MatchString(id) || id == "." || id == ".." || strings.Contains(id, ",") {
		fail(w, idUnknownUUID, "%s is not a valid build uuid", id)
		return nil, false
	}
	c, err := h.opt.Composer.Get(r.Context(), id)
	if err != nil {
		h.composeErr(w, id, err)
		return nil, false
	}
	return c, true
}

// composedBlueprint is the blueprint a compose was made from: the copy the
// queue froze when it started (a version number can be pushed again with
// other contents, so the history is no guide).
func composedBlueprint(c *composer.Compose) *blueprint.Blueprint {
	if c.Frozen != "" {
		if b, err := blueprint.ParseTOML([]byte(c.Frozen)); err == nil {
			return b
		}
	}
	return &blueprint.Blueprint{Name: c.Blueprint, Version: c.BlueprintVersion}
}

// composeDeps is what the compose's image holds: once its first image build
// has finished, the packages its build installed (the truth,
// base packages included); before that, the closure of the frozen
// blueprint's packages in today's index (what was asked for). Neither
// being available is an empty list, not an error: info must always answer.
func (h *Handler) composeDeps(ctx context.Context, c *composer.Compose) []Dep {
	if len(c.Builds) > 0 && c.Builds[0].State == composer.Finished {
		if deps, err := h.installedDeps(ctx, c.Builds[0].ID); err == nil {
			return deps
		} else {
			h.opt.Log.Printf("compose %s: reading its package list: %v", c.ID, err)
		}
	}
	if c.Frozen == "" {
		return []Dep{}
	}
	b, err := blueprint.ParseTOML([]byte(c.Frozen))
	if err != nil {
		return []Dep{}
	}
	deps, err := h.depsolveBlueprint(b)
	if err != nil || deps == nil {
		return []Dep{}
	}
	return deps
}

// installedDeps reads an image build's installed package list.
func (h *Handler) installedDeps(ctx context.Context, imageBuild string) ([]Dep, error) {
	rc, _, err := h.opt.Composer.Artifact(ctx, imageBuild, imagebuildPkgList)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var pkgs []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Arch    string `json:"arch"`
	}
	if err := json.NewDecoder(io.LimitReader(rc, 64<<20)).Decode(&pkgs); err != nil {
		return nil, err
	}
	deps := make([]Dep, 0, len(pkgs))
	for _, p := range pkgs {
		v := parseDebVersion(p.Version)
		deps = append(deps, Dep{Name: p.Name, Epoch: v.Epoch, Version: v.Upstream, Release: v.Revision, Arch: p.Arch})
	}
	sort.Slice(deps, func(i, j int) bool { return deps[i].Name < deps[j].Name })
	return deps, nil
}

// imagebuildPkgList is the name under which an image build's outputs hold
// its cosa build's installed package list (imagebuild.PkgListFile).
const imagebuildPkgList = "pkglist.json"

func (h *Handler) composeInfo(w http.ResponseWriter, r *http.Request) {
	c, good := h.get(w, r)
	if !good {
		return
	}
	e := toEntry(c, isV1(r))
	commit := ""
	if len(c.Builds) > 0 {
		commit = c.Builds[0].BuildID
	}
	reply := map[string]any{
		"id":           c.ID,
		"config":       "",
		"commit":       commit,
		"blueprint":    composedBlueprint(c),
		"deps":         map[string]any{"packages": h.composeDeps(r.Context(), c)},
		"compose_type": e.ComposeType,
		"queue_status": e.QueueStatus,
		"image_size":   e.ImageSize,
		"image_builds": e.ImageBuilds,
	}
	if e.Error != "" {
		reply["error"] = e.Error
	}
	if isV1(r) {
		ups := []upload{}
		for _, b := range c.Builds {
			if b.Upload != nil {
				ups = append(ups, toUpload(b.Upload))
			}
		}
		if len(ups) > 0 {
			reply["uploads"] = ups
		}
	}
	writeJSON(w, http.StatusOK, reply)
}

func (h *Handler) composeLog(w http.ResponseWriter, r *http.Request) {
	c, good := h.get(w, r)
	if !good {
		return
	}
	if c.State() == composer.Waiting {
		fail(w, idWrongState, "Build %s has not started yet. No logs to view.", c.ID)
		return
	}
	kb := int64(1024)
	if s := r.URL.Query().Get("size"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			fail(w, idInvalidChars, "size must be a positive number of kilobytes, not %q", s)
			return
		}
		kb = n
	}
	var buf bytes.Buffer
	for _, b := range c.Builds {
		rc, err := h.opt.Composer.Log(r.Context(), b.ID)
		if err != nil {
			fmt.Fprintf(&buf, "(%s: no log: %v)\n", b.Type, err)
			continue
		}
		if len(c.Builds) > 1 {
			fmt.Fprintf(&buf, "==> %s (%s) <==\n", b.ID, b.Type)
		}
		_, err = io.Copy(&buf, rc)
		rc.Close()
		if err != nil {
			fail(w, idCompose, "reading the log of %s: %v", b.ID, err)
			return
		}
	}
	out := buf.Bytes()
	// Like lorax: the last size kilobytes, most useful while it runs.
	if max := kb * 1024; int64(len(out)) > max {
		out = out[int64(len(out))-max:]
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// tarFile is one member of a downloaded tar.
type tarFile struct {
	name string
	open func() (io.ReadCloser, int64, error)
}

func (h *Handler) composeTar(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, good := h.get(w, r)
		if !good {
			return
		}
		if st := c.State(); st != composer.Finished && st != composer.Failed {
			fail(w, idWrongState, "Build %s not in FINISHED or FAILED state.", c.ID)
			return
		}
		var files []tarFile
		prefix := func(b composer.ImageBuild) string {
			if len(c.Builds) > 1 {
				return b.Type + "/"
			}
			return ""
		}
		for _, b := range c.Builds {
			b := b
			if kind == "logs" || kind == "results" {
				files = append(files, tarFile{path.Join("logs", prefix(b)+"build.log"), func() (io.ReadCloser, int64, error) {
					return h.readAll(r, b.ID)
				}})
			}
			for _, a := range b.Artifacts {
				a := a
				switch {
				case kind == "metadata" && !isMetadata(a.Name):
					continue
				case kind == "logs" && !isLog(a.Name):
					continue
				}
				name := prefix(b) + a.Name
				if kind == "logs" {
					name = path.Join("logs", name)
				}
				files = append(files, tarFile{name, func() (io.ReadCloser, int64, error) {
					return h.opt.Composer.Artifact(r.Context(), b.ID, a.Name)
				}})
			}
		}
		fileName := c.ID + ".tar"
		if kind != "results" {
			fileName = c.ID + "-" + kind + ".tar"
		}
		w.Header().Set("Content-Type", "application/x-tar")
		w.Header().Set("Content-Disposition", "attachment; filename="+fileName)
		w.WriteHeader(http.StatusOK)
		tw := tar.NewWriter(w)
		for _, f := range files {
			rc, size, err := f.open()
			if err != nil {
				// Headers are sent: say it in the log, end the tar short.
				h.opt.Log.Printf("compose %s %s: %s: %v", c.ID, kind, f.name, err)
				return
			}
			err = tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: size, ModTime: c.Created, Format: tar.FormatPAX})
			if err == nil {
				_, err = io.CopyN(tw, rc, size)
			}
			rc.Close()
			if err != nil {
				h.opt.Log.Printf("compose %s %s: %s: %v", c.ID, kind, f.name, err)
				return
			}
		}
		if err := tw.Close(); err != nil {
			h.opt.Log.Printf("compose %s %s: %v", c.ID, kind, err)
		}
	}
}

// readAll reads a whole log so that its size is known for the tar header.
func (h *Handler) readAll(r *http.Request, buildID string) (io.ReadCloser, int64, error) {
	rc, err := h.opt.Composer.Log(r.Context(), buildID)
	if err != nil {
		return nil, 0, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(bytes.NewReader(data)), int64(len(data)), nil
}

func (h *Handler) composeImage(w http.ResponseWriter, r *http.Request) {
	c, good := h.get(w, r)
	if !good {
		return
	}
	if !imagesFinished(c) {
		fail(w, idWrongState, "Build %s is in the wrong state: %s, not FINISHED", c.ID, c.State())
		return
	}
	// Which image build: the one the path names by its own id, else the
	// one of ?type= (cosa's extension), else the first.
	if len(c.Builds) == 0 {
		fail(w, idBuildMissingFile, "Build %s has no image build", c.ID)
		return
	}
	b := c.Builds[0]
	want := r.URL.Query().Get("type")
	byID := r.PathValue("uuid") != c.ID
	if byID || want != "" {
		i := slices.IndexFunc(c.Builds, func(x composer.ImageBuild) bool {
			return (!byID || x.ID == r.PathValue("uuid")) && (want == "" || x.Type == want)
		})
		if i < 0 {
			fail(w, idBuildMissingFile, "Build %s has no %s image build", r.PathValue("uuid"), want)
			return
		}
		b = c.Builds[i]
	}
	a, found := imageArtifact(b)
	if !found {
		fail(w, idBuildMissingFile, "Build %s has no image file", c.ID)
		return
	}
	rc, size, err := h.opt.Composer.Artifact(r.Context(), b.ID, a.Name)
	if err != nil {
		fail(w, idBuildMissingFile, "Build %s: %s: %v", c.ID, a.Name, err)
		return
	}
	defer rc.Close()
	ct := mime.TypeByExtension(path.Ext(a.Name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", "attachment; filename="+c.ID+"-"+a.Name)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.CopyN(w, rc, size); err != nil {
		// Routine: composer-cli hangs up when it will not overwrite a file.
		h.opt.Log.Printf("compose %s image: %v", c.ID, err)
	}
}

// imagesFinished says whether every image build of the compose is
// FINISHED: its images can be downloaded even while an upload runs or
// after one failed.
func imagesFinished(c *composer.Compose) bool {
	if c.Broken != "" || len(c.Builds) == 0 {
		return false
	}
	for _, b := range c.Builds {
		if b.State != composer.Finished {
			return false
		}
	}
	return true
}

func (h *Handler) composeCancel(w http.ResponseWriter, r *http.Request) {
	c, good := h.get(w, r)
	if !good {
		return
	}
	if st := c.State(); st != composer.Waiting && st != composer.Running {
		fail(w, idWrongState, "Build %s is not in WAITING or RUNNING.", c.ID)
		return
	}
	if err := h.opt.Composer.Cancel(r.Context(), c.ID); err != nil {
		h.composeErr(w, c.ID, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"uuid": c.ID, "status": true})
}

type uuidStatus struct {
	UUID   string `json:"uuid"`
	Status bool   `json:"status"`
}

func (h *Handler) composeDelete(w http.ResponseWriter, r *http.Request) {
	if !h.service(w) {
		return
	}
	out := []uuidStatus{}
	errs := []apiError{}
	for _, id := range strings.Split(r.PathValue("uuids"), ",") {
		if !nameRE.MatchString(id) {
			errs = append(errs, apiError{idUnknownUUID, id + " is not a valid build uuid"})
			continue
		}
		c, err := h.opt.Composer.Get(r.Context(), id)
		if err != nil {
			if errors.Is(err, composer.ErrUnknownCompose) {
				errs = append(errs, apiError{idUnknownUUID, "compose " + id + " doesn't exist"})
			} else {
				errs = append(errs, apiError{idCompose, id + ": " + err.Error()})
			}
			continue
		}
		if st := c.State(); st != composer.Finished && st != composer.Failed {
			errs = append(errs, apiError{idWrongState, "Compose " + id + " is not in FINISHED or FAILED."})
			continue
		}
		if err := h.opt.Composer.Delete(r.Context(), c.ID); err != nil {
			id := idCompose
			if errors.Is(err, composer.ErrBadState) {
				id = idWrongState
			}
			errs = append(errs, apiError{id, c.ID + ": " + err.Error()})
			continue
		}
		out = append(out, uuidStatus{c.ID, true})
	}
	writeJSON(w, http.StatusOK, map[string]any{"uuids": out, "errors": errs})
}
