package composer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/cosa-build/cosa/pkg/blueprint"
)

// buildWorker runs one image build per River job.
type buildWorker struct {
	river.WorkerDefaults[buildArgs]
	q *Queue
}

// Work claims the image build in its record, runs the Runner and records the
// outcome, then makes the build's upload if the compose asked for one. A
// build or upload failure ends the job for good (river.JobCancel keeps the
// error and skips River's retries); only a service stop leaves it to be run
// again, and a job whose build is already FINISHED then only makes the
// upload.
func (w *buildWorker) Work(ctx context.Context, job *river.Job[buildArgs]) error {
	q := w.q
	a := job.Args

	q.mu.Lock()
	r, err := q.readRecord(a.ComposeID)
	if err != nil {
		q.mu.Unlock()
		return river.JobCancel(fmt.Errorf("compose %s: %w", a.ComposeID, err))
	}
	if r.Broken != "" {
		q.mu.Unlock()
		return river.JobCancel(errors.New(r.Broken))
	}
	b := r.build(a.ImageBuildID)
	if b == nil {
		q.mu.Unlock()
		return river.JobCancel(fmt.Errorf("compose %s has no image build %s", a.ComposeID, a.ImageBuildID))
	}
	ji := r.Jobs[b.ID]
	now := time.Now().UTC()
	uploadOnly := b.UploadPending()
	switch {
	case (b.State == Finished && !uploadOnly) || b.State == Failed:
		// A stale job (its build was cancelled or finished before River
		// heard of it): nothing to do.
		q.mu.Unlock()
		return river.JobCancel(fmt.Errorf("image build %s is already %s", b.ID, b.State))
	case ji.CancelRequested:
		if uploadOnly {
			r.endUpload(b, Failed, nil, ReasonCancelled)
		} else {
			b.fail(ReasonCancelled, now)
		}
		err := q.writeRecord(r)
		q.mu.Unlock()
		return river.JobCancel(errors.Join(errCancelled, err))
	}
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rb := &runningBuild{cancel: cancel, done: make(chan struct{})}
	if uploadOnly {
		b.Upload.State, b.Upload.Error = Running, ""
	} else {
		b.State, b.Started, b.Finished, b.Error = Running, now, time.Time{}, ""
	}
	if ji.JobID == 0 {
		ji.JobID = job.ID
	}
	if err := q.writeRecord(r); err != nil {
		q.mu.Unlock()
		return river.JobCancel(fmt.Errorf("recording the start of image build %s: %w", b.ID, err))
	}
	q.running[b.ID] = rb
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		delete(q.running, b.ID)
		q.mu.Unlock()
		close(rb.done)
	}()

	if !uploadOnly {
		again, ret := q.finishBuild(bctx, job)
		if !again {
			return ret
		}
	}
	return q.upload(bctx, job)
}

// readUsable reads a compose record for a job, a broken record being an
// error. The caller holds q.mu.
func (q *Queue) readUsable(id string) (*record, error) {
	r, err := q.readRecord(id)
	if err == nil && r.Broken != "" {
		err = errors.New(r.Broken)
	}
	return r, err
}

// finishBuild runs the Runner and records the outcome; again says the
// build finished and its upload is to be made now (already RUNNING in the
// record).
func (q *Queue) finishBuild(bctx context.Context, job *river.Job[buildArgs]) (again bool, ret error) {
	a := job.Args
	q.mu.Lock()
	r, err := q.readUsable(a.ComposeID)
	q.mu.Unlock()
	if err != nil {
		return false, river.JobCancel(fmt.Errorf("compose %s: %w", a.ComposeID, err))
	}
	res, runErr := q.run(bctx, r, r.build(a.ImageBuildID), job.Attempt)

	q.mu.Lock()
	defer q.mu.Unlock()
	r, err = q.readUsable(a.ComposeID)
	if err != nil {
		return false, river.JobCancel(fmt.Errorf("recording image build %s: %w", a.ImageBuildID, err))
	}
	b, ji := r.build(a.ImageBuildID), r.Jobs[a.ImageBuildID]
	now := time.Now().UTC()
	switch {
	case ji.CancelRequested || errors.Is(context.Cause(bctx), errCancelled):
		b.fail(ReasonCancelled, now)
		ret = river.JobCancel(errCancelled)
	case bctx.Err() != nil && q.closing.Load():
		ji.Interrupts++
		if job.Attempt >= maxAttempts {
			reason := fmt.Sprintf("%v (%d times); not started again", errInterrupted, ji.Interrupts)
			b.fail(reason, now)
			ret = river.JobCancel(errors.New(reason))
		} else {
			// Back to WAITING; River keeps the job for the next start.
			b.State, b.Started = Waiting, time.Time{}
			ret = errInterrupted
		}
	case runErr != nil:
		b.fail(runErr.Error(), now)
		ret = river.JobCancel(runErr)
	default:
		b.State, b.Finished = Finished, now
		b.Artifacts, b.BuildID = res.Artifacts, res.BuildID
		if b.UploadPending() {
			// The build is FINISHED (its image can be downloaded) before
			// the upload starts, in the same write: a crash from here on
			// makes only the upload again.
			b.Upload.State = Running
			again = true
		}
	}
	q.appendLog(r.ID, b.ID, "cosa serve: image build %s is %s%s\n", b.ID, b.State, suffix(b.Error))
	if err := q.writeRecord(r); err != nil {
		return false, river.JobCancel(fmt.Errorf("recording image build %s: %w", b.ID, err))
	}
	return again, ret
}

// upload makes a finished build's upload (RUNNING in the record) and
// records its outcome; the image build stays FINISHED whatever happens.
func (q *Queue) upload(bctx context.Context, job *river.Job[buildArgs]) error {
	a := job.Args
	q.mu.Lock()
	r, err := q.readUsable(a.ComposeID)
	q.mu.Unlock()
	if err != nil {
		return river.JobCancel(fmt.Errorf("compose %s: %w", a.ComposeID, err))
	}
	b := r.build(a.ImageBuildID)
	result, upErr := q.runUpload(bctx, r, b)

	q.mu.Lock()
	defer q.mu.Unlock()
	r, err = q.readUsable(a.ComposeID)
	if err != nil {
		return river.JobCancel(fmt.Errorf("recording the upload of image build %s: %w", a.ImageBuildID, err))
	}
	b, ji := r.build(a.ImageBuildID), r.Jobs[a.ImageBuildID]
	var ret error
	switch {
	case ji.CancelRequested || errors.Is(context.Cause(bctx), errCancelled):
		r.endUpload(b, Failed, nil, ReasonCancelled)
		ret = river.JobCancel(errCancelled)
	case bctx.Err() != nil && q.closing.Load():
		ji.Interrupts++
		if job.Attempt >= maxAttempts {
			reason := fmt.Sprintf("%v (%d times); not started again", errInterrupted, ji.Interrupts)
			r.endUpload(b, Failed, nil, reason)
			ret = river.JobCancel(errors.New(reason))
		} else {
			b.Upload.State = Waiting
			ret = errInterrupted
		}
	case upErr != nil:
		r.endUpload(b, Failed, nil, upErr.Error())
		ret = river.JobCancel(upErr)
	default:
		r.endUpload(b, Finished, result, "")
	}
	q.appendLog(r.ID, b.ID, "cosa serve: upload %s is %s%s\n", b.Upload.ID, b.Upload.State, suffix(b.Upload.Error))
	if err := q.writeRecord(r); err != nil {
		return river.JobCancel(fmt.Errorf("recording the upload of image build %s: %w", b.ID, err))
	}
	return ret
}

// runUpload calls the Uploader with the build's log.
func (q *Queue) runUpload(ctx context.Context, r *record, b *ImageBuild) (res map[string]string, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("uploader panicked: %v", p)
		}
	}()
	if q.opts.Uploader == nil {
		return nil, errors.New("this service makes no uploads")
	}
	if r.Upload == nil {
		return nil, errors.New("the compose's upload settings are gone")
	}
	dir := q.outputDir(r.ID, b.ID)
	logf, err := os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "cosa serve: upload %s of image build %s to %s as %q\n", b.Upload.ID, b.ID, b.Upload.Provider, b.Upload.ImageName)
	u := *r.Upload
	u.Settings = maps.Clone(r.Upload.Settings)
	res, err = q.opts.Uploader.Upload(ctx, UploadJob{
		ComposeID: r.ID, ImageBuildID: b.ID, Type: b.Type, BuildID: b.BuildID, Blueprint: r.Blueprint,
		Upload: u, OutputDir: dir, Artifacts: append([]Artifact(nil), b.Artifacts...), Log: logf,
	})
	if err != nil {
		return nil, errors.New(redact(err.Error(), r.Upload.Settings))
	}
	return res, nil
}

// endUpload sets an upload's outcome.
func (r *record) endUpload(b *ImageBuild, st State, result map[string]string, reason string) {
	if b.Upload != nil {
		b.Upload.State, b.Upload.Result, b.Upload.Error = st, result, reason
	}
}

// settle runs before every record write: the upload of a failed build is
// FAILED too, and once no upload is left to make, the credentials leave
// the record.
func (r *record) settle() {
	pending := false
	for i := range r.Builds {
		b := &r.Builds[i]
		if b.Upload == nil {
			continue
		}
		if b.State == Failed && (b.Upload.State == Waiting || b.Upload.State == Running) {
			b.Upload.State, b.Upload.Error = Failed, "not made: the image build failed"
		}
		if b.State == Waiting || b.State == Running || b.UploadPending() {
			pending = true
		}
	}
	if r.Upload != nil && !pending {
		r.Upload.Settings = PublicSettings(r.Upload.Settings)
	}
}

// PublicSettings is settings without SecretSettings.
func PublicSettings(settings map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range settings {
		if !slices.Contains(SecretSettings, k) {
			out[k] = v
		}
	}
	return out
}

// redact replaces the values of the secret settings in s.
func redact(s string, settings map[string]string) string {
	for _, k := range SecretSettings {
		if v := settings[k]; len(v) >= 4 {
			s = strings.ReplaceAll(s, v, "[redacted "+k+"]")
		}
	}
	return s
}

func suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

// publicUpload is the upload request without its credentials: what the
// Runner is told.
func publicUpload(u *Upload) *Upload {
	if u == nil {
		return nil
	}
	c := *u
	c.Settings = PublicSettings(u.Settings)
	return &c
}

// run prepares the output dir and log and calls the Runner; a result's
// artifacts are checked against the files.
func (q *Queue) run(ctx context.Context, r *record, b *ImageBuild, attempt int) (res Result, err error) {
	// River would retry a panicking job as if interrupted; a panic is a
	// build failure like any other.
	defer func() {
		if p := recover(); p != nil {
			res, err = Result{}, fmt.Errorf("image build runner panicked: %v", p)
		}
	}()
	dir := q.outputDir(r.ID, b.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Result{}, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return Result{}, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "cosa serve: image build %s (%s) of compose %s, blueprint %s %s, attempt %d\n",
		b.ID, b.Type, r.ID, r.Blueprint, r.BlueprintVersion, attempt)
	bp, err := blueprint.ParseTOML([]byte(r.Frozen))
	if err != nil {
		return Result{}, fmt.Errorf("frozen blueprint: %w", err)
	}
	res, err = q.opts.Runner.Run(ctx, Job{
		ComposeID:     r.ID,
		ImageBuildID:  b.ID,
		Blueprint:     bp,
		BlueprintTOML: []byte(r.Frozen),
		Type:          b.Type,
		Size:          b.Size,
		OSTree:        r.OSTree,
		Upload:        publicUpload(r.Upload),
		OutputDir:     dir,
		Log:           logf,
	})
	if err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	for i := range res.Artifacts {
		if err := checkArtifact(dir, &res.Artifacts[i]); err != nil {
			return res, err
		}
	}
	return res, nil
}

// checkArtifact makes sure an artifact the Runner named is a file in dir,
// filling in its size and checksum when the Runner left them out.
func checkArtifact(dir string, a *Artifact) error {
	if a.Name == "" || a.Name != filepath.Base(a.Name) || a.Name == "." || a.Name == ".." || a.Name == "log" {
		return fmt.Errorf("artifact name %q is not a file name in the output directory", a.Name)
	}
	f, err := os.Open(filepath.Join(dir, a.Name))
	if err != nil {
		return fmt.Errorf("artifact %s: %w", a.Name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("artifact %s is not a regular file", a.Name)
	}
	if a.Size != 0 && a.Size != fi.Size() {
		return fmt.Errorf("artifact %s: size %d, the runner said %d", a.Name, fi.Size(), a.Size)
	}
	a.Size = fi.Size()
	if a.SHA256 == "" {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return fmt.Errorf("artifact %s: %w", a.Name, err)
		}
		a.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	return nil
}

// appendLog adds a line of the service's own to an image build's log.
func (q *Queue) appendLog(composeID, buildID, format string, args ...any) {
	dir := q.outputDir(composeID, buildID)
	if _, err := os.Stat(dir); err != nil {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format, args...)
}
