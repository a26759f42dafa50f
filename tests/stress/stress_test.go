// Package stress is cosa's crash-safety test: it SIGKILLs `cosa build`,
// `buildextend-metal`, `compress`, `decompress` and `buildupload` at random
// points and checks after each kill that builds/ is consistent and that
// running the same command again succeeds without manual clean-up; it also
// runs two builds and four buildextend-* at once. It takes tens of minutes
// and only runs with COSA_STRESS=1 (`make stress`).
//
// Environment:
//
//	COSA_STRESS=1          run at all
//	COSA_STRESS_KILLS=N    number of kills (default 50)
//	COSA_STRESS_SEED=S     seed of the kill points (default: time), printed so a run can be replayed
//	COSA_STRESS_WORKDIR=D  use (and keep) this workdir; an existing build there skips the first build
//	COSA_STRESS_KEEP=1     keep the temporary workdir and logs
package stress

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cosa-build/cosa/pkg/build"
)

type stress struct {
	t       *testing.T
	bin     string
	root    string // temp dir: logs, gateway data
	workdir string
	logDir  string
	env     []string
	runs    int
	hashes  hashCache
	gw      *gateway
	cases   []caseResult
	fracs   []float64 // kill points, as fractions of a calibrated run
	nextF   int
}

type caseResult struct {
	name string
	ok   bool
}

// Commands and their share of the kills. A build takes minutes, the
// others seconds, so builds get few kills.
var killShares = []struct {
	cmd   string
	share float64
}{{"build", 0.06}, {"metal", 0.30}, {"compress", 0.16}, {"decompress", 0.14}, {"upload", 0.34}}

// allocate splits n kills by killShares (largest remainder; at least one
// build kill once n >= 5).
func allocate(n int) map[string]int {
	out := map[string]int{}
	type rem struct {
		cmd string
		r   float64
	}
	var rems []rem
	left := n
	for _, k := range killShares {
		x := float64(n) * k.share
		out[k.cmd] = int(math.Floor(x))
		left -= out[k.cmd]
		rems = append(rems, rem{k.cmd, x - math.Floor(x)})
	}
	slices.SortStableFunc(rems, func(a, b rem) int {
		switch {
		case a.r > b.r:
			return -1
		case a.r < b.r:
			return 1
		}
		return 0
	})
	for i := 0; left > 0; i++ {
		out[rems[i%len(rems)].cmd]++
		left--
	}
	if n >= 5 && out["build"] == 0 {
		out["build"]++
		out["upload"]--
	}
	return out
}

const lockTimeout = "3m" // a lock a killed run never released shows up as a failure, not a hang

func TestStress(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test; skipped with -short")
	}
	if os.Getenv("COSA_STRESS") != "1" {
		t.Skip("stress test; set COSA_STRESS=1 (make stress)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the stress test needs root (cosa build uses mmdebstrap --mode=root and namespaces)")
	}
	kills := 50
	if v := os.Getenv("COSA_STRESS_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("COSA_STRESS_KILLS=%q: want a number", v)
		}
		kills = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("COSA_STRESS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("COSA_STRESS_SEED=%q: want a number", v)
		}
		seed = n
	}
	t0 := time.Now()
	alloc := allocate(kills)
	fmt.Printf("stress: seed %d (COSA_STRESS_SEED=%d to replay the kill points), %d kills: build %d, buildextend-metal %d, compress %d, decompress %d, buildupload %d\n",
		seed, seed, kills, alloc["build"], alloc["metal"], alloc["compress"], alloc["decompress"], alloc["upload"])

	s := newStress(t, seed, kills)
	defer s.cleanup()

	s.setup()
	s.phaseBuild(alloc["build"])
	s.concurrentBuilds()
	s.phaseMetal(alloc["metal"])
	s.phaseCompress(alloc["compress"], alloc["decompress"])
	s.phaseUpload(alloc["upload"])
	s.concurrentExtends()

	passed, failed := 0, 0
	fmt.Printf("\nstress summary (seed %d, %s):\n", seed, time.Since(t0).Round(time.Second))
	for _, c := range s.cases {
		if c.ok {
			passed++
		} else {
			failed++
		}
		fmt.Printf("  %s %s\n", map[bool]string{true: "PASS", false: "FAIL"}[c.ok], c.name)
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		t.Errorf("%d of %d stress cases failed (logs in %s)", failed, passed+failed, s.logDir)
	}
}

func newStress(t *testing.T, seed uint64, kills int) *stress {
	root, err := os.MkdirTemp("", "cosa-stress-")
	if err != nil {
		t.Fatal(err)
	}
	s := &stress{t: t, root: root, logDir: filepath.Join(root, "logs"), hashes: hashCache{}}
	s.workdir = os.Getenv("COSA_STRESS_WORKDIR")
	if s.workdir == "" {
		s.workdir = filepath.Join(root, "work")
	}
	for _, d := range []string{s.logDir, s.workdir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x636f7361))
	for range kills {
		s.fracs = append(s.fracs, 0.03+0.94*rng.Float64())
	}
	s.bin = filepath.Join(root, "cosa")
	if out, err := exec.Command("go", "build", "-o", s.bin, "../../cmd/cosa").CombinedOutput(); err != nil {
		t.Fatalf("building cosa: %v\n%s", err, out)
	}
	s.gw, err = startGateway(filepath.Join(root, "s3"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.gw.dataDir, bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	s.env = s3Env(root)
	return s
}

func (s *stress) cleanup() {
	if s.gw != nil {
		s.gw.stop()
	}
	failed := slices.ContainsFunc(s.cases, func(c caseResult) bool { return !c.ok })
	if os.Getenv("COSA_STRESS_KEEP") == "1" || failed || s.t.Failed() {
		fmt.Printf("stress: kept %s (logs in %s)\n", s.root, s.logDir)
		return
	}
	if os.RemoveAll(s.root) != nil {
		// ostree marks deployment dirs (in the stage cache, in scratch
		// dirs of killed runs) immutable.
		exec.Command("chattr", "-R", "-f", "-i", s.root).Run()
		if err := os.RemoveAll(s.root); err != nil {
			fmt.Printf("stress: could not remove %s: %v\n", s.root, err)
		}
	}
}

func (s *stress) logf(format string, a ...any) {
	fmt.Printf("stress: "+format+"\n", a...)
}

// must runs a set-up step to completion and stops the test if it fails.
func (s *stress) must(limit time.Duration, args ...string) result {
	s.t.Helper()
	r := s.run(limit, args...)
	if r.Code != 0 {
		s.t.Fatalf("cosa %s: exit %d (log %s)\n%s", strings.Join(args, " "), r.Code, r.Log, r.tail(40))
	}
	s.logf("cosa %s: %s", strings.Join(args, " "), r.Elapsed.Round(100*time.Millisecond))
	return r
}

func (s *stress) record(name string, r report) {
	ok := len(r.problems) == 0
	s.cases = append(s.cases, caseResult{name: name, ok: ok})
	line := map[bool]string{true: "PASS", false: "FAIL"}[ok] + " " + name
	for _, p := range r.problems {
		line += "\n    problem: " + p
	}
	for _, n := range r.notes {
		line += "\n    note: " + n
	}
	fmt.Println(line)
}

func (s *stress) frac() float64 {
	f := s.fracs[s.nextF%len(s.fracs)]
	s.nextF++
	return f
}

func (s *stress) index() *build.BuildsIndex {
	idx, err := (&build.Dir{Root: filepath.Join(s.workdir, "builds")}).ReadIndex()
	if err != nil {
		s.t.Fatal(err)
	}
	return idx
}

func (s *stress) latestMeta() *build.Meta {
	d := &build.Dir{Root: filepath.Join(s.workdir, "builds")}
	id, err := d.Latest()
	if err != nil || id == "" {
		s.t.Fatalf("no latest build (%v)", err)
	}
	m, err := d.ReadMeta(id, s.arch())
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

func (s *stress) arch() string {
	for _, e := range s.index().Builds {
		if len(e.Arches) > 0 {
			return e.Arches[0]
		}
	}
	return "x86_64"
}

// setup makes the workdir and its first build (unless reusing one).
func (s *stress) setup() {
	if len(s.index().Builds) > 0 {
		s.logf("reusing %s (%d builds)", s.workdir, len(s.index().Builds))
		return
	}
	s.must(5*time.Minute, "init")
	s.must(40*time.Minute, "build", "--fetch")
}

// killCase is one kill: run args, SIGKILL the group after frac of the
// calibrated duration, check, run args again to completion, check again.
// extra adds command-specific checks.
func (s *stress) killCase(label string, n, total int, args []string, calib time.Duration, extra func(settled bool) report) {
	f := s.frac()
	delay := time.Duration(f * float64(calib))
	var r report
	p, err := s.start(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	killed, survivors := p.killAfter(delay)
	res := p.result()
	switch {
	case !killed && res.Code != 0:
		r.bad("exited %d before the kill (log %s): %s", res.Code, res.Log, res.tail(5))
	case !killed:
		r.note("finished (%.1fs) before the kill", res.Elapsed.Seconds())
	}
	for _, sv := range survivors {
		r.bad("%s outlived the killed process group", sv)
	}
	r.merge(s.checkWorkdir(false))
	if extra != nil {
		r.merge(extra(false))
	}
	next := s.run(30*time.Minute, args...)
	if next.Code != 0 {
		r.bad("the next `cosa %s` failed with exit %d (log %s): %s", strings.Join(args, " "), next.Code, next.Log, next.tail(8))
	}
	r.merge(s.checkWorkdir(true))
	if extra != nil {
		r.merge(extra(true))
	}
	name := fmt.Sprintf("kill %-10s %2d/%d at %6.1fs (%2.0f%% of %5.1fs); next run %5.1fs", label, n, total, delay.Seconds(), 100*f, calib.Seconds(), next.Elapsed.Seconds())
	s.record(name, r)
}

// calibrate times one uninterrupted run of args.
func (s *stress) calibrate(args ...string) time.Duration {
	r := s.must(40*time.Minute, args...)
	rep := s.checkWorkdir(true)
	s.record(fmt.Sprintf("calibrate cosa %s (%.1fs)", strings.Join(args, " "), r.Elapsed.Seconds()), rep)
	return r.Elapsed
}

func (s *stress) phaseBuild(n int) {
	if n == 0 {
		return
	}
	args := []string{"--lock-timeout", lockTimeout, "build", "--force"}
	calib := s.calibrate(args...)
	for i := 1; i <= n; i++ {
		s.killCase("build", i, n, args, calib, nil)
	}
}

// concurrentBuilds runs two builds at once: the lock serializes them and
// both end up in builds.json.
func (s *stress) concurrentBuilds() {
	var r report
	before := s.index().IDs()
	args := []string{"--lock-timeout", "40m", "build", "--force"}
	a, err := s.start(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	b, err := s.start(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	ra, rb := a.result(), b.result()
	waited := 0
	for _, res := range []result{ra, rb} {
		if res.Code != 0 {
			r.bad("cosa build --force exited %d (log %s): %s", res.Code, res.Log, res.tail(8))
		}
		if data, _ := os.ReadFile(res.Log); strings.Contains(string(data), "waiting for lock") {
			waited++
		}
	}
	if waited != 1 {
		r.bad("%d of the two builds waited for the lock; want exactly one", waited)
	}
	var added []string
	for _, id := range s.index().IDs() {
		if !slices.Contains(before, id) {
			added = append(added, id)
		}
	}
	if len(added) != 2 {
		r.bad("builds.json gained %v; want two new builds", added)
	}
	r.merge(s.checkWorkdir(true))
	s.record(fmt.Sprintf("two cosa build --force at once (%.0fs, %.0fs): new builds %s", ra.Elapsed.Seconds(), rb.Elapsed.Seconds(), strings.Join(added, ", ")), r)
}

func (s *stress) phaseMetal(n int) {
	args := []string{"--lock-timeout", lockTimeout, "buildextend-metal", "--force"}
	calib := s.calibrate(args...)
	for i := 1; i <= n; i++ {
		s.killCase("metal", i, n, args, calib, nil)
	}
}

// compressed reports whether the latest build's qemu image is compressed.
func (s *stress) compressed() bool {
	q, ok := s.latestMeta().Images["qemu"]
	return ok && q.UncompressedSha256 != ""
}

func (s *stress) phaseCompress(nc, nd int) {
	comp := []string{"--lock-timeout", lockTimeout, "compress"}
	decomp := []string{"--lock-timeout", lockTimeout, "decompress"}
	if s.compressed() {
		s.must(30*time.Minute, decomp...)
	}
	tc := s.calibrate(comp...)
	td := s.calibrate(decomp...)
	// Alternate, so that each kill's "next run" leaves the state the
	// other command needs.
	ic, id := 0, 0
	for ic < nc || id < nd {
		if ic < nc && (ic <= id || id >= nd) {
			if s.compressed() {
				s.must(30*time.Minute, decomp...)
			}
			ic++
			s.killCase("compress", ic, nc, comp, tc, nil)
		} else {
			if !s.compressed() {
				s.must(30*time.Minute, comp...)
			}
			id++
			s.killCase("decompress", id, nd, decomp, td, nil)
		}
	}
}

const bucket = "stress"

func (s *stress) uploadArgs(prefix string) []string {
	return []string{"--lock-timeout", lockTimeout, "buildupload", "s3", "--endpoint-url", s.gw.url, bucket + "/" + prefix}
}

// uploadCheck checks the bucket prefix; once settled, its builds.json must
// list the uploaded build.
func (s *stress) uploadCheck(prefix, id string) func(bool) report {
	return func(settled bool) report {
		ids, r := s.checkBucket(bucket, prefix)
		if settled {
			if !slices.Contains(ids, id) {
				r.bad("s3 %s/builds.json does not list %s after the next upload (lists %v)", prefix, id, ids)
			}
			// Done with this prefix; free the space.
			os.RemoveAll(filepath.Join(s.gw.dataDir, bucket, prefix))
		}
		return r
	}
}

func (s *stress) phaseUpload(n int) {
	// Upload compressed images: the raw metal disk is mostly holes that
	// an upload would send as zeros.
	if !s.compressed() {
		s.must(30*time.Minute, "--lock-timeout", lockTimeout, "compress")
	}
	id := s.latestMeta().BuildID
	calib := s.calibrate(s.uploadArgs("calibrate")...)
	if r := s.uploadCheck("calibrate", id)(true); len(r.problems) > 0 {
		s.record("calibration upload", r)
	}
	for i := 1; i <= n; i++ {
		prefix := fmt.Sprintf("k%02d", i)
		s.killCase("upload", i, n, s.uploadArgs(prefix), calib, s.uploadCheck(prefix, id))
	}
}

// concurrentExtends runs four buildextend-* on the latest build at once;
// all four images must end up in its meta.json.
func (s *stress) concurrentExtends() {
	var r report
	platforms := []string{"metal", "metal4k", "openstack", "gcp"}
	before := s.latestMeta()
	id := before.BuildID
	var procs []*proc
	for _, p := range platforms {
		pr, err := s.start("--lock-timeout", "20m", "buildextend-"+p, "--force", "--build", id)
		if err != nil {
			s.t.Fatal(err)
		}
		procs = append(procs, pr)
	}
	var times []string
	for i, pr := range procs {
		res := pr.result()
		times = append(times, fmt.Sprintf("%s %.0fs", platforms[i], res.Elapsed.Seconds()))
		if res.Code != 0 {
			r.bad("buildextend-%s exited %d (log %s): %s", platforms[i], res.Code, res.Log, res.tail(8))
		}
	}
	m := s.latestMeta()
	if m.BuildID != id {
		r.bad("latest moved from %s to %s", id, m.BuildID)
	}
	for _, p := range platforms {
		a, ok := m.Images[p]
		switch old, had := before.Images[p]; {
		case !ok:
			r.bad("meta.json of %s has no %s image after the concurrent buildextend-%s", id, p, p)
		case had && old == a:
			r.note("the %s entry is the same as before the run (%s)", p, a.Path)
		}
	}
	r.merge(s.checkWorkdir(true))
	s.record(fmt.Sprintf("four buildextend-* at once on %s (%s)", id, strings.Join(times, ", ")), r)
}

// TestAllocate runs in every mode: the kill budget is split in full and
// builds (minutes each) get a small share.
func TestAllocate(t *testing.T) {
	for _, n := range []int{0, 1, 5, 7, 50, 51, 200} {
		a := allocate(n)
		sum := 0
		for _, k := range killShares {
			if a[k.cmd] < 0 {
				t.Errorf("allocate(%d)[%s] = %d", n, k.cmd, a[k.cmd])
			}
			sum += a[k.cmd]
		}
		if sum != n {
			t.Errorf("allocate(%d) sums to %d: %v", n, sum, a)
		}
		if n >= 5 && (a["build"] < 1 || a["build"] > n/10+1) {
			t.Errorf("allocate(%d) gives build %d kills", n, a["build"])
		}
	}
	if a := allocate(50); a["build"] != 3 || a["upload"] != 17 {
		t.Errorf("allocate(50) = %v", a)
	}
}
