package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/compress"
	"github.com/cosa-build/cosa/pkg/fileutil"
)

type compressOptions struct {
	Build      string
	Arch       string
	Compressor string
	Fast       bool
	Artifacts  []string
}

func newCompressCmd(g *globals) *cobra.Command {
	o := &compressOptions{}
	c := &cobra.Command{
		Use:   "compress [--compressor gzip|xz|zstd] [--fast] [--artifact NAME]... [--build ID]",
		Short: "Compress a build's artifacts (resumable; meta.json stays consistent)",
		Long: `Compress replaces each artifact of a build by a compressed copy (.gz, .xz or
.zst) and records uncompressed-sha256 and uncompressed-size in meta.json.
Artifacts with skip-compression, artifacts that are already compressed and,
unless named with --artifact, the ostree artifact are left alone. meta.json
is written after each artifact: an interrupted run is finished by running
the command again. The default compressor is image.yaml's "compressor".`,
		Args: maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			var alg compress.Algorithm
			if c.Flags().Changed("compressor") {
				a, err := compress.ParseAlgorithm(o.Compressor)
				if err != nil {
					return usageError{fmt.Errorf("--compressor: %w", err)}
				}
				alg = a
			}
			w, err := g.openWorkdir()
			if err != nil {
				return err
			}
			if alg == "" {
				cfg, err := w.LoadConfig()
				if err != nil {
					return err
				}
				if alg, err = compress.ParseAlgorithm(cfg.Image.Compressor); err != nil {
					return err
				}
			}
			d, id, err := g.resolveIn(w, o.Build)
			if err != nil {
				return err
			}
			_, err = compress.Compress(c.Context(), d, id, o.Arch, compress.Options{
				Algorithm: alg, Fast: o.Fast, Artifacts: o.Artifacts, Report: resultPrinter(g),
			})
			return compressError(err)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Build, "build", "latest", "build id")
	f.StringVar(&o.Arch, "arch", compose.BaseArch(), "architecture")
	f.StringVar(&o.Compressor, "compressor", "", "gzip, xz or zstd (default: image.yaml's compressor, itself gzip by default)")
	f.BoolVar(&o.Fast, "fast", false, "fastest compression level (gzip -1, xz -0, zstd -1) instead of the default (gzip -6, xz -6, zstd -3)")
	f.StringArrayVar(&o.Artifacts, "artifact", nil, "only this artifact, by images key, e.g. qemu (repeatable; naming ostree compresses it)")
	return c
}

func newDecompressCmd(g *globals) *cobra.Command {
	o := &compressOptions{}
	c := &cobra.Command{
		Use:   "decompress [--artifact NAME]... [--build ID]",
		Short: "Undo `cosa compress`, verifying every artifact against uncompressed-sha256",
		Long: `Decompress restores the artifacts that cosa compress compressed, writing runs
of zeros as holes, and checks each against the uncompressed-sha256 and
uncompressed-size in meta.json. On a mismatch it fails naming the file and
leaves the compressed file and meta.json as they were. Resumable like
compress.`,
		Args: maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			_, d, err := g.openBuildsDir()
			if err != nil {
				return err
			}
			id, err := resolveBuild(d, o.Build)
			if err != nil {
				return err
			}
			_, err = compress.Decompress(c.Context(), d, id, o.Arch, compress.Options{
				Artifacts: o.Artifacts, Report: resultPrinter(g),
			})
			return compressError(err)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Build, "build", "latest", "build id")
	f.StringVar(&o.Arch, "arch", compose.BaseArch(), "architecture")
	f.StringArrayVar(&o.Artifacts, "artifact", nil, "only this artifact, by images key, e.g. qemu (repeatable)")
	return c
}

// compressError turns an unknown --artifact into a usage error.
func compressError(err error) error {
	var ue *compress.UnknownArtifactError
	if errors.As(err, &ue) {
		return usageError{fmt.Errorf("--artifact: %w", err)}
	}
	return err
}

// resultPrinter writes one line per artifact: text on stdout, or with
// --json one JSON object per line.
func resultPrinter(g *globals) func(compress.Result) {
	return func(r compress.Result) {
		if g.JSON {
			b, _ := json.Marshal(struct {
				Event string `json:"event"`
				compress.Result
				MBps float64 `json:"mb_per_s,omitempty"`
				Time string  `json:"time"`
			}{"compress-artifact", r, round1(r.MBps()), time.Now().UTC().Format(time.RFC3339Nano)})
			fmt.Fprintf(g.Stdout, "%s\n", b)
			return
		}
		printResult(g.Stdout, r)
	}
}

func printResult(w io.Writer, r compress.Result) {
	if r.Action == compress.ActionSkipped {
		fmt.Fprintf(w, "%s: skipped %s (%s)\n", r.Artifact, r.From, r.Reason)
		return
	}
	resumed := ""
	if r.Resumed {
		resumed = ", finishing an interrupted run"
	}
	sizes := fmt.Sprintf("%s -> %s", fileutil.HumanBytes(r.CompSize), fileutil.HumanBytes(r.Size))
	if r.Action == compress.ActionCompressed {
		pct := 0.0
		if r.Size > 0 {
			pct = float64(r.CompSize) / float64(r.Size) * 100
		}
		sizes = fmt.Sprintf("%s -> %s, %.1f%%", fileutil.HumanBytes(r.Size), fileutil.HumanBytes(r.CompSize), pct)
	}
	fmt.Fprintf(w, "%s: %s %s -> %s (%s) in %s, %.1f MB/s%s\n",
		r.Artifact, r.Action, r.From, r.To, sizes,
		time.Duration(r.Seconds*float64(time.Second)).Round(10*time.Millisecond), r.MBps(), resumed)
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
