package composer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"
)

// reconcile runs at start, before any worker, with the state dir locked: it
// brings records and River's jobs back in line after a stop or a crash, so
// every compose is where it was or FAILED with the reason.
//
//   - A job River says is running belongs to a dead process. It is rescued
//     with River's own rescue operation: queued again (its build goes back
//     to WAITING) unless it has been interrupted maxAttempts times or its
//     build is no longer wanted, then finalized.
//   - A job left retryable by a stop is made available at once.
//   - A WAITING/RUNNING build with no job (a crash between writing the
//     record and queueing) is queued; one whose job is gone or finalized
//     is FAILED with the job's last error.
//   - Outputs of composes with no record (a crash inside Delete) go.
func (q *Queue) reconcile(ctx context.Context) error {
	recs, err := q.readAll()
	if err != nil {
		return err
	}
	byID := map[string]*record{}
	for _, r := range recs {
		byID[r.ID] = r
	}
	dirty := map[string]bool{}
	seen := map[string]bool{} // image builds with a live job
	now := time.Now().UTC()

	jobs, err := q.liveJobs(ctx)
	if err != nil {
		return err
	}
	rescue := riverdriver.JobRescueManyParams{Schema: q.client.Schema()}
	addRescue := func(job *rivertype.JobRow, state rivertype.JobState, msg string) error {
		errData, err := json.Marshal(rivertype.AttemptError{At: now, Attempt: max(job.Attempt, 0), Error: msg})
		if err != nil {
			return err
		}
		var fin *time.Time
		sched := job.ScheduledAt
		if state == rivertype.JobStateAvailable {
			sched = now
		} else {
			fin = &now
		}
		rescue.ID = append(rescue.ID, job.ID)
		rescue.Error = append(rescue.Error, errData)
		rescue.FinalizedAt = append(rescue.FinalizedAt, fin)
		rescue.ScheduledAt = append(rescue.ScheduledAt, sched)
		rescue.State = append(rescue.State, string(state))
		return nil
	}
	var cancel, retry []int64
	for _, job := range jobs {
		var a buildArgs
		_ = json.Unmarshal(job.EncodedArgs, &a) // bad args: nothing matches, the job is dropped
		r := byID[a.ComposeID]
		var b *ImageBuild
		var ji *jobInfo
		if r != nil && r.Broken == "" {
			b, ji = r.build(a.ImageBuildID), r.Jobs[a.ImageBuildID]
		}
		wanted := b != nil && live(b) && !ji.CancelRequested
		if b != nil && ji.CancelRequested && live(b) {
			failBuild(r, b, ReasonCancelled, now)
			dirty[r.ID] = true
		}
		if job.State != rivertype.JobStateRunning {
			switch {
			case !wanted:
				cancel = append(cancel, job.ID)
			case job.State == rivertype.JobStateRetryable || job.State == rivertype.JobStateScheduled:
				retry = append(retry, job.ID)
			}
			if wanted {
				seen[b.ID] = true
				if requeue(b) {
					dirty[r.ID] = true
				}
			}
			continue
		}
		// An orphan of a dead process.
		switch {
		case !wanted:
			if err := addRescue(job, rivertype.JobStateCancelled, "orphaned job of a build no longer wanted"); err != nil {
				return err
			}
		case job.Attempt >= maxAttempts:
			ji.Interrupts++
			reason := fmt.Sprintf("%v (%d times); not started again", errInterrupted, ji.Interrupts)
			if err := addRescue(job, rivertype.JobStateDiscarded, reason); err != nil {
				return err
			}
			failBuild(r, b, reason, now)
			q.appendLog(r.ID, b.ID, "cosa serve: image build %s is FAILED: %s\n", b.ID, reason)
			dirty[r.ID] = true
		default:
			ji.Interrupts++
			if err := addRescue(job, rivertype.JobStateAvailable, errInterrupted.Error()); err != nil {
				return err
			}
			requeue(b)
			q.appendLog(r.ID, b.ID, "cosa serve: %v; queued again\n", errInterrupted)
			seen[b.ID] = true
			dirty[r.ID] = true
		}
	}
	if len(rescue.ID) > 0 {
		if _, err := q.client.Driver().GetExecutor().JobRescueMany(ctx, &rescue); err != nil {
			return fmt.Errorf("rescuing jobs of a stopped service: %w", err)
		}
	}
	for _, id := range retry {
		if _, err := q.client.JobRetry(ctx, id); err != nil {
			return err
		}
	}
	for _, id := range cancel {
		if _, err := q.client.JobCancel(ctx, id); err != nil && !errors.Is(err, river.ErrNotFound) {
			return err
		}
	}

	for _, r := range recs {
		if r.Broken != "" {
			continue
		}
		var missing []ImageBuild
		for i := range r.Builds {
			b := &r.Builds[i]
			if !live(b) || seen[b.ID] {
				continue
			}
			ji := r.Jobs[b.ID]
			if ji.JobID == 0 && !b.UploadPending() {
				b.State, b.Started = Waiting, time.Time{}
				missing = append(missing, *b)
				dirty[r.ID] = true
				continue
			}
			reason := fmt.Sprintf("lost: its queue job %d is gone", ji.JobID)
			if job, err := q.client.JobGet(ctx, ji.JobID); err == nil {
				reason = fmt.Sprintf("lost: its queue job %d is %s", job.ID, job.State)
				if n := len(job.Errors); n > 0 {
					reason += " (" + job.Errors[n-1].Error + ")"
				}
			} else if !errors.Is(err, river.ErrNotFound) {
				return err
			}
			failBuild(r, b, reason, now)
			dirty[r.ID] = true
		}
		if len(missing) > 0 {
			if err := q.insertJobs(ctx, r, missing); err != nil {
				return err
			}
		}
	}
	for id := range dirty {
		if err := q.writeRecord(byID[id]); err != nil {
			return err
		}
	}

	outs, err := os.ReadDir(filepath.Join(q.stateDir, "outputs"))
	if err != nil {
		return err
	}
	for _, e := range outs {
		if _, ok := byID[e.Name()]; ok || !validID(e.Name()) {
			continue
		}
		if _, err := os.Lstat(q.recordPath(e.Name())); errors.Is(err, os.ErrNotExist) {
			os.RemoveAll(filepath.Join(q.stateDir, "outputs", e.Name()))
		}
	}
	return nil
}

// liveJobs lists this queue's jobs that are not finalized.
func (q *Queue) liveJobs(ctx context.Context) ([]*rivertype.JobRow, error) {
	params := river.NewJobListParams().Kinds(jobKind).States(
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
		rivertype.JobStateRunning, rivertype.JobStateScheduled,
	).First(1000)
	var all []*rivertype.JobRow
	for {
		res, err := q.client.JobList(ctx, params)
		if err != nil {
			return nil, err
		}
		all = append(all, res.Jobs...)
		if len(res.Jobs) < 1000 {
			return all, nil
		}
		params = params.After(res.LastCursor)
	}
}

// live says whether an image build still needs its job: to be built, or
// built with its upload still to make.
func live(b *ImageBuild) bool {
	return b.State == Waiting || b.State == Running || b.UploadPending()
}

// requeue puts a live build back to waiting for its job: the build, or
// only its upload when the build is FINISHED. It says whether it changed.
func requeue(b *ImageBuild) bool {
	switch {
	case b.State == Running:
		b.State, b.Started = Waiting, time.Time{}
		return true
	case b.UploadPending() && b.Upload.State == Running:
		b.Upload.State = Waiting
		return true
	}
	return false
}

// failBuild fails a live build, or only its upload when the build is
// FINISHED (the image stays).
func failBuild(r *record, b *ImageBuild, reason string, now time.Time) {
	if b.UploadPending() {
		r.endUpload(b, Failed, nil, reason)
		return
	}
	b.fail(reason, now)
}
