package composer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// recordVersion is the format of a compose record; a record of another
// version is reported as broken rather than half-understood.
const recordVersion = 1

// record is one compose as stored in composes/<id>.json. Everything the
// service must know after a restart is here; River's job rows only say
// whether a build still has to run.
type record struct {
	Version int `json:"version"`
	Compose
	// Request is what the image builds are made from (the blueprint is
	// in Compose.Frozen).
	Size   int64   `json:"size,omitempty"`
	Upload *Upload `json:"upload_request,omitempty"`
	// Jobs holds the queue side of each image build, by image build id.
	Jobs map[string]*jobInfo `json:"jobs"`
}

type jobInfo struct {
	// JobID is the River job; 0 until it is inserted (a crash between
	// writing the record and inserting the job is repaired at start).
	JobID int64 `json:"job_id,omitempty"`
	// CancelRequested marks a running build whose cancel has been asked
	// for; the worker turns it into FAILED "cancelled".
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// Interrupts counts the times the service stopped while it ran.
	Interrupts int `json:"interrupts,omitempty"`
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// validID keeps ids that reach the file system to the UUIDs we make.
func validID(id string) bool { return uuidRE.MatchString(id) }

func (q *Queue) recordPath(id string) string {
	return filepath.Join(q.stateDir, "composes", id+".json")
}

func (q *Queue) outputDir(composeID, buildID string) string {
	if buildID == "" {
		return filepath.Join(q.stateDir, "outputs", composeID)
	}
	return filepath.Join(q.stateDir, "outputs", composeID, buildID)
}

// errNoRecord is a compose with no record file at all.
var errNoRecord = errors.New("no record")

// readRecord loads one record. A record that exists but cannot be used is
// returned as a broken compose (err nil) so one damaged file never hides
// the others; only a missing file is an error.
func (q *Queue) readRecord(id string) (*record, error) {
	path := q.recordPath(id)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoRecord
	}
	broken := func(reason string) *record {
		r := &record{Compose: Compose{ID: id, Broken: fmt.Sprintf("state record %s: %s", path, reason)}}
		if fi, err := os.Stat(path); err == nil {
			r.Created = fi.ModTime().UTC()
		}
		return r
	}
	if err != nil {
		return broken(err.Error()), nil
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return broken("unreadable (" + err.Error() + ")"), nil
	}
	switch {
	case r.Version != recordVersion:
		return broken(fmt.Sprintf("unknown record version %d", r.Version)), nil
	case r.ID != id:
		return broken(fmt.Sprintf("names compose %q", r.ID)), nil
	case len(r.Builds) == 0:
		return broken("no image builds in it"), nil
	}
	for _, b := range r.Builds {
		if !validID(b.ID) || b.Type == "" {
			return broken(fmt.Sprintf("image build %q is incomplete", b.ID)), nil
		}
		switch b.State {
		case Waiting, Running, Finished, Failed:
		default:
			return broken(fmt.Sprintf("image build %s has unknown state %q", b.ID, b.State)), nil
		}
	}
	if r.Jobs == nil {
		r.Jobs = map[string]*jobInfo{}
	}
	for _, b := range r.Builds {
		if r.Jobs[b.ID] == nil {
			r.Jobs[b.ID] = &jobInfo{}
		}
	}
	return &r, nil
}

// writeRecord replaces a record atomically: a crash leaves the old or the
// new record, never a mix.
func (q *Queue) writeRecord(r *record) error {
	r.Version = recordVersion
	if r.Broken == "" {
		r.settle()
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(q.recordPath(r.ID), append(data, '\n')); err != nil {
		return err
	}
	q.notify()
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// recordIDs lists the compose ids that have a record file, whatever its
// content.
func (q *Queue) recordIDs() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(q.stateDir, "composes"))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !validID(id) || e.IsDir() {
			continue
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// readAll loads every record, oldest first; broken ones included.
func (q *Queue) readAll() ([]*record, error) {
	ids, err := q.recordIDs()
	if err != nil {
		return nil, err
	}
	var recs []*record
	for _, id := range ids {
		r, err := q.readRecord(id)
		if errors.Is(err, errNoRecord) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool {
		if !recs[i].Created.Equal(recs[j].Created) {
			return recs[i].Created.Before(recs[j].Created)
		}
		return recs[i].ID < recs[j].ID
	})
	return recs, nil
}

// build returns the image build with the id, or nil.
func (r *record) build(id string) *ImageBuild {
	for i := range r.Builds {
		if r.Builds[i].ID == id {
			return &r.Builds[i]
		}
	}
	return nil
}

func (b *ImageBuild) fail(reason string, now time.Time) {
	b.State = Failed
	b.Error = reason
	b.Finished = now
}
