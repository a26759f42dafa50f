package composer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
	_ "modernc.org/sqlite" // the pure-Go SQLite behind River's queue

	"github.com/cosa-build/cosa/pkg/blueprint"
	"github.com/cosa-build/cosa/pkg/fileutil"
)

// Runner makes one image build. The queue gives it everything it needs in
// Job; it must return promptly once ctx is done (cancel, hard stop), ending
// the processes it started.
type Runner interface {
	Run(ctx context.Context, job Job) (Result, error)
}

// Job is one image build to make.
type Job struct {
	ComposeID    string
	ImageBuildID string
	// Blueprint is the blueprint frozen when the compose started, parsed
	// and as TOML.
	Blueprint     *blueprint.Blueprint
	BlueprintTOML []byte
	Type          string
	Size          int64 // bytes; 0 is the type's default
	OSTree        *OSTree
	Upload        *Upload
	// OutputDir is outputs/<compose>/<image-build>/, created for the job;
	// artifacts are written there.
	OutputDir string
	// Log is the image build's log (OutputDir/log), appended to and
	// readable through Service.Log while the build runs.
	Log io.Writer
}

// Result is what a finished image build made.
type Result struct {
	// Artifacts are files in Job.OutputDir; a missing SHA256 or Size is
	// computed by the queue.
	Artifacts []Artifact
	// BuildID is the cosa build id the image build made.
	BuildID string
}

// Options configure a Queue.
type Options struct {
	// StateDir holds queue.sqlite, composes/ and outputs/.
	StateDir string
	Runner   Runner
	// Workers is how many image builds run at once (default 1: builds
	// share cosa's caches).
	Workers int
	// Types are the image types `compose types` lists.
	Types []ImageType
	// Enabled, when set, decides at each call whether a type builds here,
	// overriding ImageType.Enabled.
	Enabled func(name string) bool
	// Freeze, when set, pins a blueprint's packages when a compose starts.
	Freeze func(ctx context.Context, bp *blueprint.Blueprint) (*blueprint.Blueprint, error)
	// Uploader makes the uploads of composes started with an upload
	// profile; nil: such composes are refused.
	Uploader Uploader
	// Logger gets River's and the queue's messages (default: discarded).
	Logger *slog.Logger
	// PollInterval is how often idle workers look for jobs (default 1s;
	// jobs inserted by this process are picked up at once anyway).
	PollInterval time.Duration
}

// maxAttempts bounds how often one image build is started: only an
// interruption of the service (stop, kill) starts it again, so this is the
// number of interruptions a build survives.
const maxAttempts = 3

// ReasonCancelled is the error of an image build cancelled by the user.
const ReasonCancelled = "cancelled"

var errCancelled = errors.New(ReasonCancelled)

// errInterrupted ends a job whose service is stopping; River keeps it for
// the next start.
var errInterrupted = errors.New("interrupted: the service stopped while this image build ran")

// Queue is the Service: compose records under STATE/composes, one River job
// per image build in STATE/queue.sqlite, outputs under STATE/outputs.
type Queue struct {
	stateDir string
	opts     Options
	log      *slog.Logger
	db       *sql.DB
	client   *river.Client[*sql.Tx]
	lock     *os.File

	// mu serialises every read-modify-write of a record, and the
	// bookkeeping below.
	mu      sync.Mutex
	chMu    sync.Mutex
	running map[string]*runningBuild // by image build id
	closing atomic.Bool
	closed  bool
	// changed is closed (and replaced) after every record write, so a
	// front end or a test can wait for a state change without polling.
	changed chan struct{}
}

// Changed returns a channel that is closed at the next change of any
// compose record.
func (q *Queue) Changed() <-chan struct{} {
	q.chMu.Lock()
	defer q.chMu.Unlock()
	return q.changed
}

func (q *Queue) notify() {
	q.chMu.Lock()
	defer q.chMu.Unlock()
	close(q.changed)
	q.changed = make(chan struct{})
}

type runningBuild struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

var _ Service = (*Queue)(nil)

// New opens (or creates) the state dir, migrates River's tables, puts every
// compose left by a previous run back where it was or fails it with the
// reason, and starts the workers.
func New(ctx context.Context, o Options) (*Queue, error) {
	if o.StateDir == "" {
		return nil, errors.New("composer: no state dir")
	}
	if o.Runner == nil {
		return nil, errors.New("composer: no runner")
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"", "composes", "outputs"} {
		if err := os.MkdirAll(filepath.Join(o.StateDir, d), 0o700); err != nil {
			return nil, err
		}
	}
	q := &Queue{stateDir: o.StateDir, opts: o, log: logger, running: map[string]*runningBuild{},
		changed: make(chan struct{})}

	// One service per state dir: with that guaranteed, a job River says is
	// running when we start belongs to a process that died.
	lock, err := os.OpenFile(filepath.Join(o.StateDir, "queue.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("composer: state dir %s is in use by another service: %w", o.StateDir, err)
	}
	q.lock = lock
	ok := false
	defer func() {
		if !ok {
			q.release()
		}
	}()

	dsn := "file:" + filepath.Join(o.StateDir, "queue.sqlite") +
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	q.db, err = sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// SQLite takes one writer at a time; River's driver documents a
	// single connection as the way to avoid SQLITE_BUSY.
	q.db.SetMaxOpenConns(1)

	driver := riversqlite.New(q.db)
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: logger})
	if err != nil {
		return nil, err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("composer: migrating the queue database: %w", err)
	}

	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &buildWorker{q: q}); err != nil {
		return nil, err
	}
	q.client, err = river.NewClient(driver, &river.Config{
		Queues:     map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: o.Workers}},
		Workers:    workers,
		PollOnly:   true, // SQLite has no LISTEN/NOTIFY
		Logger:     logger,
		JobTimeout: -1, // an image build takes as long as it takes
		// River's rescuer cannot tell a dead worker from a long build, and
		// rescuing a live build would start a second one in the same
		// workdir. A worker can only die with this process, so orphans are
		// rescued at start instead (see reconcile), with River's own
		// rescue operation.
		RescueStuckJobsAfter: 50 * 365 * 24 * time.Hour,
		MaxAttempts:          maxAttempts,
		RetryPolicy:          retryNow{},
		FetchPollInterval:    o.PollInterval,
		FetchCooldown:        min(o.PollInterval, river.FetchCooldownDefault),
		// Keep finished jobs long enough that a record can still be
		// checked against its job after a long downtime.
		CompletedJobRetentionPeriod: 30 * 24 * time.Hour,
		CancelledJobRetentionPeriod: 30 * 24 * time.Hour,
		DiscardedJobRetentionPeriod: 30 * 24 * time.Hour,
	})
	if err != nil {
		return nil, err
	}
	if err := q.reconcile(ctx); err != nil {
		return nil, fmt.Errorf("composer: recovering the queue: %w", err)
	}
	// River stops the client when Start's context ends; the queue lives
	// until Close, not until the caller's context ends.
	if err := q.client.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	ok = true
	return q, nil
}

type retryNow struct{}

// NextRetry: only interruptions are retried, and those should run as soon
// as the service is back.
func (retryNow) NextRetry(*rivertype.JobRow) time.Time { return time.Now() }

func (q *Queue) release() {
	if q.db != nil {
		q.db.Close()
	}
	if q.lock != nil {
		q.lock.Close() // drops the flock
	}
}

// Close stops the workers: running builds may finish until ctx ends; then
// their contexts are cancelled and they are queued again for the next
// start.
func (q *Queue) Close(ctx context.Context) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	q.closing.Store(true)

	err := q.client.Stop(ctx)
	if err != nil {
		// Hard stop: cancel what still runs and wait (bounded) for the
		// jobs to record their state.
		hctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = q.client.StopAndCancel(hctx)
	}
	q.release()
	return err
}

// Types lists the image types with whether each builds here.
func (q *Queue) Types() []ImageType {
	out := make([]ImageType, len(q.opts.Types))
	copy(out, q.opts.Types)
	if q.opts.Enabled != nil {
		for i := range out {
			out[i].Enabled = q.opts.Enabled(out[i].Name)
		}
	}
	return out
}

func (q *Queue) typeEnabled(name string) (known, enabled bool) {
	for _, t := range q.Types() {
		if t.Name == name {
			return true, t.Enabled
		}
	}
	return false, false
}

// buildArgs are a River job's arguments: which image build of which
// compose. Everything else is in the compose record.
type buildArgs struct {
	ComposeID    string `json:"compose_id"`
	ImageBuildID string `json:"image_build_id"`
}

const jobKind = "cosa_image_build"

func (buildArgs) Kind() string { return jobKind }

// Start freezes the blueprint, stores the compose and queues its builds.
func (q *Queue) Start(ctx context.Context, r Request) (*Compose, error) {
	if len(r.Types) == 0 {
		return nil, fmt.Errorf("%w: no image type given", ErrUnknownType)
	}
	for _, t := range r.Types {
		known, enabled := q.typeEnabled(t)
		if !known {
			return nil, fmt.Errorf("%w: %q", ErrUnknownType, t)
		}
		if !enabled {
			return nil, fmt.Errorf("%w: %q does not build on this host", ErrUnknownType, t)
		}
	}
	if r.Upload != nil {
		if q.opts.Uploader == nil {
			return nil, errors.New("this service makes no uploads")
		}
		for _, t := range r.Types {
			if err := q.opts.Uploader.Check(*r.Upload, t); err != nil {
				return nil, fmt.Errorf("upload: %w", err)
			}
		}
	}
	if r.Size < 0 {
		return nil, fmt.Errorf("image size %d is negative", r.Size)
	}
	bp, err := blueprint.ParseTOML(r.Blueprint)
	if err != nil {
		return nil, err
	}
	if q.opts.Freeze != nil {
		if bp, err = q.opts.Freeze(ctx, bp); err != nil {
			return nil, err
		}
	}
	frozen, err := bp.TOML()
	if err != nil {
		return nil, err
	}

	now := time.Now().UTC()
	rec := &record{
		Compose: Compose{
			ID:               uuid.NewString(),
			Blueprint:        bp.Name,
			BlueprintVersion: bp.Version,
			Created:          now,
			Frozen:           string(frozen),
			OSTree:           r.OSTree,
		},
		Size:   r.Size,
		Upload: r.Upload,
		Jobs:   map[string]*jobInfo{},
	}
	for _, t := range r.Types {
		b := ImageBuild{ID: uuid.NewString(), Type: t, State: Waiting, Created: now, Size: r.Size}
		if r.Upload != nil {
			b.Upload = &UploadStatus{ID: uuid.NewString(), Provider: r.Upload.Provider,
				ImageName: r.Upload.ImageName, Settings: PublicSettings(r.Upload.Settings), State: Waiting, Created: now}
		}
		rec.Builds = append(rec.Builds, b)
		rec.Jobs[b.ID] = &jobInfo{}
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, errors.New("composer: the queue is closed")
	}
	if r.Test != 0 {
		return q.startTest(rec, r.Test)
	}
	// The record first: a crash before the jobs are in leaves WAITING
	// builds with no job, which the next start queues.
	if err := q.writeRecord(rec); err != nil {
		return nil, err
	}
	if err := q.insertJobs(ctx, rec, rec.Builds); err != nil {
		os.Remove(q.recordPath(rec.ID))
		return nil, err
	}
	if err := q.writeRecord(rec); err != nil {
		return nil, err
	}
	c := rec.Compose
	return &c, nil
}

// startTest records a mock compose (Request.Test) already in its final
// state, with a log saying what it is; no job is queued, nothing is
// built. Caller holds q.mu.
func (q *Queue) startTest(rec *record, test int) (*Compose, error) {
	if test != 1 && test != 2 {
		return nil, fmt.Errorf("test=%d: a test compose is 1 (fails) or 2 (finishes)", test)
	}
	rec.Upload = nil
	for i := range rec.Builds {
		b := &rec.Builds[i]
		b.Started = b.Created
		if test == 1 {
			b.fail("test compose: failed as asked (test=1); nothing was built", b.Created)
		} else {
			b.State, b.Finished = Finished, b.Created
		}
		// Nothing is uploaded, and no credentials are kept.
		b.Upload = nil
		if err := os.MkdirAll(q.outputDir(rec.ID, b.ID), 0o755); err != nil {
			return nil, err
		}
	}
	if err := q.writeRecord(rec); err != nil {
		return nil, err
	}
	for _, b := range rec.Builds {
		q.appendLog(rec.ID, b.ID, "cosa serve: test compose (test=%d): image build %s is %s without building anything\n", test, b.ID, b.State)
	}
	c := rec.Compose
	return &c, nil
}

// insertJobs queues one River job per build and notes the job ids in rec
// (not written). Caller holds q.mu.
func (q *Queue) insertJobs(ctx context.Context, rec *record, builds []ImageBuild) error {
	params := make([]river.InsertManyParams, len(builds))
	for i, b := range builds {
		params[i] = river.InsertManyParams{Args: buildArgs{ComposeID: rec.ID, ImageBuildID: b.ID}}
	}
	res, err := q.client.InsertMany(ctx, params)
	if err != nil {
		return fmt.Errorf("queueing compose %s: %w", rec.ID, err)
	}
	for i, b := range builds {
		rec.Jobs[b.ID].JobID = res[i].Job.ID
	}
	return nil
}

// composeID resolves a compose id or an image build id to the compose id.
func (q *Queue) composeID(id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("%w: %q", ErrUnknownCompose, id)
	}
	if _, err := os.Stat(q.recordPath(id)); err == nil {
		return id, nil
	}
	recs, err := q.readAll()
	if err != nil {
		return "", err
	}
	for _, r := range recs {
		if r.build(id) != nil {
			return r.ID, nil
		}
	}
	return "", fmt.Errorf("%w: %s", ErrUnknownCompose, id)
}

func (q *Queue) load(id string) (*record, error) {
	cid, err := q.composeID(id)
	if err != nil {
		return nil, err
	}
	r, err := q.readRecord(cid)
	if errors.Is(err, errNoRecord) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownCompose, id)
	}
	return r, err
}

// Get returns a compose by its id or one of its image builds' ids.
func (q *Queue) Get(ctx context.Context, id string) (*Compose, error) {
	r, err := q.load(id)
	if err != nil {
		return nil, err
	}
	c := r.Compose
	return &c, nil
}

// List returns every compose, oldest first, damaged ones included.
func (q *Queue) List(ctx context.Context) ([]Compose, error) {
	recs, err := q.readAll()
	if err != nil {
		return nil, err
	}
	out := make([]Compose, len(recs))
	for i, r := range recs {
		out[i] = r.Compose
	}
	return out, nil
}

// Cancel fails a WAITING or RUNNING compose with "cancelled": waiting builds
// never run, running ones have their context cancelled. It returns once the
// running builds have stopped (or ctx ends).
func (q *Queue) Cancel(ctx context.Context, id string) error {
	q.mu.Lock()
	r, err := q.load(id)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	if st := r.State(); r.Broken != "" || (st != Waiting && st != Running) {
		q.mu.Unlock()
		return fmt.Errorf("%w: compose %s is %s", ErrBadState, r.ID, r.State())
	}
	now := time.Now().UTC()
	var wait []chan struct{}
	var jobs []int64
	for i := range r.Builds {
		b := &r.Builds[i]
		ji := r.Jobs[b.ID]
		switch b.State {
		case Waiting:
			b.fail(ReasonCancelled, now)
		case Finished:
			if !b.UploadPending() {
				continue
			}
			ji.CancelRequested = true
			if rb := q.running[b.ID]; rb != nil {
				rb.cancel(errCancelled)
				wait = append(wait, rb.done)
			} else {
				r.endUpload(b, Failed, nil, ReasonCancelled)
			}
		case Running:
			ji.CancelRequested = true
			if rb := q.running[b.ID]; rb != nil {
				rb.cancel(errCancelled)
				wait = append(wait, rb.done)
			} else {
				b.fail(ReasonCancelled, now) // not running in this process
			}
		default:
			continue
		}
		if ji.JobID != 0 {
			jobs = append(jobs, ji.JobID)
		}
	}
	err = q.writeRecord(r)
	q.mu.Unlock()
	if err != nil {
		return err
	}
	for _, id := range jobs {
		// Removes waiting jobs from the queue; for a running one, River
		// cancels its context too and keeps it from being retried.
		if _, err := q.client.JobCancel(ctx, id); err != nil && !errors.Is(err, river.ErrNotFound) {
			q.log.Warn("cancelling queue job", "job", id, "error", err)
		}
	}
	for _, done := range wait {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Delete removes a compose that is neither waiting nor running, with its
// outputs.
func (q *Queue) Delete(ctx context.Context, id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	r, err := q.load(id)
	if err != nil {
		return err
	}
	if st := r.State(); st == Waiting || st == Running {
		return fmt.Errorf("%w: compose %s is %s", ErrBadState, r.ID, st)
	}
	// A broken record may still name running builds (a build whose record
	// broke while it ran): never delete outputs under a running build.
	for _, b := range r.Builds {
		if q.running[b.ID] != nil {
			return fmt.Errorf("%w: image build %s still runs", ErrBadState, b.ID)
		}
	}
	// The record goes first: a crash after it leaves only unreferenced
	// outputs, which the next start removes.
	if err := os.Remove(q.recordPath(r.ID)); err != nil {
		return err
	}
	q.notify()
	if err := os.RemoveAll(q.outputDir(r.ID, "")); err != nil {
		return fmt.Errorf("compose %s deleted, but removing its outputs: %w", r.ID, err)
	}
	for _, ji := range r.Jobs {
		if ji.JobID != 0 {
			// Best effort: finished jobs are pruned by River anyway.
			q.client.JobDelete(ctx, ji.JobID)
		}
	}
	return nil
}

// Log opens an image build's log as it is now (it grows while the build
// runs; read it again for more).
func (q *Queue) Log(ctx context.Context, imageBuildID string) (io.ReadCloser, error) {
	r, b, err := q.imageBuild(imageBuildID)
	if err != nil {
		return nil, err
	}
	if b.State == Waiting {
		return nil, fmt.Errorf("%w: image build %s is WAITING", ErrBadState, b.ID)
	}
	f, err := os.Open(filepath.Join(q.outputDir(r.ID, b.ID), "log"))
	if errors.Is(err, os.ErrNotExist) {
		return io.NopCloser(strings.NewReader("")), nil
	}
	return f, err
}

// Artifact opens a file a finished image build made.
func (q *Queue) Artifact(ctx context.Context, imageBuildID, name string) (io.ReadCloser, int64, error) {
	r, b, err := q.imageBuild(imageBuildID)
	if err != nil {
		return nil, 0, err
	}
	if b.State != Finished {
		return nil, 0, fmt.Errorf("%w: image build %s is %s", ErrBadState, b.ID, b.State)
	}
	if !slices.ContainsFunc(b.Artifacts, func(a Artifact) bool { return a.Name == name }) {
		return nil, 0, fmt.Errorf("image build %s has no artifact %q: %w", b.ID, name, os.ErrNotExist)
	}
	return fileutil.OpenSized(filepath.Join(q.outputDir(r.ID, b.ID), name))
}

func (q *Queue) imageBuild(id string) (*record, *ImageBuild, error) {
	r, err := q.load(id)
	if err != nil {
		return nil, nil, err
	}
	b := r.build(id)
	if b == nil {
		if r.Broken != "" {
			return nil, nil, fmt.Errorf("%w: %s", ErrBadState, r.Broken)
		}
		return nil, nil, fmt.Errorf("%w: %s is a compose, not an image build", ErrUnknownCompose, id)
	}
	return r, b, nil
}
