package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/boottest"
	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/compress"
	"github.com/cosa-build/cosa/pkg/events"
	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/cosa-build/cosa/pkg/qemu"
)

type testOptions struct {
	Build       string
	UEFI, BIOS  bool
	UpgradeFrom string
	JUnit       string
	Jobs        int
}

// failedTestsError makes `cosa test` exit 1 after printing the summary.
type failedTestsError struct{ failed, total int }

func (e failedTestsError) Error() string {
	return fmt.Sprintf("%d of %d tests failed", e.failed, e.total)
}

func newTestCmd(g *globals) *cobra.Command {
	o := &testOptions{}
	c := &cobra.Command{
		Use:   "test [--build ID] [--uefi|--bios] [--upgrade-from ID] [PATTERN]",
		Short: "Boot a build's qemu image and run the boot checks and the config's tests in it",
		Example: `  cosa test                                  # both firmwares, every test
  cosa test --uefi 'ssh-*'
  cosa test --junit results.xml
  cosa test --build 12.20261123.dev.1 --upgrade-from 12.20261122.dev.1`,
		Args: maxArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if o.Jobs < 0 {
				return usageError{fmt.Errorf("--jobs %d: want 1 or more (or 0 for the default)", o.Jobs)}
			}
			if o.JUnit != "" {
				// Checked now, not after minutes of booting.
				if st, err := os.Stat(filepath.Dir(o.JUnit)); err != nil || !st.IsDir() {
					return usageError{fmt.Errorf("--junit %s: no directory %s to write it in", o.JUnit, filepath.Dir(o.JUnit))}
				}
			}
			pattern := ""
			if len(args) == 1 {
				pattern = args[0]
				if _, err := filepath.Match(pattern, ""); err != nil {
					return usageError{fmt.Errorf("bad pattern %q: %v", pattern, err)}
				}
			}
			w, d, id, err := g.openBuild(o.Build)
			if err != nil {
				return err
			}
			arch := compose.BaseArch()
			m, img, err := bootImage(c.Context(), d, id, arch, "qemu")
			if err != nil {
				return err
			}
			// Both builds' files are checked before anything boots.
			var up *boottest.UpgradeOptions
			if o.UpgradeFrom != "" {
				if up, err = upgradeInputs(c.Context(), d, o.UpgradeFrom, id, arch, m); err != nil {
					return err
				}
			}
			tests, err := boottest.Discover(filepath.Join(w.ConfigDir(), "tests"), pattern)
			if err != nil {
				return err
			}
			firmwares := []qemu.Firmware{qemu.UEFI, qemu.BIOS}
			if o.UEFI {
				firmwares = []qemu.Firmware{qemu.UEFI}
			} else if o.BIOS {
				firmwares = []qemu.Firmware{qemu.BIOS}
			}
			out := filepath.Join(w.TmpDir(), "test")
			os.RemoveAll(out)
			ctx := c.Context()
			started := time.Now()
			// Every boot is its own VM: a firmware's boot with the tests,
			// and its upgrade test, which boots the older build. Under TCG
			// a boot keeps about one host CPU busy, so they run at once,
			// up to one per CPU; the results keep this order.
			type boot struct {
				fw      qemu.Firmware
				upgrade bool
			}
			var boots []boot
			for _, fw := range firmwares {
				boots = append(boots, boot{fw, false})
				if up != nil {
					boots = append(boots, boot{fw, true})
				}
			}
			jobs := o.Jobs
			if jobs == 0 {
				jobs = max(1, min(len(boots), runtime.NumCPU()))
			}
			perBoot := make([][]boottest.Result, len(boots))
			errs := make([]error, len(boots))
			sem := make(chan struct{}, jobs)
			var wg sync.WaitGroup
			for i, b := range boots {
				if b.upgrade {
					fmt.Fprintf(g.Stderr, "==> booting %s with %s to upgrade it to %s\n", o.UpgradeFrom, b.fw, id)
				} else {
					fmt.Fprintf(g.Stderr, "==> booting %s (%s) with %s, %d tests\n", id, filepath.Base(img), b.fw, len(tests))
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					sem <- struct{}{}
					defer func() { <-sem }()
					if !b.upgrade {
						perBoot[i], errs[i] = boottest.Run(ctx, boottest.Options{Image: img, Firmware: b.fw, Tests: tests, Commit: m.OSTreeCommit, OutDir: out})
						return
					}
					uo := *up
					uo.Firmware, uo.OutDir = b.fw, out
					r, err := boottest.Upgrade(ctx, uo)
					perBoot[i], errs[i] = []boottest.Result{r}, err
				}()
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				return err
			}
			var results []boottest.Result
			for _, rs := range perBoot {
				results = append(results, rs...)
			}
			if o.JUnit != "" {
				var buf bytes.Buffer
				if err := boottest.WriteJUnit(&buf, "cosa test "+id, results, started); err != nil {
					return err
				}
				if err := fileutil.WriteFileAtomic(o.JUnit, buf.Bytes(), 0o644); err != nil {
					return fmt.Errorf("--junit: %w", err)
				}
			}
			return report(g, id, results, out)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Build, "build", "latest", "build id or tag")
	f.BoolVar(&o.UEFI, "uefi", false, "boot with UEFI (OVMF) only")
	f.BoolVar(&o.BIOS, "bios", false, "boot with BIOS (SeaBIOS) only")
	c.MarkFlagsMutuallyExclusive("uefi", "bios")
	f.StringVar(&o.JUnit, "junit", "", "also write the results as a JUnit XML report to FILE, for CI")
	f.StringVar(&o.UpgradeFrom, "upgrade-from", "", "also boot this older build (id or tag) and upgrade it to --build, from a disk holding --build's commit")
	f.IntVar(&o.Jobs, "jobs", 0, "VMs booted at once (default: every boot at once, at most one per host CPU)")
	return c
}

// upgradeInputs checks and returns what an upgrade test from build fromID
// to build toID boots and pulls: fromID's qemu image and toID's ostree
// archive, each verified against its meta.json.
func upgradeInputs(ctx context.Context, d *build.Dir, fromID, toID, arch string, to *build.Meta) (*boottest.UpgradeOptions, error) {
	fromID, err := resolveBuild(d, fromID)
	if err != nil {
		return nil, err
	}
	_, fromImg, err := bootImage(ctx, d, fromID, arch, "qemu")
	if err != nil {
		return nil, err
	}
	tar, ok := to.Images["ostree"]
	if !ok {
		return nil, fmt.Errorf("build %s has no ostree artifact to upgrade to", toID)
	}
	archive, err := d.VerifyArtifact(ctx, toID, arch, "ostree", tar)
	if err != nil {
		return nil, err
	}
	return &boottest.UpgradeOptions{FromImage: fromImg, ToArchive: archive, ToCommit: to.OSTreeCommit, Ref: to.Ref}, nil
}

// bootImage reads build id's meta.json and returns it with the verified
// path of its platform image (see imagePath).
func bootImage(ctx context.Context, d *build.Dir, id, arch, platform string) (*build.Meta, string, error) {
	m, err := d.ReadMeta(id, arch)
	if err != nil {
		return nil, "", err
	}
	img, err := imagePath(ctx, d, id, arch, m, platform)
	if err != nil {
		return nil, "", err
	}
	return m, img, nil
}

// imagePath is a build's image file for platform once it is known to be
// the one meta.json describes (a plain file name in the build directory,
// not a symlink, with the recorded size and sha256), or a clear error.
func imagePath(ctx context.Context, d *build.Dir, id, arch string, m *build.Meta, platform string) (string, error) {
	a, ok := m.Images[platform]
	if !ok {
		return "", fmt.Errorf("build %s has no %s image; run `cosa buildextend-%s --build %s`", id, platform, platform, id)
	}
	if compress.IsCompressed(a.Path) {
		return "", fmt.Errorf("build %s's %s image is compressed (%s); run `cosa decompress --build %s --artifact %s` first", id, platform, a.Path, id, platform)
	}
	return d.VerifyArtifact(ctx, id, arch, platform, a)
}

func report(g *globals, id string, results []boottest.Result, out string) error {
	if g.JSON {
		return reportJSON(g, id, results, out)
	}
	tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TEST\tFIRMWARE\tRESULT\tTIME\tDETAIL")
	failed := 0
	for _, r := range results {
		res, detail := "PASS", ""
		if r.Name == "boot" && r.Passed {
			detail = fmt.Sprintf("kernel %.0fs, multi-user %.0fs, login %.0fs", r.Kernel, r.MultiUser, r.Login)
		}
		if !r.Passed {
			res, detail = "FAIL", strings.SplitN(r.Reason, "\n", 2)[0]
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0fs\t%s\n", r.Name, r.Firmware, res, r.Duration, detail)
	}
	tw.Flush()
	for _, r := range results {
		if !r.Passed && r.Output != "" {
			fmt.Fprintf(g.Stdout, "\n--- %s (%s): %s\n%s\n", r.Name, r.Firmware, r.Reason, r.Output)
			if r.ConsoleFile != "" {
				fmt.Fprintf(g.Stdout, "(console: %s)\n", r.ConsoleFile)
			}
		}
	}
	fmt.Fprintf(g.Stdout, "%d passed, %d failed (results in %s)\n", len(results)-failed, failed, out)
	if failed > 0 {
		return failedTestsError{failed, len(results)}
	}
	return nil
}

// reportJSON is report under --json: a test event per result, then the
// result event, or, when a test failed, the error event main writes.
func reportJSON(g *globals, id string, results []boottest.Result, out string) error {
	failed := 0
	for _, r := range results {
		e := events.Event{Type: events.Test, Test: r.Name, Firmware: string(r.Firmware), Action: "pass", DurationS: r.Duration}
		if !r.Passed {
			e.Action, e.Message = "fail", r.Reason
			failed++
		}
		g.events().Emit(e)
	}
	if failed > 0 {
		return failedTestsError{failed, len(results)}
	}
	g.result("test", map[string]any{"build": id, "passed": len(results), "failed": 0, "results": results, "output_dir": out}, "")
	return nil
}
