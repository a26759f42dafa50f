package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/compress"
	"github.com/cosa-build/cosa/pkg/events"
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
		Example: `  cosa compress
  cosa compress --compressor zstd --fast
  cosa compress --artifact qemu --artifact metal --build 12.20261122.dev.1`,
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
			rs, err := compress.Compress(c.Context(), d, id, o.Arch, compress.Options{
				Algorithm: alg, Fast: o.Fast, Artifacts: o.Artifacts, Report: artifactReporter(g),
			})
			if err != nil {
				return compressError(err)
			}
			return compressResult(g, "compress", d, id, o.Arch, rs)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Build, "build", "latest", "build id or tag")
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
		Example: `  cosa decompress
  cosa decompress --artifact qemu`,
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
			rs, err := compress.Decompress(c.Context(), d, id, o.Arch, compress.Options{
				Artifacts: o.Artifacts, Report: artifactReporter(g),
			})
			if err != nil {
				return compressError(err)
			}
			return compressResult(g, "decompress", d, id, o.Arch, rs)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Build, "build", "latest", "build id or tag")
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

// artifactReporter turns each artifact's outcome into an artifact event:
// a JSON line under --json, otherwise its text on stdout, where the
// per-artifact lines are the command's summary.
func artifactReporter(g *globals) func(compress.Result) {
	return func(r compress.Result) {
		e := events.Event{Type: events.Artifact, Artifact: r.Artifact, Action: r.Action, Reason: r.Reason,
			From: r.From, To: r.To, Resumed: r.Resumed, Size: r.Size, CompressedSize: r.CompSize,
			DurationS: r.Seconds, MBPerS: events.Round1(r.MBps())}
		if g.JSON {
			g.events().Emit(e)
			return
		}
		fmt.Fprintln(g.Stdout, e.Text())
	}
}

// compressResult ends compress and decompress: every artifact considered,
// as meta.json now records it, with what was done to it.
func compressResult(g *globals, command string, d *build.Dir, id, arch string, rs []compress.Result) error {
	if !g.JSON {
		return nil
	}
	m, err := d.ReadMeta(id, arch)
	if err != nil {
		return err
	}
	refs := []artifactRef{}
	for _, r := range rs {
		a, ok := m.Images[r.Artifact]
		if !ok {
			continue
		}
		ref := newArtifactRef(id, arch, r.Artifact, a)
		ref.Action = r.Action
		refs = append(refs, ref)
	}
	g.result(command, map[string]any{"build": id, "arch": arch, "artifacts": refs}, "")
	return nil
}
