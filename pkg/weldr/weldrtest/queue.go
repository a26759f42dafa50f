// Package weldrtest holds a test double of the compose queue: an in-memory
// composer.Service that records its calls and lets a test move composes
// through their states. It builds nothing. pkg/weldr's tests use it; the
// real queue (River on SQLite) replaces it in `cosa serve`.
package weldrtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/cosa-build/cosa/pkg/composer"
)

// Queue is the test double. The zero value is not usable; see NewQueue.
type Queue struct {
	// AutoFinish, when set, finishes every image build as soon as it is
	// started, with a small fake image named after its type.
	AutoFinish bool

	mu       sync.Mutex
	types    []composer.ImageType
	composes map[string]*composer.Compose
	files    map[string]map[string][]byte // image build id -> name -> content
	logs     map[string]*bytes.Buffer
	calls    []string
	requests []composer.Request
}

// NewQueue returns an empty queue offering types (name -> enabled).
func NewQueue(types map[string]bool) *Queue {
	q := &Queue{composes: map[string]*composer.Compose{}, files: map[string]map[string][]byte{}, logs: map[string]*bytes.Buffer{}}
	for n, e := range types {
		q.types = append(q.types, composer.ImageType{Name: n, Enabled: e})
	}
	sort.Slice(q.types, func(i, j int) bool { return q.types[i].Name < q.types[j].Name })
	return q
}

// Calls lists the Service methods called, in order ("Start", "Get ID", ...).
func (q *Queue) Calls() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.calls...)
}

// Requests lists what Start was asked for.
func (q *Queue) Requests() []composer.Request {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]composer.Request(nil), q.requests...)
}

func (q *Queue) record(format string, args ...any) {
	q.calls = append(q.calls, fmt.Sprintf(format, args...))
}

func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Types implements composer.Service.
func (q *Queue) Types() []composer.ImageType {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.record("Types")
	return append([]composer.ImageType(nil), q.types...)
}

// blueprintNameVersion pulls name and version out of the TOML the service
// sends, without a TOML parser: the double needs only these two keys.
func blueprintNameVersion(text []byte) (name, version string) {
	for _, line := range bytes.Split(text, []byte("\n")) {
		var v string
		if _, err := fmt.Sscanf(string(line), "name = %q", &v); err == nil && name == "" {
			name = v
		}
		if _, err := fmt.Sscanf(string(line), "version = %q", &v); err == nil && version == "" {
			version = v
		}
	}
	return name, version
}

// Start implements composer.Service.
func (q *Queue) Start(ctx context.Context, r composer.Request) (*composer.Compose, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.record("Start %v", r.Types)
	q.requests = append(q.requests, r)
	name, version := blueprintNameVersion(r.Blueprint)
	c := &composer.Compose{ID: uuid(), Blueprint: name, BlueprintVersion: version, Created: time.Now(), Frozen: string(r.Blueprint)}
	for _, t := range r.Types {
		known := false
		for _, x := range q.types {
			known = known || (x.Name == t && x.Enabled)
		}
		if !known {
			return nil, fmt.Errorf("%w: %s", composer.ErrUnknownType, t)
		}
		b := composer.ImageBuild{ID: uuid(), Type: t, State: composer.Waiting, Created: c.Created, Size: r.Size}
		if r.Upload != nil {
			b.Upload = &composer.UploadStatus{ID: uuid(), Provider: r.Upload.Provider, ImageName: r.Upload.ImageName, State: composer.Waiting, Created: c.Created}
		}
		c.Builds = append(c.Builds, b)
		q.logs[b.ID] = &bytes.Buffer{}
	}
	q.composes[c.ID] = c
	if q.AutoFinish {
		for i := range c.Builds {
			b := &c.Builds[i]
			q.setRunning(b)
			q.finish(b, map[string][]byte{"disk." + b.Type: []byte("fake " + b.Type + " image\n"), "meta.json": []byte(`{"buildid":"1"}`)})
		}
	}
	cp := clone(c)
	return &cp, nil
}

func clone(c *composer.Compose) composer.Compose {
	cp := *c
	cp.Builds = append([]composer.ImageBuild(nil), c.Builds...)
	return cp
}

func (q *Queue) find(id string) (*composer.Compose, error) {
	if c, ok := q.composes[id]; ok {
		return c, nil
	}
	for _, c := range q.composes {
		for _, b := range c.Builds {
			if b.ID == id {
				return c, nil
			}
		}
	}
	return nil, composer.ErrUnknownCompose
}

// Get implements composer.Service.
func (q *Queue) Get(ctx context.Context, id string) (*composer.Compose, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.record("Get %s", id)
	c, err := q.find(id)
	if err != nil {
		return nil, err
	}
	cp := clone(c)
	return &cp, nil
}

// List implements composer.Service.
func (q *Queue) List(ctx context.Context) ([]composer.Compose, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.record("List")
	out := []composer.Compose{}
	for _, c := range q.composes {
		out = append(out, clone(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Cancel implements composer.Service.
func (q *Queue) Cancel(ctx context.Context, id string) error {
	return q.withCompose(id, "Cancel "+id, func(c *composer.Compose) error {
		if st := c.State(); st != composer.Waiting && st != composer.Running {
			return composer.ErrBadState
		}
		eachUnfinished(c, func(b *composer.ImageBuild) {
			b.State, b.Error, b.Finished = composer.Failed, "cancelled", time.Now()
		})
		return nil
	})
}

// Delete implements composer.Service.
func (q *Queue) Delete(ctx context.Context, id string) error {
	return q.withCompose(id, "Delete "+id, func(c *composer.Compose) error {
		if st := c.State(); st != composer.Finished && st != composer.Failed {
			return composer.ErrBadState
		}
		for _, b := range c.Builds {
			delete(q.files, b.ID)
			delete(q.logs, b.ID)
		}
		delete(q.composes, c.ID)
		return nil
	})
}

// Log implements composer.Service.
func (q *Queue) Log(ctx context.Context, imageBuildID string) (io.ReadCloser, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.record("Log %s", imageBuildID)
	l, ok := q.logs[imageBuildID]
	if !ok {
		return nil, composer.ErrUnknownCompose
	}
	return io.NopCloser(bytes.NewReader(append([]byte(nil), l.Bytes()...))), nil
}

// Artifact implements composer.Service.
func (q *Queue) Artifact(ctx context.Context, imageBuildID, name string) (io.ReadCloser, int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.record("Artifact %s %s", imageBuildID, name)
	data, ok := q.files[imageBuildID][name]
	if !ok {
		return nil, 0, fmt.Errorf("%s: no such file", name)
	}
	return io.NopCloser(bytes.NewReader(data)), int64(len(data)), nil
}

// Run moves every waiting image build of a compose to RUNNING and writes a
// first log line.
func (q *Queue) Run(id string) error {
	return q.withCompose(id, "", func(c *composer.Compose) error {
		eachUnfinished(c, func(b *composer.ImageBuild) {
			if b.State == composer.Waiting {
				q.setRunning(b)
			}
		})
		return nil
	})
}

func (q *Queue) setRunning(b *composer.ImageBuild) {
	b.State, b.Started = composer.Running, time.Now()
	fmt.Fprintf(q.logs[b.ID], "building %s %s\n", b.Type, b.ID)
}

// Finish completes every unfinished image build of a compose with files.
func (q *Queue) Finish(id string, files map[string][]byte) error {
	return q.withCompose(id, "", func(c *composer.Compose) error {
		eachUnfinished(c, func(b *composer.ImageBuild) {
			if b.State == composer.Waiting {
				q.setRunning(b)
			}
			q.finish(b, files)
		})
		return nil
	})
}

func (q *Queue) finish(b *composer.ImageBuild, files map[string][]byte) {
	q.files[b.ID] = map[string][]byte{}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	// Image first, as the real queue lists it; metadata after.
	sort.SliceStable(names, func(i, j int) bool { return !isJSON(names[i]) && isJSON(names[j]) })
	for _, n := range names {
		sum := sha256.Sum256(files[n])
		q.files[b.ID][n] = files[n]
		b.Artifacts = append(b.Artifacts, composer.Artifact{Name: n, Size: int64(len(files[n])), SHA256: hex.EncodeToString(sum[:])})
	}
	b.State, b.Finished, b.BuildID = composer.Finished, time.Now(), "1.20261201.0"
	if b.Upload != nil {
		b.Upload.State = composer.Finished
	}
	fmt.Fprintf(q.logs[b.ID], "finished %s\n", b.Type)
}

func isJSON(n string) bool { return len(n) > 5 && n[len(n)-5:] == ".json" }

// Fail fails every unfinished image build of a compose with reason.
func (q *Queue) Fail(id, reason string) error {
	return q.withCompose(id, "", func(c *composer.Compose) error {
		eachUnfinished(c, func(b *composer.ImageBuild) {
			b.State, b.Error, b.Finished = composer.Failed, reason, time.Now()
			fmt.Fprintf(q.logs[b.ID], "failed: %s\n", reason)
		})
		return nil
	})
}

// Break marks a compose's record as damaged, as the real queue reports a
// record it cannot read.
func (q *Queue) Break(id, reason string) error {
	return q.withCompose(id, "", func(c *composer.Compose) error {
		c.Broken = reason
		return nil
	})
}

// withCompose runs fn, under q.mu, on the compose that id names (its own id
// or one of its image builds'); call, if not empty, is recorded first, as a
// Service method's call is even when the id is unknown.
func (q *Queue) withCompose(id, call string, fn func(c *composer.Compose) error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if call != "" {
		q.record("%s", call)
	}
	c, err := q.find(id)
	if err != nil {
		return err
	}
	return fn(c)
}

// eachUnfinished calls fn on every waiting or running image build of c.
func eachUnfinished(c *composer.Compose, fn func(b *composer.ImageBuild)) {
	for i := range c.Builds {
		if b := &c.Builds[i]; b.State == composer.Waiting || b.State == composer.Running {
			fn(b)
		}
	}
}
