// Package composer is the compose model and queue behind `cosa serve`: a
// compose is one blueprint, frozen when it starts, and one or more image
// builds; each image build is one job in a durable queue and one real cosa
// build (plus the buildextend targets its type needs) in a workdir of the
// blueprint's own. The Weldr API (pkg/weldr) is one front end over it.
package composer

import (
	"context"
	"errors"
	"io"
	"time"
)

// State is the queue state of an image build, in Weldr's words. A compose's
// state is derived from its image builds (see Compose.State).
type State string

const (
	Waiting  State = "WAITING"
	Running  State = "RUNNING"
	Finished State = "FINISHED"
	Failed   State = "FAILED"
)

// Errors the front ends map to API error ids.
var (
	ErrUnknownCompose = errors.New("unknown compose")
	ErrUnknownType    = errors.New("unknown image type")
	ErrBadState       = errors.New("not possible in this state")
)

// Request starts a compose.
type Request struct {
	// Blueprint is the blueprint as committed, in TOML; the service parses
	// and freezes it, so later pushes never change a running compose.
	Blueprint []byte
	// Types are the image types to build, one image build each.
	Types []string
	// Size is the requested image size in bytes (0: the type's default).
	Size int64
	// OSTree asks for a commit on a given ref and parent (edge-commit and
	// the disk types); all fields optional.
	OSTree *OSTree
	// Upload, when set, sends each image build's artifact to a cloud
	// target once built (provider "aws": S3, ImportSnapshot, AMI).
	Upload *Upload
	// Test asks for a mock compose that builds nothing (Weldr's ?test=N,
	// which client test suites use): 1 fails at once, 2 finishes at once
	// with no image. 0 is a real compose.
	Test int
}

// OSTree is the ostree part of a compose request.
type OSTree struct {
	Ref    string `json:"ref"`
	Parent string `json:"parent"`
	URL    string `json:"url"`
}

// Upload is where a finished image goes.
type Upload struct {
	Provider  string            `json:"provider"`
	ImageName string            `json:"image_name"`
	Settings  map[string]string `json:"settings"`
}

// SecretSettings are the upload settings that are credentials: kept in the
// compose record (mode 0600) only until the upload ends, never shown by a
// front end, never written to a log.
var SecretSettings = []string{"accessKeyID", "secretAccessKey", "sessionToken"}

// UploadStatus is the state of one upload.
type UploadStatus struct {
	ID        string    `json:"uuid"`
	Provider  string    `json:"provider"`
	ImageName string    `json:"image_name"`
	State     State     `json:"status"`
	Created   time.Time `json:"creation_time"`
	// Settings are the profile's settings without SecretSettings.
	Settings map[string]string `json:"settings,omitempty"`
	// Result names what the upload made (e.g. the AMI id per region).
	Result map[string]string `json:"result,omitempty"`
	Error  string            `json:"error,omitempty"`
}

// Artifact is one file an image build made, under its output directory.
type Artifact struct {
	Name   string `json:"name"` // file name inside outputs/<compose>/<image-build>/
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ImageBuild is one image of a compose: its own id, job, state, log and
// artifacts (outputs/<compose>/<image-build>/).
type ImageBuild struct {
	ID        string        `json:"id"`
	Type      string        `json:"type"`
	State     State         `json:"state"`
	Created   time.Time     `json:"created"`
	Started   time.Time     `json:"started,omitzero"`
	Finished  time.Time     `json:"finished,omitzero"`
	Size      int64         `json:"size"` // requested image size in bytes
	Error     string        `json:"error,omitempty"`
	BuildID   string        `json:"build_id,omitempty"` // the cosa build id it made
	Artifacts []Artifact    `json:"artifacts,omitempty"`
	Upload    *UploadStatus `json:"upload,omitempty"`
}

// Compose is one blueprint and its image builds.
type Compose struct {
	ID               string       `json:"id"`
	Blueprint        string       `json:"blueprint"`
	BlueprintVersion string       `json:"blueprint_version"`
	Created          time.Time    `json:"created"`
	Builds           []ImageBuild `json:"builds"`
	// Frozen is the blueprint as frozen when the compose started, in TOML:
	// what every image build of the compose is made from.
	Frozen string  `json:"frozen_blueprint,omitempty"`
	OSTree *OSTree `json:"ostree,omitempty"`
	// Broken is set when the compose's stored record could not be read:
	// the compose is listed as FAILED with this reason, and nothing else
	// about the service is affected.
	Broken string `json:"broken,omitempty"`
}

// State is the compose's state: FAILED if any build or upload failed, else
// RUNNING if any runs (an upload of a finished build counts: the compose
// is done when its image is where it was asked to go), else WAITING if any
// waits, else FINISHED.
func (c *Compose) State() State {
	if c.Broken != "" {
		return Failed
	}
	var waiting, running bool
	for _, b := range c.Builds {
		switch b.State {
		case Failed:
			return Failed
		case Running:
			running = true
		case Waiting:
			waiting = true
		case Finished:
			if b.Upload != nil {
				switch b.Upload.State {
				case Failed:
					return Failed
				case Waiting, Running:
					running = true
				}
			}
		}
	}
	switch {
	case running:
		return Running
	case waiting:
		return Waiting
	}
	return Finished
}

// UploadPending says whether the image build is finished and its upload
// has yet to end.
func (b *ImageBuild) UploadPending() bool {
	return b.State == Finished && b.Upload != nil && (b.Upload.State == Waiting || b.Upload.State == Running)
}

// Uploader sends a finished image build's image where the compose's upload
// profile says.
type Uploader interface {
	// Check refuses, before the compose is queued, an upload it cannot
	// make (provider, settings, image type), naming what is wrong.
	Check(u Upload, imageType string) error
	// Upload sends the image and returns what it made (e.g. the AMI id
	// per region). It must return promptly once ctx is done; it must
	// never write the secret settings to log.
	Upload(ctx context.Context, job UploadJob) (map[string]string, error)
}

// UploadJob is one upload to make.
type UploadJob struct {
	ComposeID    string
	ImageBuildID string
	Type         string
	BuildID      string // the cosa build id the image build made
	Blueprint    string
	Upload       Upload
	// OutputDir holds Artifacts (outputs/<compose>/<image-build>/).
	OutputDir string
	Artifacts []Artifact
	Log       io.Writer
}

// ImageType is a type `compose types` lists.
type ImageType struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
}

// Service is what the front ends (the Weldr API, the web console) use.
type Service interface {
	// Types lists every image type, enabled only if it really builds here.
	Types() []ImageType
	// Start freezes the blueprint and queues one job per type.
	Start(ctx context.Context, r Request) (*Compose, error)
	// Get returns a compose by its id or by one of its image builds' ids.
	Get(ctx context.Context, id string) (*Compose, error)
	// List returns every compose, oldest first; a compose whose record is
	// damaged is listed with Broken set, never dropped and never an error.
	List(ctx context.Context) ([]Compose, error)
	// Cancel stops a WAITING or RUNNING compose (its running processes are
	// ended, its workdir stays valid); it becomes FAILED ("cancelled").
	Cancel(ctx context.Context, id string) error
	// Delete removes a compose that is not running, with its outputs.
	Delete(ctx context.Context, id string) error
	// Log streams an image build's log (also while it runs).
	Log(ctx context.Context, imageBuildID string) (io.ReadCloser, error)
	// Artifact opens an image build's file by name.
	Artifact(ctx context.Context, imageBuildID, name string) (io.ReadCloser, int64, error)
}
