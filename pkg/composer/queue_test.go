package composer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
)

// The test runner is the job payload: "ok" writes an image, "fail" fails,
// "block" writes to its log, says it started and waits for its context
// (unless finish is set, then it behaves like "ok").
type testRunner struct {
	finish  bool
	started chan string // image build ids, as they start
	ended   chan string // image build ids whose context ended
}

func newRunner(finish bool) *testRunner {
	return &testRunner{finish: finish, started: make(chan string, 100), ended: make(chan string, 100)}
}

func (r *testRunner) Run(ctx context.Context, job Job) (Result, error) {
	fmt.Fprintf(job.Log, "building %s for %s\n", job.Type, job.Blueprint.Name)
	r.started <- job.ImageBuildID
	switch {
	case job.Type == "panic":
		panic("runner bug")
	case job.Type == "fail":
		fmt.Fprintln(job.Log, "failing")
		return Result{}, errors.New("boom: the build failed")
	case job.Type == "block" && !r.finish:
		<-ctx.Done()
		r.ended <- job.ImageBuildID
		return Result{}, ctx.Err()
	}
	data := []byte("image of " + job.ImageBuildID)
	if err := os.WriteFile(filepath.Join(job.OutputDir, "disk.img"), data, 0o644); err != nil {
		return Result{}, err
	}
	return Result{Artifacts: []Artifact{{Name: "disk.img"}}, BuildID: "1.0-" + job.Type}, nil
}

var testTypes = []ImageType{{Name: "ok", Enabled: true}, {Name: "fail", Enabled: true},
	{Name: "block", Enabled: true}, {Name: "panic", Enabled: true}, {Name: "off", Enabled: false}}

const testBlueprint = "name = \"web\"\ndescription = \"a test\"\nversion = \"1.2.3\"\n"

func open(t *testing.T, dir string, r Runner) *Queue {
	t.Helper()
	return openWith(t, Options{StateDir: dir, Runner: r})
}

// openWith opens a queue of the test types, polling often, closed when the
// test ends.
func openWith(t *testing.T, o Options) *Queue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o.Types, o.PollInterval = testTypes, 50*time.Millisecond
	if os.Getenv("COSA_COMPOSER_TEST_LOG") != "" {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	q, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		q.Close(ctx)
	})
	return q
}

func start(t *testing.T, q *Queue, types ...string) *Compose {
	t.Helper()
	c, err := q.Start(context.Background(), Request{Blueprint: []byte(testBlueprint), Types: types})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitState waits (bounded) until the compose is in state, woken by record
// changes rather than by polling.
func waitState(t *testing.T, q *Queue, id string, want State) *Compose {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		ch := q.Changed()
		c, err := q.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if c.State() == want {
			return c
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("compose %s: state %s, waited for %s: %+v", id, c.State(), want, c.Builds)
		}
	}
}

func recv(t *testing.T, ch chan string) string {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("timed out waiting for the runner")
	}
	return ""
}

func TestFinishedWithArtifacts(t *testing.T) {
	dir := t.TempDir()
	r := newRunner(true)
	q := open(t, dir, r)
	c := start(t, q, "ok", "ok")
	if c.State() != Waiting || len(c.Builds) != 2 || c.Blueprint != "web" || c.BlueprintVersion != "1.2.3" {
		t.Fatalf("started compose: %+v", c)
	}
	if !strings.Contains(c.Frozen, `"web"`) {
		t.Errorf("frozen blueprint: %q", c.Frozen)
	}
	c = waitState(t, q, c.ID, Finished)
	for _, b := range c.Builds {
		want := "image of " + b.ID
		sum := sha256.Sum256([]byte(want))
		if len(b.Artifacts) != 1 || b.Artifacts[0].Size != int64(len(want)) || b.Artifacts[0].SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("artifacts of %s: %+v", b.ID, b.Artifacts)
		}
		if b.BuildID != "1.0-ok" || b.Started.IsZero() || b.Finished.Before(b.Started) {
			t.Errorf("build %+v", b)
		}
		rc, size, err := q.Artifact(context.Background(), b.ID, "disk.img")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		if string(data) != want || size != int64(len(want)) {
			t.Errorf("artifact %q size %d", data, size)
		}
		if _, _, err := q.Artifact(context.Background(), b.ID, "../"+b.ID+"/log"); err == nil {
			t.Error("artifact outside the list was served")
		}
		// Get by image build id finds the compose.
		g, err := q.Get(context.Background(), b.ID)
		if err != nil || g.ID != c.ID {
			t.Errorf("Get(%s) = %v, %v", b.ID, g, err)
		}
		lr, err := q.Log(context.Background(), b.ID)
		if err != nil {
			t.Fatal(err)
		}
		log, _ := io.ReadAll(lr)
		lr.Close()
		if !strings.Contains(string(log), "building ok for web") || !strings.Contains(string(log), "is FINISHED") {
			t.Errorf("log: %s", log)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "outputs", c.ID, c.Builds[0].ID, "disk.img")); err != nil {
		t.Error(err)
	}
	if _, err := q.Get(context.Background(), "00000000-0000-4000-8000-000000000000"); !errors.Is(err, ErrUnknownCompose) {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := q.Get(context.Background(), "../../etc/passwd"); !errors.Is(err, ErrUnknownCompose) {
		t.Errorf("bad id: %v", err)
	}
}

func TestFailure(t *testing.T) {
	q := open(t, t.TempDir(), newRunner(true))
	events, stop := q.client.Subscribe(river.EventKindJobCancelled, river.EventKindJobFailed, river.EventKindJobCompleted)
	defer stop()
	c := start(t, q, "fail")
	c = waitState(t, q, c.ID, Failed)
	select {
	case ev := <-events:
		if ev.Kind != river.EventKindJobCancelled {
			t.Errorf("River event %s", ev.Kind)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("River never finalized the job")
	}
	if b := c.Builds[0]; b.Error != "boom: the build failed" || b.Finished.IsZero() || len(b.Artifacts) != 0 {
		t.Errorf("failed build: %+v", b)
	}
	// A build failure is final: River does not run it again.
	job, err := q.client.JobGet(context.Background(), mustJob(t, q, c.ID, c.Builds[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	if job.State != "cancelled" || job.Attempt != 1 || len(job.Errors) != 1 || !strings.Contains(job.Errors[0].Error, "boom") {
		t.Errorf("River job: state %s attempt %d errors %+v", job.State, job.Attempt, job.Errors)
	}
}

func TestRunnerPanic(t *testing.T) {
	q := open(t, t.TempDir(), newRunner(true))
	c := waitState(t, q, start(t, q, "panic").ID, Failed)
	if e := c.Builds[0].Error; !strings.Contains(e, "panicked: runner bug") {
		t.Errorf("reason: %q", e)
	}
}

func mustJob(t *testing.T, q *Queue, composeID, buildID string) int64 {
	t.Helper()
	r, err := q.readRecord(composeID)
	if err != nil || r.Jobs[buildID] == nil || r.Jobs[buildID].JobID == 0 {
		t.Fatalf("no job recorded for %s: %v", buildID, err)
	}
	return r.Jobs[buildID].JobID
}

func TestTypes(t *testing.T) {
	q := open(t, t.TempDir(), newRunner(true))
	if got := q.Types(); len(got) != len(testTypes) || got[len(got)-1].Enabled {
		t.Errorf("types %+v", got)
	}
	for _, ty := range []string{"nope", "off"} {
		if _, err := q.Start(context.Background(), Request{Blueprint: []byte(testBlueprint), Types: []string{ty}}); !errors.Is(err, ErrUnknownType) {
			t.Errorf("type %s: %v", ty, err)
		}
	}
	if _, err := q.Start(context.Background(), Request{Blueprint: []byte("name = "), Types: []string{"ok"}}); err == nil {
		t.Error("bad blueprint accepted")
	}
	if l, _ := q.List(context.Background()); len(l) != 0 {
		t.Errorf("refused starts left composes: %+v", l)
	}
}

func TestCancelWaitingAndRunning(t *testing.T) {
	dir := t.TempDir()
	r := newRunner(false)
	q := open(t, dir, r)
	running := start(t, q, "block")
	bid := recv(t, r.started)
	if bid != running.Builds[0].ID {
		t.Fatalf("started %s", bid)
	}
	waitState(t, q, running.ID, Running)
	waiting := start(t, q, "ok") // one worker: waits behind the running one

	if err := q.Delete(context.Background(), running.ID); !errors.Is(err, ErrBadState) {
		t.Errorf("delete of a running compose: %v", err)
	}
	if err := q.Delete(context.Background(), waiting.ID); !errors.Is(err, ErrBadState) {
		t.Errorf("delete of a waiting compose: %v", err)
	}
	// The log is readable while the build runs.
	lr, err := q.Log(context.Background(), bid)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := io.ReadAll(lr)
	lr.Close()
	if !strings.Contains(string(log), "building block") {
		t.Errorf("running log: %q", log)
	}

	if err := q.Cancel(context.Background(), waiting.ID); err != nil {
		t.Fatal(err)
	}
	c := waitState(t, q, waiting.ID, Failed)
	if c.Builds[0].Error != ReasonCancelled {
		t.Errorf("cancelled waiting: %+v", c.Builds[0])
	}
	if err := q.Cancel(context.Background(), running.ID); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, r.ended); got != bid {
		t.Errorf("runner saw ctx.Done for %s", got)
	}
	c = waitState(t, q, running.ID, Failed)
	if c.Builds[0].Error != ReasonCancelled {
		t.Errorf("cancelled running: %+v", c.Builds[0])
	}
	if err := q.Cancel(context.Background(), running.ID); !errors.Is(err, ErrBadState) {
		t.Errorf("second cancel: %v", err)
	}
	// Run something after both so the worker has looked at the queue
	// again; the cancelled waiting build must never have started.
	after := start(t, q, "ok")
	if got := recv(t, r.started); got != after.Builds[0].ID {
		t.Errorf("runner started %s, not the compose after the cancels", got)
	}
	waitState(t, q, after.ID, Finished)
	if _, err := os.Stat(filepath.Join(dir, "outputs", waiting.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cancelled waiting compose ran: %v", err)
	}

	// Delete removes the record and the outputs.
	out := filepath.Join(dir, "outputs", running.ID)
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
	if err := q.Delete(context.Background(), running.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("outputs left: %v", err)
	}
	if _, err := q.Get(context.Background(), running.ID); !errors.Is(err, ErrUnknownCompose) {
		t.Errorf("deleted compose: %v", err)
	}
	if l, _ := q.List(context.Background()); len(l) != 2 {
		t.Errorf("list after delete: %d composes", len(l))
	}
}

func TestCloseMidRun(t *testing.T) {
	dir := t.TempDir()
	r := newRunner(false)
	q := open(t, dir, r)
	c := start(t, q, "block")
	recv(t, r.started)
	waitState(t, q, c.ID, Running)
	// A hard close: the running build's context is cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q.Close(ctx)
	recv(t, r.ended)
	// Where it was: waiting, to run again.
	if rec, err := q.readRecord(c.ID); err != nil || rec.State() != Waiting {
		t.Fatalf("record after a hard close: %+v, %v", rec, err)
	}
	q2 := open(t, dir, newRunner(true))
	got := waitState(t, q2, c.ID, Finished)
	if len(got.Builds[0].Artifacts) != 1 {
		t.Errorf("rerun: %+v", got.Builds[0])
	}
}

// TestMain doubles as the child process of TestKilled.
func TestMain(m *testing.M) {
	if dir := os.Getenv("COSA_COMPOSER_TEST_CHILD"); dir != "" {
		child(dir)
		return
	}
	os.Exit(m.Run())
}

// child starts a blocking compose (or, given one, waits for it to run
// again), says so on stdout and waits to be killed.
func child(dir string) {
	// With COSA_COMPOSER_TEST_UPLOAD set, the build finishes and its
	// upload is what runs when the child is killed.
	upload := os.Getenv("COSA_COMPOSER_TEST_UPLOAD") != ""
	r, u := newRunner(upload), newUploader(false)
	q, err := New(context.Background(), Options{StateDir: dir, Runner: r, Uploader: u, Types: testTypes, PollInterval: 50 * time.Millisecond})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	id := os.Getenv("COSA_COMPOSER_TEST_COMPOSE")
	if id == "" {
		req := Request{Blueprint: []byte(testBlueprint), Types: []string{"block"}}
		if upload {
			req.Upload = testUpload
		}
		c, err := q.Start(context.Background(), req)
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		id = c.ID
	}
	if upload {
		<-u.started
	} else {
		<-r.started
	}
	for {
		ch := q.Changed()
		if got, err := q.Get(context.Background(), id); err == nil && got.State() == Running {
			break
		}
		<-ch
	}
	fmt.Println("RUNNING", id)
	select {}
}

// runAndKill runs the child on dir until its build runs, then SIGKILLs it
// by PID, leaving the record RUNNING and River's job running.
func runAndKill(t *testing.T, dir, composeID string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "COSA_COMPOSER_TEST_CHILD="+dir, "COSA_COMPOSER_TEST_COMPOSE="+composeID)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	lines := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		if s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("child did not start its compose")
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL, by PID
		t.Fatal(err)
	}
	id, ok := strings.CutPrefix(line, "RUNNING ")
	if !ok {
		t.Fatalf("child: %q", line)
	}
	return id
}

func TestKilled(t *testing.T) {
	dir := t.TempDir()
	id := runAndKill(t, dir, "")
	// What a kill leaves: the record says RUNNING.
	if rec, err := (&Queue{stateDir: dir}).readRecord(id); err != nil || rec.State() != Running {
		t.Fatalf("record after the kill: %+v, %v", rec, err)
	}
	q := open(t, dir, newRunner(true))
	c := waitState(t, q, id, Finished)
	lr, err := q.Log(context.Background(), c.Builds[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := io.ReadAll(lr)
	lr.Close()
	if !strings.Contains(string(log), "queued again") || !strings.Contains(string(log), "attempt 2") {
		t.Errorf("log after the kill: %s", log)
	}
}

func TestKilledTooOften(t *testing.T) {
	dir := t.TempDir()
	id := runAndKill(t, dir, "")
	for i := 1; i < maxAttempts; i++ {
		runAndKill(t, dir, id)
	}
	q := open(t, dir, newRunner(true))
	c := waitState(t, q, id, Failed)
	if e := c.Builds[0].Error; !strings.Contains(e, "interrupted") || !strings.Contains(e, "3 times") {
		t.Errorf("reason: %q", e)
	}
}

func TestOrphanOutOfAttempts(t *testing.T) {
	// A build that keeps being interrupted is failed with the reason
	// rather than started forever.
	dir := t.TempDir()
	var id string
	for i := 0; i < maxAttempts; i++ {
		r := newRunner(false)
		q := open(t, dir, r)
		if i == 0 {
			id = start(t, q, "block").ID
		}
		recv(t, r.started)
		waitState(t, q, id, Running)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		q.Close(ctx)
	}
	q := open(t, dir, newRunner(true))
	c := waitState(t, q, id, Failed)
	if e := c.Builds[0].Error; !strings.Contains(e, "interrupted") || !strings.Contains(e, "3 times") {
		t.Errorf("reason: %q", e)
	}
}

func TestCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, newRunner(true))
	var ids []string
	for i := 0; i < 4; i++ {
		c := start(t, q, "ok")
		waitState(t, q, c.ID, Finished)
		ids = append(ids, c.ID)
	}
	ctx := context.Background()
	q.Close(ctx)

	truncated, garbage := ids[1], ids[2]
	p := filepath.Join(dir, "composes", truncated+".json")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "composes", garbage+".json"), []byte("\x00\x01garbage"), 0o600); err != nil {
		t.Fatal(err)
	}

	q = open(t, dir, newRunner(true))
	check := func() {
		t.Helper()
		l, err := q.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(l) != len(ids) {
			t.Fatalf("listed %d composes, want %d", len(l), len(ids))
		}
		for _, c := range l {
			damaged := c.ID == truncated || c.ID == garbage
			if damaged != (c.Broken != "") {
				t.Errorf("compose %s: broken %q", c.ID, c.Broken)
			}
			if damaged && (c.State() != Failed || !strings.Contains(c.Broken, c.ID+".json")) {
				t.Errorf("damaged compose %s: state %s reason %q", c.ID, c.State(), c.Broken)
			}
			if !damaged && c.State() != Finished {
				t.Errorf("compose %s: %s", c.ID, c.State())
			}
		}
		for _, id := range []string{ids[0], ids[3]} {
			if c, err := q.Get(ctx, id); err != nil || c.State() != Finished {
				t.Errorf("Get(%s) = %v, %v", id, c, err)
			}
		}
		if c, err := q.Get(ctx, garbage); err != nil || c.Broken == "" {
			t.Errorf("Get of the damaged compose: %v, %v", c, err)
		}
	}
	check()
	// New composes still run next to the damaged records.
	c := start(t, q, "ok")
	waitState(t, q, c.ID, Finished)
	ids = append(ids, c.ID)
	check()

	// Damage while the service runs is seen the same way.
	if err := os.WriteFile(filepath.Join(dir, "composes", ids[0]+".json"), []byte(`{"version": 1, "id": "`), 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := q.List(ctx); err != nil || len(l) != len(ids) {
		t.Fatalf("list with a record damaged at run time: %d, %v", len(l), err)
	}
	// A damaged compose can be deleted, outputs and all.
	if err := q.Delete(ctx, garbage); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "outputs", garbage)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("outputs of the deleted damaged compose: %v", err)
	}
}

func TestManyConcurrent(t *testing.T) {
	q := open(t, t.TempDir(), newRunner(true))
	const n = 20
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := q.Start(context.Background(), Request{Blueprint: []byte(testBlueprint), Types: []string{"ok"}})
			if err != nil {
				errs <- err
				return
			}
			ids[i] = c.ID
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range ids {
		waitState(t, q, id, Finished)
	}
	l, err := q.List(context.Background())
	if err != nil || len(l) != n {
		t.Fatalf("list: %d, %v", len(l), err)
	}
	for i := 1; i < len(l); i++ {
		if l[i].Created.Before(l[i-1].Created) {
			t.Error("list not oldest first")
		}
	}
}

func TestOneServicePerStateDir(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, newRunner(true))
	if _, err := New(context.Background(), Options{StateDir: dir, Runner: newRunner(true), Types: testTypes}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second service on one state dir: %v", err)
	}
}

func TestRecordsWithoutJobs(t *testing.T) {
	// What a crash between writing a record and queueing its jobs leaves
	// (no job id), and a record whose job vanished from the database.
	dir := t.TempDir()
	q := open(t, dir, newRunner(true))
	q.Close(context.Background())

	w := &Queue{stateDir: dir, changed: make(chan struct{})}
	now := time.Now().UTC()
	mk := func(id, bid string, st State, jobID int64) {
		r := &record{
			Compose: Compose{ID: id, Blueprint: "web", BlueprintVersion: "1.2.3", Created: now, Frozen: testBlueprint,
				Builds: []ImageBuild{{ID: bid, Type: "ok", State: st, Created: now}}},
			Jobs: map[string]*jobInfo{bid: {JobID: jobID}},
		}
		if err := w.writeRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	unqueued, lost := "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
	mk(unqueued, "11111111-1111-4111-8111-aaaaaaaaaaaa", Waiting, 0)
	mk(lost, "22222222-2222-4222-8222-aaaaaaaaaaaa", Running, 999)

	q = open(t, dir, newRunner(true))
	waitState(t, q, unqueued, Finished)
	c := waitState(t, q, lost, Failed)
	if e := c.Builds[0].Error; !strings.Contains(e, "lost") || !strings.Contains(e, "999") {
		t.Errorf("reason: %q", e)
	}
}

func TestEnabledFunc(t *testing.T) {
	on := map[string]bool{"ok": true}
	q, err := New(context.Background(), Options{StateDir: t.TempDir(), Runner: newRunner(true), Types: testTypes,
		Enabled: func(n string) bool { return on[n] }})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	for _, ty := range q.Types() {
		if ty.Enabled != on[ty.Name] {
			t.Errorf("type %+v", ty)
		}
	}
	if _, err := q.Start(context.Background(), Request{Blueprint: []byte(testBlueprint), Types: []string{"fail"}}); !errors.Is(err, ErrUnknownType) {
		t.Errorf("disabled type started: %v", err)
	}
}

// Test composes (Weldr's ?test=N) are in their final state when Start
// returns, never reach the runner, keep no upload credentials, and survive
// a restart like any other compose.
func TestTestComposes(t *testing.T) {
	dir := t.TempDir()
	r, u := newRunner(true), newUploader(true)
	q := openWithUploader(t, dir, r, u)
	ctx := context.Background()
	fin, err := q.Start(ctx, Request{Blueprint: []byte(testBlueprint), Types: []string{"ok", "block"}, Upload: testUpload, Test: 2})
	if err != nil {
		t.Fatal(err)
	}
	if fin.State() != Finished {
		t.Errorf("test=2 compose is %s when Start returns", fin.State())
	}
	failed, err := q.Start(ctx, Request{Blueprint: []byte(testBlueprint), Types: []string{"ok"}, Test: 1})
	if err != nil {
		t.Fatal(err)
	}
	if failed.State() != Failed || !strings.Contains(failed.Builds[0].Error, "test=1") {
		t.Errorf("test=1 compose: %s %+v", failed.State(), failed.Builds[0])
	}
	if _, err := q.Start(ctx, Request{Blueprint: []byte(testBlueprint), Types: []string{"ok"}, Test: 3}); err == nil {
		t.Error("test=3 was accepted")
	}
	if secretsInRecord(t, q, fin.ID) {
		t.Error("a test compose's record keeps the upload credentials")
	}
	select {
	case id := <-u.started:
		t.Errorf("a test compose was uploaded (%s)", id)
	default:
	}
	for _, id := range []string{fin.Builds[0].ID, fin.Builds[1].ID, failed.Builds[0].ID} {
		log, err := q.Log(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(log)
		log.Close()
		if !strings.Contains(string(data), "test compose") {
			t.Errorf("image build %s log: %q", id, data)
		}
	}
	select {
	case id := <-r.started:
		t.Errorf("a test compose reached the runner (image build %s)", id)
	default:
	}
	// After a restart both are where they were.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	q.Close(cctx)
	cancel()
	q = openWithUploader(t, dir, r, u)
	list, err := q.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %d composes, %v", len(list), err)
	}
	for _, c := range list {
		if want := map[string]State{fin.ID: Finished, failed.ID: Failed}[c.ID]; c.State() != want {
			t.Errorf("compose %s after a restart: %s, want %s", c.ID, c.State(), want)
		}
	}
	if err := q.Delete(ctx, fin.ID); err != nil {
		t.Errorf("deleting a finished test compose: %v", err)
	}
	if err := q.Cancel(ctx, failed.ID); err == nil {
		t.Error("cancelling a FAILED test compose succeeded")
	}
}
