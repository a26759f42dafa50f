package weldr

import (
	"bytes"
	"io"
	"net/http"

	"github.com/cosa-build/cosa/pkg/composer"
)

// uploadRoutes are lorax's read-only upload routes (v1): composer-cli 36.1
// calls none of them, compose info carries the same status.
func (h *Handler) uploadRoutes() {
	h.handle("GET", "/upload/info/{uuid}", h.uploadInfo, true)
	h.handle("GET", "/upload/log/{uuid}", h.uploadLog, true)
}

// findUpload looks an upload up by its uuid among every compose.
func (h *Handler) findUpload(w http.ResponseWriter, r *http.Request) (*composer.ImageBuild, bool) {
	if !h.service(w) {
		return nil, false
	}
	id := r.PathValue("uuid")
	if !nameRE.MatchString(id) {
		fail(w, idUpload, "%s is not a valid upload uuid", id)
		return nil, false
	}
	all, err := h.opt.Composer.List(r.Context())
	if err != nil {
		fail(w, idUpload, "listing composes: %v", err)
		return nil, false
	}
	for i := range all {
		for j := range all[i].Builds {
			if b := &all[i].Builds[j]; b.Upload != nil && b.Upload.ID == id {
				return b, true
			}
		}
	}
	fail(w, idUpload, "upload %s does not exist", id)
	return nil, false
}

func (h *Handler) uploadInfo(w http.ResponseWriter, r *http.Request) {
	b, good := h.findUpload(w, r)
	if !good {
		return
	}
	u := toUpload(b.Upload)
	writeJSON(w, http.StatusOK, map[string]any{"status": true, "upload": map[string]any{
		"uuid": u.UUID, "status": u.Status, "provider_name": u.ProviderName, "image_name": u.ImageName,
		"image_path": "", "creation_time": u.CreationTime, "settings": u.Settings, "result": u.Result, "error": u.Error,
	}})
}

// uploadLog is the upload's part of its image build's log: from the line
// the queue writes when the upload starts.
func (h *Handler) uploadLog(w http.ResponseWriter, r *http.Request) {
	b, good := h.findUpload(w, r)
	if !good {
		return
	}
	text := ""
	if b.Upload.State != composer.Waiting {
		rc, err := h.opt.Composer.Log(r.Context(), b.ID)
		if err != nil {
			fail(w, idUpload, "upload %s: %v", b.Upload.ID, err)
			return
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			fail(w, idUpload, "upload %s: %v", b.Upload.ID, err)
			return
		}
		if i := bytes.Index(data, []byte("cosa serve: upload "+b.Upload.ID)); i >= 0 {
			text = string(data[i:])
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": true, "upload_id": b.Upload.ID, "log": text})
}
