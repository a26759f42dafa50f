package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/fsattr"
)

// Engine runs manifests against an object store.
type Engine struct {
	Store   *Store
	Scratch string // where working trees live (same filesystem as Store for cheap renames)
	Sources Sources
	Events  events.Sink // nil: none
	Log     io.Writer   // full stage output
	// PipelineDone, if set, is called as soon as each pipeline's result is
	// in the store (built or cached), with its final stage id and object
	// path, so callers can start work on it while later pipelines run.
	PipelineDone func(pipeline, id, dir string)
}

// Result of a run: where each exported pipeline's finished tree is. The
// paths are objects in the store: read them, do not change them.
type Result struct {
	Exports map[string]string
	// Ran and Cached count stages executed and pipelines served whole from
	// the store.
	Ran, Cached int
	StageTimes  []StageTime
	hold        *storeUse
}

// StageTime records one executed stage.
type StageTime struct {
	Pipeline, Stage, ID string
	Duration            time.Duration
}

// StageError is a failed stage.
type StageError struct {
	Pipeline, Stage, ID string
	Err                 error
}

func (e *StageError) Error() string {
	return fmt.Sprintf("pipeline %s, stage %s (id %s): %v", e.Pipeline, e.Stage, e.ID[:12], e.Err)
}

func (e *StageError) Unwrap() error { return e.Err }

// Run builds the exported pipelines (and what they need).
func (en *Engine) Run(ctx context.Context, m *Manifest, exports []string) (*Result, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	ids, err := m.IDs()
	if err != nil {
		return nil, err
	}
	pipes, err := m.needed(exports)
	if err != nil {
		return nil, err
	}
	// Working trees of runs that were killed are garbage once no run is
	// active (scratch is shared by all runs of this workdir).
	use, err := en.Store.use(func() { fileutil.RemoveAll(en.Scratch) })
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			use.release()
		}
	}()
	if err := os.MkdirAll(en.Scratch, 0o755); err != nil {
		return nil, err
	}
	// Each run makes and deletes whole trees here; a speed-up only.
	fsattr.SpreadSubdirs(en.Scratch)
	log := en.Log
	if log == nil {
		log = io.Discard
	}
	res := &Result{Exports: map[string]string{}}
	done := map[string]string{} // pipeline -> finished object path
	for _, p := range pipes {
		pids := ids[p.Name]
		final := pids[len(pids)-1]
		en.emit(events.Event{Type: events.PipelineStart, Pipeline: p.Name, ID: final})
		if en.Store.Has(final) {
			en.emit(events.Event{Type: events.StageCached, Pipeline: p.Name, ID: final,
				Message: fmt.Sprintf("%s: all %d stages cached", p.Name, len(p.Stages))})
			done[p.Name] = en.Store.Path(final)
			res.Cached++
			en.pipelineDone(p.Name, final)
			continue
		}
		if err := en.runPipeline(ctx, p, pids, done, log, res); err != nil {
			return nil, err
		}
		done[p.Name] = en.Store.Path(final)
		en.pipelineDone(p.Name, final)
	}
	keep := map[string]bool{}
	for _, p := range pipes {
		keep[ids[p.Name][len(ids[p.Name])-1]] = true
	}
	if use.tryExclusive() {
		if evicted, err := en.Store.Evict(keep); err != nil {
			return nil, err
		} else if len(evicted) > 0 {
			en.emit(events.Event{Type: events.Info, Message: fmt.Sprintf("evicted %d cached objects to stay under the cache size cap", len(evicted))})
		}
	}
	// The exports stay readable until the caller is done with them.
	if err := use.shared(); err != nil {
		return nil, err
	}
	for _, e := range exports {
		res.Exports[e] = done[e]
	}
	res.hold, ok = use, true
	return res, nil
}

// Close ends the run's hold on the store: its exports may be evicted by
// later runs from then on.
func (r *Result) Close() {
	if r != nil && r.hold != nil {
		r.hold.release()
		r.hold = nil
	}
}

func (en *Engine) pipelineDone(name, id string) {
	if en.PipelineDone != nil {
		en.PipelineDone(name, id, en.Store.Path(id))
	}
}

func (en *Engine) runPipeline(ctx context.Context, p *Pipeline, pids []string, done map[string]string, log io.Writer, res *Result) error {
	work := filepath.Join(en.Scratch, "tree-"+p.Name+"-"+randHex(4))
	defer fileutil.RemoveAll(work)
	// Resume from the newest stored stage.
	start := 0
	for i := len(pids) - 2; i >= 0; i-- {
		if en.Store.Has(pids[i]) {
			if err := copyTree(ctx, en.Store.Path(pids[i]), work); err != nil {
				return err
			}
			start = i + 1
			en.emit(events.Event{Type: events.StageCached, Pipeline: p.Name, ID: pids[i],
				Message: fmt.Sprintf("%s: resuming after cached stage %d/%d (%s)", p.Name, i+1, len(pids), p.Stages[i].Type)})
			break
		}
	}
	if start == 0 {
		if err := os.MkdirAll(work, 0o755); err != nil {
			return err
		}
	}
	// The run holds the store shared, so none of these can be evicted
	// while a stage links files out of them.
	reuse := en.Store.Recent(8)
	for i := start; i < len(p.Stages); i++ {
		s := p.Stages[i]
		id := pids[i]
		impl, _ := newStage(s.Type)
		if err := decodeOptions(s.Options, impl); err != nil {
			return &StageError{p.Name, s.Type, id, err}
		}
		inputs := map[string]string{}
		for name, ref := range s.Inputs {
			inputs[name] = done[strings.TrimPrefix(ref, "name:")]
		}
		scratch := filepath.Join(en.Scratch, "stage-"+randHex(4))
		if err := os.MkdirAll(scratch, 0o755); err != nil {
			return err
		}
		tail := hostcmd.NewTail(25)
		env := &Env{Tree: work, Inputs: inputs, Sources: en.Sources, Scratch: scratch, Log: io.MultiWriter(log, tail), Reuse: reuse}
		en.emit(events.Event{Type: events.StageStart, Pipeline: p.Name, Stage: s.Type, ID: id})
		t0 := time.Now()
		err := impl.Run(ctx, env)
		fileutil.RemoveAll(scratch)
		if err != nil {
			se := &StageError{p.Name, s.Type, id, fmt.Errorf("%v\n--- last output ---\n%s", err, tail.String())}
			en.emit(events.Event{Type: events.StageFailed, Pipeline: p.Name, Stage: s.Type, ID: id, Error: err.Error()})
			return se
		}
		d := time.Since(t0)
		res.Ran++
		res.StageTimes = append(res.StageTimes, StageTime{p.Name, s.Type, id, d})
		en.emit(events.Event{Type: events.StageFinish, Pipeline: p.Name, Stage: s.Type, ID: id, DurationS: d.Seconds()})
		switch {
		case i == len(p.Stages)-1:
			if err := en.Store.CommitMove(ctx, work, id); err != nil {
				return err
			}
		case s.Checkpoint:
			if err := en.Store.Commit(ctx, work, id); err != nil {
				return err
			}
		}
	}
	return nil
}
