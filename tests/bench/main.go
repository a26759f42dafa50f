// Command bench measures cosa against the tools it is compared with, all in
// one run, and writes bench/results.json and bench/results.md (also printed).
// `make bench` installs what it needs and runs it as `go run ./tests/bench`.
//
// Every figure carries the reference it is compared with, measured in the
// same run on the same machine, the ratio, the target and whether it is met.
// A figure that could not be measured has null values and says why.
//
// Layout under -out (default bench/, git-ignored):
//
//	results.json, results.md   the results
//	logs/                      full output of every command run; the boot
//	                           checks of mkosi's images in logs/mkosi-*boot/
//	work/seed/                 cosa workdir where `cosa fetch` fills the package
//	                           cache; kept between runs (fetch is incremental)
//	work/mkosi-cache/          mkosi's package cache; kept between runs
//	work/run/                  everything else; recreated on every run
//
// Needs root, the tools of `make deps`, mkosi, awscli and versitygw
// (`make bench-deps`).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/config"
	"github.com/cosa-build/cosa/pkg/fsattr"
)

// Figure is one result.
type Figure struct {
	ID             string         `json:"id"`
	Name           string         `json:"name"`
	Value          *float64       `json:"value"`
	Unit           string         `json:"unit"`
	Reference      string         `json:"reference"`
	ReferenceValue *float64       `json:"reference_value"`
	Ratio          *float64       `json:"ratio"`
	RatioOf        string         `json:"ratio_of"`
	Target         string         `json:"target"`
	Met            *bool          `json:"met"`
	Load1          float64        `json:"load1_at_start"`
	Notes          string         `json:"notes,omitempty"`
	Error          string         `json:"error,omitempty"`
	Details        map[string]any `json:"details,omitempty"`
	target         target
}

// target: the ratio (or, for absolute targets, the value) compared with
// limit by op.
type target struct {
	onValue bool
	op      string // "<", "<=", ">="
	limit   float64
}

func (t target) String() string {
	what := "ratio"
	if t.onValue {
		what = "value"
	}
	return fmt.Sprintf("%s %s %g", what, t.op, t.limit)
}

func (t target) met(v float64) bool {
	switch t.op {
	case "<":
		return v < t.limit
	case "<=":
		return v <= t.limit
	case ">=":
		return v >= t.limit
	}
	return false
}

// Results is the whole file.
type Results struct {
	Started       string    `json:"started"`
	Finished      string    `json:"finished,omitempty"`
	CosaCommit    string    `json:"cosa_commit"`
	CPUs          int       `json:"cpus"`
	Kernel        string    `json:"kernel"`
	LoadBefore    string    `json:"loadavg_before"`
	LoadAfter     string    `json:"loadavg_after,omitempty"`
	Figures       []*Figure `json:"figures"`
	Notes         []string  `json:"notes,omitempty"`
	TotalSeconds  float64   `json:"total_seconds,omitempty"`
	OtherCommands []Timing  `json:"other_commands"`
}

// Timing is a command run along the way that is not itself a figure.
type Timing struct {
	What    string  `json:"what"`
	Seconds float64 `json:"seconds"`
}

type bench struct {
	out, work, run string
	logs           string
	cosaBin        string
	res            *Results
	nBuilds        int
	only           map[string]bool
	start          time.Time
	step           int
	// cleanup: trees to remove once every figure is measured.
	cleanup []string
}

func main() {
	out := flag.String("out", "bench", "output directory (results, logs, work)")
	nBuilds := flag.Int("builds", 10, "builds for the disk-use figure")
	only := flag.String("only", "", "comma-separated figure ids to run (default all): noop,cold,mkosi,mkosi-incremental,overlay,metal,disk,compress,upload")
	bootOnly := flag.String("boot", "", "only boot this disk image with the mkosi figures' boot check (UEFI), printing the result; for an image whose check was lost to the machine's load")
	flag.Parse()
	if *bootOnly != "" {
		dir, err := os.MkdirTemp("", "bench-boot-")
		if err != nil {
			fatal(err)
		}
		b := &bench{logs: dir, start: time.Now()}
		booted, details := b.bootImage("boot", *bootOnly)
		data, _ := json.MarshalIndent(details, "", "  ")
		fmt.Printf("%s\n", data)
		if !booted {
			os.Exit(1)
		}
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (cosa build runs mmdebstrap --mode=root)")
		os.Exit(1)
	}
	abs, err := filepath.Abs(*out)
	if err != nil {
		fatal(err)
	}
	b := &bench{out: abs, work: filepath.Join(abs, "work"), nBuilds: *nBuilds, start: time.Now()}
	b.run = filepath.Join(b.work, "run")
	b.logs = filepath.Join(abs, "logs")
	if *only != "" {
		b.only = map[string]bool{}
		for _, s := range strings.Split(*only, ",") {
			b.only[strings.TrimSpace(s)] = true
		}
	}
	for _, d := range []string{b.run, b.logs} {
		if err := removeAll(d); err != nil {
			fatal(err)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			fatal(err)
		}
	}
	// The references' trees (mmdebstrap's root, mkosi's workspace) are
	// made in run/ right after cosa deleted its own: spread like cosa's
	// (fsattr.SpreadSubdirs), neither side pays for the other's deletes.
	fsattr.SpreadSubdirs(b.run)
	uname, _ := exec.Command("uname", "-r").Output()
	rev, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	dirty, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	commit := strings.TrimSpace(string(rev))
	if len(bytes.TrimSpace(dirty)) > 0 {
		commit += "-dirty"
	}
	b.res = &Results{Started: now(), CPUs: runtime.NumCPU(), Kernel: strings.TrimSpace(string(uname)),
		LoadBefore: loadavg(), CosaCommit: commit}
	b.log("load average before: %s", b.res.LoadBefore)
	if err := b.all(); err != nil {
		b.res.Notes = append(b.res.Notes, "stopped early: "+err.Error())
		b.log("ERROR: %v", err)
	}
	for _, d := range b.cleanup {
		if err := removeAll(d); err != nil {
			b.log("cleanup: %v", err)
		}
	}
	b.res.LoadAfter = loadavg()
	b.res.Finished = now()
	b.res.TotalSeconds = round(time.Since(b.start).Seconds(), 1)
	b.log("load average after: %s", b.res.LoadAfter)
	b.write()
	fmt.Print(b.table())
	fmt.Printf("\nwrote %s and %s\n", filepath.Join(b.out, "results.json"), filepath.Join(b.out, "results.md"))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func (b *bench) want(id string) bool { return b.only == nil || b.only[id] }

func (b *bench) log(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %6.0fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// all runs every figure in an order that reuses work: the cold full build
// in work/run/main is followed by the no-op, the overlay rebuild, the two
// mkosi figures, the further builds of the disk figure, then upload, metal
// and compress on the latest build. Trees a figure leaves behind are
// removed when the run ends, so no deletion lands inside a measurement.
func (b *bench) all() error {
	root, _ := os.Getwd()
	b.cosaBin = filepath.Join(b.work, "cosa")
	if _, err := b.cmd("go build cosa", root, nil, "go", "build", "-trimpath", "-o", b.cosaBin, "./cmd/cosa"); err != nil {
		return err
	}

	// The package cache: `cosa fetch` in a workdir kept between runs.
	seed := filepath.Join(b.work, "seed")
	if _, err := os.Stat(filepath.Join(seed, "src", "config")); err != nil {
		if err := removeAll(seed); err != nil {
			return err
		}
		if _, err := b.cosa("seed: cosa init", "", "-C", seed, "init"); err != nil {
			return err
		}
	}
	d, err := b.cosa("seed: cosa fetch (network; warms the package cache)", seed, "fetch")
	if err != nil {
		return err
	}
	b.res.OtherCommands = append(b.res.OtherCommands, Timing{"cosa fetch (seed workdir, incremental)", round(d.Seconds(), 2)})
	cfg, err := config.Load(filepath.Join(seed, "src", "config"))
	if err != nil {
		return err
	}
	arch := compose.BaseArch()
	lock, err := compose.ReadLock(compose.LockPath(filepath.Join(seed, "cache"), arch))
	if err != nil {
		return err
	}

	if b.want("cold") {
		b.figCold(seed, cfg, lock)
	}
	needMain := b.want("mkosi") || b.want("mkosi-incremental") || b.want("noop") || b.want("overlay") || b.want("disk") || b.want("metal") || b.want("compress") || b.want("upload")
	if !needMain {
		return nil
	}
	mainDir := filepath.Join(b.run, "main")
	if err := b.freshWorkdir(seed, mainDir, arch); err != nil {
		return err
	}
	coldFull, err := b.cosaJSON("main: cold cosa build (with qemu image)", mainDir, "build", "--skip-prune")
	if err != nil {
		return err
	}
	b.res.OtherCommands = append(b.res.OtherCommands, Timing{"cold cosa build with qemu image (fresh workdir, warm package cache)", round(coldFull.wall.Seconds(), 2)})
	diskOne, diskOneParts, err := diskUse(mainDir)
	if err != nil {
		return err
	}
	if b.want("noop") {
		b.figNoop(mainDir, coldFull)
	}
	// Every later build changes one file of an overlay.
	changed := filepath.Join(mainDir, "src", "config", "overlay.d", "10-network", "usr", "lib", "systemd", "network", "80-cosa-dhcp.network")
	orig, err := os.ReadFile(changed)
	if err != nil {
		return err
	}
	change := func(n int) error {
		return os.WriteFile(changed, append(append([]byte{}, orig...), fmt.Sprintf("# bench change %d\n", n)...), 0o644)
	}
	builds := 1
	var last *cosaRun = coldFull
	// The overlay rebuild is its own figure and the cosa side of
	// mkosi-incremental.
	var overlayRun *cosaRun
	if b.want("overlay") || b.want("disk") || b.want("mkosi-incremental") {
		if err := change(builds); err != nil {
			return err
		}
		f := b.newFig("overlay", "rebuild after one overlay file changes (cosa build, with qemu image)", "s",
			"cold cosa build with qemu image, fresh workdir, warm package cache (same run)", target{op: "<=", limit: 0.15}, "value / reference")
		r, err := b.cosaJSON("main: rebuild after one overlay file changed", mainDir, "build", "--skip-prune")
		builds++
		if err != nil {
			f.fail(err)
		} else {
			last, overlayRun = r, r
			f.set(r.wall.Seconds(), coldFull.wall.Seconds(), r.wall.Seconds()/coldFull.wall.Seconds())
			f.Details = map[string]any{"changed_file": rel(mainDir, changed), "stages": r.stages, "cold_stages": coldFull.stages}
		}
		if b.want("overlay") {
			b.add(f)
		}
	}
	// mkosi runs after cosa's rebuild, not between the cold build and it:
	// mkosi deletes its whole workspace, and on this ext4 without a journal
	// every inode allocated in the next minutes skips the recently freed
	// ones (ext4's recently_deleted), so whichever tool follows a large
	// delete pays for it. Each measured tool follows the other's build.
	if b.want("mkosi") {
		b.figMkosi(cfg, coldFull)
	}
	if b.want("mkosi-incremental") {
		b.figMkosiIncremental(cfg, overlayRun, rel(mainDir, changed))
	}
	if b.want("disk") {
		f := b.newFig("disk", fmt.Sprintf("disk use of %d builds, each changing one overlay file", b.nBuilds), "bytes",
			"disk use after the first build of the same workdir", target{op: "<=", limit: 2.5}, "value / reference")
		var ferr error
		for builds < b.nBuilds && ferr == nil {
			if ferr = change(builds); ferr != nil {
				break
			}
			var r *cosaRun
			r, ferr = b.cosaJSON(fmt.Sprintf("main: build %d of %d (one overlay file changed)", builds+1, b.nBuilds), mainDir, "build", "--skip-prune")
			if ferr == nil {
				last = r
				builds++
			}
		}
		if ferr != nil {
			f.fail(ferr)
		} else {
			n, parts, err := diskUse(mainDir)
			if err != nil {
				f.fail(err)
			} else {
				f.set(float64(n), float64(diskOne), float64(n)/float64(diskOne))
				f.Details = map[string]any{
					"counted":          "du -s -B1 over builds/, tmp/repo, cache/objects, cache/rootfs and cache/ostree-archive in one du call (hard links counted once; sparse files by allocated blocks)",
					"builds":           builds,
					"after_n_builds":   parts,
					"after_one_build":  diskOneParts,
					"per_build_growth": float64(n-diskOne) / float64(builds-1),
				}
			}
		}
		b.add(f)
	}
	// Upload before metal adds a 10 GiB sparse raw to the build: awscli
	// uploads it whole, and versitygw failed to complete that multipart
	// upload here (InternalError), losing the figure.
	if b.want("upload") {
		b.figUpload(mainDir)
	}
	if b.want("metal") {
		b.figMetal(mainDir, last)
	}
	if b.want("compress") {
		b.figCompress(mainDir)
	}
	return nil
}

// freshWorkdir makes a new workdir whose package cache (debs, flat index,
// lock file, apt state) is hard-linked from the seed: warm package cache,
// nothing else (no OSTree repo, no stage cache, no builds).
func (b *bench) freshWorkdir(seed, dir, arch string) error {
	if err := removeAll(dir); err != nil {
		return err
	}
	if _, err := b.cosa("cosa init "+filepath.Base(dir), "", "-C", dir, "init"); err != nil {
		return err
	}
	for _, x := range []string{"debs", "apt", compose.LockName(arch)} {
		src := filepath.Join(seed, "cache", x)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		if out, err := exec.Command("cp", "-al", src, filepath.Join(dir, "cache", x)).CombinedOutput(); err != nil {
			return fmt.Errorf("cp -al %s: %v: %s", src, err, out)
		}
	}
	return nil
}

// figCold: cosa build --skip-image in a fresh workdir vs mmdebstrap alone,
// run exactly as cosa runs it (same package list, suite, variant, options,
// environment and local package repository, in the same kind of private
// mount and network namespace), producing a directory.
func (b *bench) figCold(seed string, cfg *config.Config, lock *compose.Lockfile) {
	f := b.newFig("cold", "cold build: cosa build --skip-image (fresh workdir, warm package cache)", "s",
		"mmdebstrap alone, same packages/suite/variant/options, from the same local .deb cache, into a directory", target{op: "<=", limit: 1.15}, "value / reference")
	defer b.add(f)
	arch := compose.BaseArch()
	dir := filepath.Join(b.run, "cold")
	if err := b.freshWorkdir(seed, dir, arch); err != nil {
		f.fail(err)
		return
	}
	r, err := b.cosaJSON("cold: cosa build --skip-image", dir, "build", "--skip-image")
	if err != nil {
		f.fail(err)
		return
	}
	// The reference, with the cache the cold build used (hard links of
	// the seed's .debs).
	debs, _ := filepath.Abs(compose.DebsDir(filepath.Join(dir, "cache")))
	root := filepath.Join(b.run, "mmdebstrap-root")
	args := append([]string{"-m", "-n", "/bin/sh", "-c", `mount --make-rprivate / && exec mmdebstrap "$@"`, "mmdebstrap"},
		compose.MmdebstrapArgs(&cfg.Manifest, lock.Suite, root, debs)...)
	ref, err := b.cmd("cold: reference mmdebstrap", "", []string{"INITRD=No", "LC_ALL=C.UTF-8"}, "unshare", args...)
	if err != nil {
		f.fail(err)
		return
	}
	f.set(r.wall.Seconds(), ref.Seconds(), r.wall.Seconds()/ref.Seconds())
	n := countPackages(root)
	f.Details = map[string]any{
		"stages":                     r.stages,
		"reference_command":          "unshare -m -n sh -c 'mount --make-rprivate / && exec mmdebstrap ...' " + strings.Join(args[6:], " "),
		"reference_env":              "INITRD=No LC_ALL=C.UTF-8 (as cosa sets them)",
		"packages_locked":            len(lock.Packages),
		"packages_in_reference_root": n,
	}
	f.Notes = "the reference installs the same packages but makes no initramfs, applies no overlays and makes no OSTree commit or tar export; those are cosa's overhead"
	if err := removeAll(root); err != nil {
		b.log("warning: %v", err)
	}
	if err := removeAll(dir); err != nil {
		b.log("warning: %v", err)
	}
}

// figMkosi: Debian's mkosi making a bootable disk image from the same
// config vs cosa's cold build with its qemu image; then mkosi's image is
// booted (UEFI) to prove it is bootable.
func (b *bench) figMkosi(cfg *config.Config, cold *cosaRun) {
	f := b.newFig("mkosi", "cosa build with qemu image, cold (fresh workdir, warm package cache)", "s",
		"mkosi 14 (Debian 12 package): bootable bookworm GPT image (ESP with systemd-boot and a dracut UKI, ext4 root) from the same config, converted to qcow2, warm package cache", target{op: "<", limit: 1.0}, "value / reference")
	defer b.add(f)
	if _, err := exec.LookPath("mkosi"); err != nil {
		f.fail(fmt.Errorf("mkosi is not installed (apt-get install mkosi)"))
		return
	}
	cache := filepath.Join(b.work, "mkosi-cache")
	dir := filepath.Join(b.run, "mkosi")
	t, err := setupMkosi(cfg, compose.BaseArch(), dir, cache, false)
	if err != nil {
		f.fail(err)
		return
	}
	// A first run fills mkosi's package cache (apt's archives) when empty,
	// as `cosa fetch` filled cosa's; only the second run is the reference.
	if debsIn(cache) < len(t.spec.Packages) {
		d, err := b.mkosi(t, "mkosi: warm-up run (fills its package cache)", "--force", "build")
		if err != nil {
			f.fail(fmt.Errorf("mkosi warm-up run: %w", err))
			return
		}
		b.res.OtherCommands = append(b.res.OtherCommands, Timing{"mkosi warm-up run (filling its package cache)", round(d.Seconds(), 2)})
	}
	d, err := b.mkosi(t, "mkosi: measured run", "--force", "build")
	if err != nil {
		f.fail(err)
		return
	}
	var size int64
	if st, err := os.Stat(t.output); err == nil {
		size = st.Size()
	}
	f.set(cold.wall.Seconds(), d.Seconds(), cold.wall.Seconds()/d.Seconds())
	f.Details = map[string]any{
		"reference_command": "PATH=<run>/mkosi/bin:$PATH unshare " + strings.Join(t.wrap()[:5], " ") + " mkosi --force build (config: mkosi.default beside it)",
		"mkosi_config":      t.spec,
		"left_out":          t.leftOut,
		"mkosi_qcow2_bytes": size,
		"cosa_stages":       cold.stages,
	}
	f.Notes = "mkosi 14 needs three host workarounds here, all outside mkosi: wrapper mount/umount scripts first in PATH stage the ESP in a directory and write it with mkfs.fat + mcopy at umount (this kernel has no vfat), [Host] NspawnKeepUnit=yes (no system bus), and a systemd-nspawn wrapper setting SYSTEMD_RELAX_ESP_CHECKS=1 for bootctl; the wrappers' cost is part of mkosi's time. mkosi's debootstrap stage downloads its base packages on every run (its cache only serves the apt stage). The image is booted after the measurement (details.boot)."
	b.checkMkosiBoot(f, "mkosi-boot", "mkosi's image", t.output, dir, d, cold.wall)
}

// figMkosiIncremental: cosa's rebuild after one overlay file changed vs
// mkosi -i after the same change to its copy of that overlay: mkosi's
// second incremental run, which starts from the cached image its first
// run saved.
func (b *bench) figMkosiIncremental(cfg *config.Config, rebuild *cosaRun, changedRel string) {
	f := b.newFig("mkosi-incremental", "rebuild after one overlay file changes (cosa build, with qemu image)", "s",
		"mkosi -i (incremental, same bootable config as figure mkosi): second run, after the same change to its copy of the overlay", target{op: "<", limit: 1.0}, "value / reference")
	defer b.add(f)
	if _, err := exec.LookPath("mkosi"); err != nil {
		f.fail(fmt.Errorf("mkosi is not installed (apt-get install mkosi)"))
		return
	}
	if rebuild == nil {
		f.fail(fmt.Errorf("cosa's overlay rebuild was not measured"))
		return
	}
	dir := filepath.Join(b.run, "mkosi-incremental")
	t, err := setupMkosi(cfg, compose.BaseArch(), dir, filepath.Join(b.work, "mkosi-cache"), true)
	if err != nil {
		f.fail(err)
		return
	}
	first, err := b.mkosi(t, "mkosi -i: first run (builds its cache images)", "--force", "build")
	if err != nil {
		f.fail(fmt.Errorf("mkosi -i first run: %w", err))
		return
	}
	b.res.OtherCommands = append(b.res.OtherCommands, Timing{"mkosi -i first run (builds the cache images, then the image)", round(first.Seconds(), 2)})
	// The overlay directories are the config's overlay.d entries, copied.
	_, inOverlay, _ := strings.Cut(filepath.ToSlash(changedRel), config.OverlayDir+"/")
	changed := filepath.Join(dir, "extra", filepath.FromSlash(inOverlay))
	orig, err := os.ReadFile(changed)
	if err != nil {
		f.fail(fmt.Errorf("the overlay file to change: %w", err))
		return
	}
	if err := os.WriteFile(changed, append(orig, "# bench change 1\n"...), 0o644); err != nil {
		f.fail(err)
		return
	}
	d, err := b.mkosi(t, "mkosi -i: second run (one overlay file changed)", "--force", "build")
	if err != nil {
		f.fail(err)
		return
	}
	f.set(rebuild.wall.Seconds(), d.Seconds(), rebuild.wall.Seconds()/d.Seconds())
	f.Details = map[string]any{
		"changed_file":      rel(dir, changed),
		"mkosi_first_run_s": round(first.Seconds(), 3),
		"cosa_stages":       rebuild.stages,
		"reference_command": "as figure mkosi, with Incremental=yes, run twice",
	}
	f.Notes = "mkosi -i keeps an image of the tree after the package installation (cache-pre-inst) and redoes everything after it on every run: extra trees, kernel-install, bootctl, the UKI (dracut), the qcow2 conversion."
	b.checkMkosiBoot(f, "mkosi-incremental-boot", "mkosi -i's image", t.output, dir, d, rebuild.wall)
}

// checkMkosiBoot boots mkosi's image after the measurement: a figure whose
// reference does not boot is no figure (its times stay in the details).
// The run dir is removed only after a good boot, so a bad one can be seen.
func (b *bench) checkMkosiBoot(f *Figure, name, what, image, dir string, mkosi, cosa time.Duration) {
	booted, boot := b.bootImage(name, image)
	f.Details["boot"] = boot
	if !booted {
		f.fail(fmt.Errorf("%s did not boot to a login prompt (console: %s)", what, boot["console_tail_file"]))
		f.Details["mkosi_s"], f.Details["cosa_s"] = round(mkosi.Seconds(), 3), round(cosa.Seconds(), 3)
		return
	}
	b.cleanup = append(b.cleanup, dir)
}

// figNoop: `cosa build` with unchanged inputs, median of 5.
func (b *bench) figNoop(main string, cold *cosaRun) {
	f := b.newFig("noop", "no-op build: cosa build with unchanged inputs (median of 5)", "s",
		"cold cosa build with qemu image (same run)", target{onValue: true, op: "<", limit: 0.5}, "value / reference")
	defer b.add(f)
	var ts []float64
	for i := 0; i < 5; i++ {
		r, err := b.cosaJSON(fmt.Sprintf("no-op build %d/5", i+1), main, "build")
		if err != nil {
			f.fail(err)
			return
		}
		if !strings.Contains(r.out, "No changes in build inputs") {
			f.fail(fmt.Errorf("second build was not a no-op:\n%s", tail(r.out, 10)))
			return
		}
		ts = append(ts, r.wall.Seconds())
	}
	sort.Float64s(ts)
	f.set(ts[2], cold.wall.Seconds(), ts[2]/cold.wall.Seconds())
	f.Details = map[string]any{"runs_s": ts}
}

// figMetal: buildextend-metal on the latest build vs that build's qemu
// image step.
func (b *bench) figMetal(main string, last *cosaRun) {
	f := b.newFig("metal", "cosa buildextend-metal after the build made its qemu image", "s",
		"the qemu image step of that build (cosa's own timing of it)", target{op: "<=", limit: 0.3}, "value / reference")
	defer b.add(f)
	q, ok := last.images["qemu"]
	if !ok {
		f.fail(fmt.Errorf("the build's output had no qemu image timing"))
		return
	}
	r, err := b.cosaJSON("metal: cosa buildextend-metal", main, "buildextend-metal")
	if err != nil {
		f.fail(err)
		return
	}
	f.set(r.wall.Seconds(), q, r.wall.Seconds()/q)
	f.Details = map[string]any{"stages": r.stages, "qemu_build_stages": last.stages}
}

// figCompress: cosa compress of the qemu image vs the CLI tool at the same
// level on the same file, for each compressor.
func (b *bench) figCompress(main string) {
	art, err := latestArtifact(main, "qemu")
	if err != nil {
		f := b.newFig("compress", "cosa compress", "MB/s", "CLI", target{op: ">=", limit: 0.9}, "value / reference")
		f.fail(err)
		b.add(f)
		return
	}
	st, err := os.Stat(art)
	if err != nil {
		return
	}
	size := float64(st.Size())
	for _, c := range []struct {
		name, ext string
		cosaArgs  []string
		cli       []string
		level     string
		runs      int
	}{
		{"gzip", ".gz", nil, []string{"gzip", "-6", "-c"}, "6 (default)", 1},
		{"zstd", ".zst", nil, []string{"zstd", "-3", "-T0", "-q", "-c"}, "3 (default)", 5},
		// xz -6 runs at 1-4 MB/s here: twice over a ~1 GB image would take
		// most of the bench, so xz is measured at cosa's --fast level (-0).
		{"xz", ".xz", []string{"--fast"}, []string{"xz", "-0", "-T0", "-c"}, "0 (--fast)", 3},
	} {
		f := b.newFig("compress-"+c.name, fmt.Sprintf("cosa compress --compressor %s of the qemu qcow2 (level %s)", c.name, c.level), "MB/s",
			fmt.Sprintf("`%s` on the same file, output to a file in the same directory", strings.Join(c.cli, " ")),
			target{op: ">=", limit: 0.9}, "value / reference")
		func() {
			defer b.add(f)
			// The two sides take turns, and each figure is the median of
			// its runs: one run of either side varied by up to 20% here
			// (xz: 21 to 30 s for the same command), more than the gap
			// being measured.
			var cosaS, cliS []float64
			det := map[string]any{"input": filepath.Base(art), "input_bytes": int64(size), "runs": c.runs}
			for i := 0; i < c.runs; i++ {
				// Same starting point for both: the input in the page cache.
				exec.Command("cat", art).Run()
				outPath := filepath.Join(filepath.Dir(art), ".bench-cli"+c.ext)
				d, err := b.cmdToFile("compress: "+strings.Join(c.cli, " "), outPath, c.cli[0], append(c.cli[1:], art)...)
				if err != nil {
					f.fail(err)
					return
				}
				if cliOut, err := os.Stat(outPath); err == nil {
					det["cli_output_bytes"] = cliOut.Size()
				}
				os.Remove(outPath)
				exec.Command("cat", art).Run()
				args := append([]string{"compress", "--compressor", c.name, "--artifact", "qemu"}, c.cosaArgs...)
				r, err := b.cosaJSON("compress: cosa "+strings.Join(args, " "), main, args...)
				if err != nil {
					f.fail(err)
					return
				}
				if ca, err := latestArtifact(main, "qemu"); err == nil {
					if s, err := os.Stat(ca); err == nil {
						det["cosa_output_bytes"] = s.Size()
					}
				}
				if _, err := b.cosaJSON("compress: cosa decompress (restore)", main, "decompress", "--artifact", "qemu"); err != nil {
					f.Error = "decompress afterwards failed: " + err.Error()
					return
				}
				cosaS = append(cosaS, round(r.wall.Seconds(), 3))
				cliS = append(cliS, round(d.Seconds(), 3))
			}
			cs, ls := median(cosaS), median(cliS)
			v, ref := size/1e6/cs, size/1e6/ls
			f.set(v, ref, v/ref)
			det["cosa_s"], det["cli_s"] = cs, ls
			det["cosa_runs_s"], det["cli_runs_s"] = cosaS, cliS
			f.Details = det
		}()
	}
}

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// figUpload: cosa buildupload s3 of the qemu image vs `aws s3 cp` of the
// same file, both to one versitygw on loopback.
func (b *bench) figUpload(main string) {
	f := b.newFig("upload", "cosa buildupload s3 of the latest build (its files + builds.json), bytes / wall time", "MB/s",
		"aws s3 cp --recursive (Debian's awscli) of the same build directory to the same versitygw on 127.0.0.1", target{op: ">=", limit: 1.0}, "value / reference")
	defer b.add(f)
	gw, err := versitygwPath()
	if err != nil {
		f.fail(err)
		return
	}
	awsBin := "/usr/bin/aws" // Debian's awscli, not whatever else is on PATH
	if _, err := os.Stat(awsBin); err != nil {
		f.fail(fmt.Errorf("awscli is not installed (apt-get install awscli)"))
		return
	}
	// The whole latest build directory: what buildupload publishes.
	buildDir, err := filepath.EvalSymlinks(filepath.Join(main, "builds", "latest", compose.BaseArch()))
	if err != nil {
		f.fail(err)
		return
	}
	var total int64
	var files []string
	ents, err := os.ReadDir(buildDir)
	if err != nil {
		f.fail(err)
		return
	}
	for _, e := range ents {
		if i, err := e.Info(); err == nil && i.Mode().IsRegular() {
			total += i.Size()
			files = append(files, e.Name())
		}
	}
	dir := filepath.Join(b.run, "s3")
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(data, "bench"), 0o755); err != nil { // posix backend: a directory is a bucket
		f.fail(err)
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.fail(err)
		return
	}
	addr := l.Addr().String()
	l.Close()
	// Throwaway credentials that only travel to loopback; never printed.
	access, secret := "cosabench", "cosabench-not-a-real-secret"
	logf, _ := os.Create(filepath.Join(b.logs, "versitygw.log"))
	defer logf.Close()
	gcmd := exec.Command(gw, "--port", addr, "posix", data)
	gcmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+access, "ROOT_SECRET_ACCESS_KEY="+secret)
	gcmd.Stdout, gcmd.Stderr = logf, logf
	if err := gcmd.Start(); err != nil {
		f.fail(err)
		return
	}
	defer func() { gcmd.Process.Kill(); gcmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			f.fail(fmt.Errorf("versitygw did not listen on %s", addr))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	cfgFile := filepath.Join(dir, "aws-config")
	os.WriteFile(cfgFile, []byte("[default]\nregion = us-east-1\n"), 0o600)
	// exec drops every AWS_* variable of the caller's environment, so no
	// real profile or session token leaks in; an empty AWS_PROFILE would
	// make awscli look for a profile named "".
	env := []string{"AWS_ACCESS_KEY_ID=" + access, "AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1", "AWS_CONFIG_FILE=" + cfgFile,
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "aws-credentials"), "AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER="}
	url := "http://" + addr
	warm := func() {
		for _, n := range files {
			exec.Command("cat", filepath.Join(buildDir, n)).Run()
		}
	}
	warm()
	ref, err := b.cmd("upload: aws s3 cp --recursive", "", env, awsBin, "--endpoint-url", url, "--no-progress", "s3", "cp", "--recursive", buildDir, "s3://bench/awscli/"+filepath.Base(filepath.Dir(buildDir))+"/")
	if err != nil {
		f.fail(err)
		return
	}
	warm()
	r, err := b.cosaEnv("upload: cosa buildupload s3", main, env, true, "buildupload", "s3", "--endpoint-url", url, "bench/cosa")
	if err != nil {
		f.fail(err)
		return
	}
	size := float64(total)
	v, rv := size/1e6/r.wall.Seconds(), size/1e6/ref.Seconds()
	f.set(v, rv, v/rv)
	f.Details = map[string]any{"bytes": total, "files": files, "cosa_s": round(r.wall.Seconds(), 3), "awscli_s": round(ref.Seconds(), 3),
		"cosa_result": lastJSONLine(r.out)}
	f.Notes = "both wall-clock times include process start; cosa's also includes checking every artifact's sha256 against meta.json, the per-object HEAD checks and the conditional builds.json merge"
}

// ---- running things

type cosaRun struct {
	wall   time.Duration
	out    string
	stages map[string]float64 // step or pipeline/stage -> seconds
	images map[string]float64 // platform -> seconds of its image step
}

var imageLineRE = regexp.MustCompile(`image (\S+): \S+ in (\S+)$`)

func (b *bench) cosa(what, dir string, args ...string) (time.Duration, error) {
	r, err := b.cosaEnv(what, dir, nil, false, args...)
	if err != nil {
		return 0, err
	}
	return r.wall, nil
}

func (b *bench) cosaJSON(what, dir string, args ...string) (*cosaRun, error) {
	return b.cosaEnv(what, dir, nil, true, args...)
}

// cosaEnv runs cosa (with --json when asJSON) and collects the per-step
// timings it reports.
func (b *bench) cosaEnv(what, dir string, env []string, asJSON bool, args ...string) (*cosaRun, error) {
	if asJSON {
		args = append([]string{"--json"}, args...)
	}
	var buf bytes.Buffer
	d, err := b.exec(what, dir, env, &buf, b.cosaBin, args...)
	r := &cosaRun{wall: d, out: buf.String(), stages: map[string]float64{}, images: map[string]float64{}}
	if err != nil {
		return r, fmt.Errorf("%s: %v\n%s", what, err, tail(r.out, 15))
	}
	sc := bufio.NewScanner(strings.NewReader(r.out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e struct {
			Event    string  `json:"event"`
			Step     string  `json:"step"`
			Pipeline string  `json:"pipeline"`
			Stage    string  `json:"stage"`
			Duration float64 `json:"duration_s"`
			Message  string  `json:"message"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		switch e.Event {
		case "step-finish":
			r.stages[e.Step] = round(e.Duration, 3)
		case "stage-finish":
			r.stages[e.Pipeline+"/"+e.Stage] += round(e.Duration, 3)
		case "info":
			if m := imageLineRE.FindStringSubmatch(strings.TrimSpace(e.Message)); m != nil {
				if dd, err := time.ParseDuration(m[2]); err == nil {
					r.images[m[1]] = dd.Seconds()
					r.stages["image "+m[1]] = round(dd.Seconds(), 3)
				}
			}
		}
	}
	return r, nil
}

func (b *bench) cmd(what, dir string, env []string, name string, args ...string) (time.Duration, error) {
	var buf bytes.Buffer
	d, err := b.exec(what, dir, env, &buf, name, args...)
	if err != nil {
		return d, fmt.Errorf("%s: %v\n%s", what, err, tail(buf.String(), 15))
	}
	return d, nil
}

// cmdToFile runs a filter with stdout to path, stderr to the log.
func (b *bench) cmdToFile(what, path, name string, args ...string) (time.Duration, error) {
	out, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	logf, err := b.logFile(what)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, logf
	d, err := b.timed(what, cmd)
	if err != nil {
		return d, fmt.Errorf("%s: %v", what, err)
	}
	return d, nil
}

func (b *bench) logFile(what string) (*os.File, error) {
	b.step++
	name := fmt.Sprintf("%02d-%s.log", b.step, slug(what))
	return os.Create(filepath.Join(b.logs, name))
}

// exec runs a command, timing it; output goes to its log file and to buf.
func (b *bench) exec(what, dir string, env []string, buf *bytes.Buffer, name string, args ...string) (time.Duration, error) {
	logf, err := b.logFile(what)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "$ %s %s\n", name, strings.Join(args, " "))
	cmd := exec.CommandContext(context.Background(), name, args...)
	cmd.Dir = dir
	cmd.Env = append(baseEnv(), env...)
	w := io.MultiWriter(logf, buf)
	cmd.Stdout, cmd.Stderr = w, w
	return b.timed(what, cmd)
}

// timed runs cmd, logging how long it took and the load average.
//
// Every run starts with nothing dirty in the page cache (a sync first,
// not timed): otherwise a run pays for writing back what the run before it
// left in memory. In one run without it, the same mmdebstrap step took
// 26.6 s in one cosa build and 50.2 s in the next, which ran right after
// the reference mmdebstrap had written its tree.
func (b *bench) timed(what string, cmd *exec.Cmd) (time.Duration, error) {
	ts := time.Now()
	syscall.Sync()
	if d := time.Since(ts); d > time.Second {
		b.log("sync before %s: %.1fs", what, d.Seconds())
	}
	b.log("%s ...", what)
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	b.log("%s: %.2fs (load %s)", what, d.Seconds(), loadavg())
	return d, err
}

// baseEnv is the environment without AWS_* variables.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return env
}

// ---- figures and output

func (b *bench) newFig(id, name, unit, ref string, t target, ratioOf string) *Figure {
	b.log("== figure %s: %s", id, name)
	return &Figure{ID: id, Name: name, Unit: unit, Reference: ref, Target: t.String(), target: t, RatioOf: ratioOf, Load1: load1()}
}

func (f *Figure) set(v, ref, ratio float64) {
	prec := 3
	if f.Unit == "bytes" {
		prec = 0
	}
	v, ref, ratio = round(v, prec), round(ref, prec), round(ratio, 4)
	f.Value, f.ReferenceValue, f.Ratio = &v, &ref, &ratio
	x := ratio
	if f.target.onValue {
		x = v
	}
	met := f.target.met(x)
	f.Met = &met
}

func (f *Figure) fail(err error) {
	f.Error = err.Error()
	f.Value, f.ReferenceValue, f.Ratio, f.Met = nil, nil, nil, nil
}

func (b *bench) add(f *Figure) {
	b.res.Figures = append(b.res.Figures, f)
	if f.Error != "" {
		b.log("figure %s: not measured: %s", f.ID, firstLine(f.Error))
	} else {
		b.log("figure %s: %s %s vs %s (ratio %s, target %s, met %v)", f.ID, fnum(f.Value), f.Unit, fnum(f.ReferenceValue), fnum(f.Ratio), f.Target, *f.Met)
	}
	b.write()
}

func (b *bench) write() {
	data, _ := json.MarshalIndent(b.res, "", "  ")
	os.WriteFile(filepath.Join(b.out, "results.json"), append(data, '\n'), 0o644)
	os.WriteFile(filepath.Join(b.out, "results.md"), []byte(b.table()), 0o644)
}

func (b *bench) table() string {
	var s strings.Builder
	fmt.Fprintf(&s, "# cosa bench (%s, cosa %s, %d CPUs)\n\n", b.res.Started, b.res.CosaCommit, b.res.CPUs)
	fmt.Fprintf(&s, "Load average before: %s; after: %s.\n\n", b.res.LoadBefore, b.res.LoadAfter)
	s.WriteString("| figure | cosa | reference | ratio | target | met | load1 |\n|---|---|---|---|---|---|---|\n")
	for _, f := range b.res.Figures {
		met := "n/a"
		if f.Met != nil {
			met = map[bool]string{true: "yes", false: "**no**"}[*f.Met]
		}
		v := fnum(f.Value)
		if f.Value != nil && f.Unit == "bytes" {
			v = human(*f.Value)
		} else if f.Value != nil {
			v += " " + f.Unit
		}
		rv := fnum(f.ReferenceValue)
		if f.ReferenceValue != nil && f.Unit == "bytes" {
			rv = human(*f.ReferenceValue)
		} else if f.ReferenceValue != nil {
			rv += " " + f.Unit
		}
		if f.Error != "" {
			v = "null (" + firstLine(f.Error) + ")"
		}
		fmt.Fprintf(&s, "| %s: %s | %s | %s: %s | %s | %s | %s | %.1f |\n", f.ID, f.Name, v, f.Reference, rv, fnum(f.Ratio), f.Target, met, f.Load1)
	}
	for _, n := range b.res.Notes {
		fmt.Fprintf(&s, "\n%s\n", n)
	}
	return s.String()
}

// ---- small helpers

func diskUse(w string) (int64, map[string]int64, error) {
	paths := []string{"builds", "tmp/repo", "cache/objects", "cache/rootfs", "cache/ostree-archive"}
	var args []string
	for _, p := range paths {
		if _, err := os.Stat(filepath.Join(w, p)); err == nil {
			args = append(args, p)
		}
	}
	cmd := exec.Command("du", append([]string{"-s", "-B1", "-c"}, args...)...)
	cmd.Dir = w
	out, err := cmd.Output()
	if err != nil {
		return 0, nil, fmt.Errorf("du: %v", err)
	}
	parts := map[string]int64{}
	var total int64
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		if f[1] == "total" {
			total = n
		} else {
			parts[f[1]] = n
		}
	}
	return total, parts, nil
}

// latestArtifact is the path of images.NAME of the latest build.
func latestArtifact(w, name string) (string, error) {
	arch := compose.BaseArch()
	dir := filepath.Join(w, "builds", "latest", arch)
	data, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return "", err
	}
	var m struct {
		Images map[string]struct {
			Path string `json:"path"`
		} `json:"images"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return "", err
	}
	a, ok := m.Images[name]
	if !ok {
		return "", fmt.Errorf("the latest build has no %s image", name)
	}
	return filepath.Join(dir, a.Path), nil
}

func versitygwPath() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	out, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(out)), "bin", "versitygw")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("versitygw is not installed (make test-deps)")
}

func debsIn(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".deb") {
			n++
		}
		return nil
	})
	return n
}

func countPackages(root string) int {
	out, err := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f", "${Package}\n").Output()
	if err != nil {
		return -1
	}
	return len(strings.Fields(string(out)))
}

// removeAll removes a tree, refusing if anything is mounted under it and
// clearing immutable flags that ostree puts on deployments.
func removeAll(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(abs); os.IsNotExist(err) {
		return nil
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == abs || strings.HasPrefix(f[1], abs+"/")) {
			return fmt.Errorf("refusing to remove %s: %s is mounted", abs, f[1])
		}
	}
	if err := os.RemoveAll(abs); err != nil {
		exec.Command("chattr", "-R", "-i", abs).Run()
		return os.RemoveAll(abs)
	}
	return nil
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

func load1() float64 {
	v, _ := strconv.ParseFloat(strings.Fields(loadavg() + " 0")[0], 64)
	return v
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }

func round(v float64, prec int) float64 {
	p := math.Pow(10, float64(prec))
	return math.Round(v*p) / p
}

func fnum(v *float64) string {
	if v == nil {
		return "null"
	}
	return strconv.FormatFloat(*v, 'g', 6, 64)
}

func human(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.2f %s", v, units[i])
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func lastJSONLine(s string) any {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var v map[string]any
		if json.Unmarshal([]byte(lines[i]), &v) == nil {
			return v
		}
	}
	return nil
}

func rel(base, p string) string {
	r, err := filepath.Rel(base, p)
	if err != nil {
		return p
	}
	return r
}

var slugRE = regexp.MustCompile(`[^a-zA-Z0-9]+`)

func slug(s string) string {
	s = strings.Trim(slugRE.ReplaceAllString(s, "-"), "-")
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}
