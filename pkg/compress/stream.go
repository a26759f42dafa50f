package compress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/cosa-build/cosa/internal/hostcmd"
	"github.com/cosa-build/cosa/pkg/fileutil"
)

// How each format is done (measured on the 2-CPU build machine, see
// docs/compress.md):
//   - gzip: in-process parallel deflate (pgzip.go), single gzip member;
//     pigz is not a Debian default and GNU gzip is single-threaded.
//   - zstd: the external `zstd -T<threads>` when installed (as fast or
//     faster than klauspost/compress's encoder on dense data here, and
//     slightly smaller output), else that encoder; also that encoder for
//     sparse files, which it compresses ~1.5-3x faster than piping their
//     zeros to zstd(1), and for files that are mostly incompressible
//     (probe.go), which it gets through with far less work.
//   - xz: the external `xz -T<threads>`; there is no multi-threaded LZMA2
//     encoder for Go, and xz is part of every Debian install.
//
// Decompression: gzip and zstd in-process, xz through `xz -d`.

// CompressStream compresses src into dst.
func CompressStream(ctx context.Context, a Algorithm, dst io.Writer, src io.Reader, o StreamOptions) error {
	switch a {
	case Gzip:
		return gzipCompress(ctx, dst, src, o)
	case Zstd:
		return zstdCompress(ctx, dst, src, o)
	case XZ:
		level := "-6"
		if o.Fast {
			level = "-0"
		}
		return runTool(ctx, dst, src, "xz", "-c", "-q", level, "-T"+strconv.Itoa(o.threads()))
	}
	return fmt.Errorf("unknown compressor %q", a)
}

// DecompressStream decompresses src into dst. Concatenated gzip members and
// zstd frames are read as one stream, as the command-line tools do.
func DecompressStream(ctx context.Context, a Algorithm, dst io.Writer, src io.Reader, o StreamOptions) error {
	switch a {
	case Gzip:
		zr, err := gzip.NewReader(bufio.NewReaderSize(src, 1<<20))
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		if _, err := io.CopyBuffer(dst, fileutil.ContextReader(ctx, zr), make([]byte, 1<<20)); err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		return nil
	case Zstd:
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(o.threads()), zstd.WithDecoderMaxMemory(1<<40))
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		if _, err := io.CopyBuffer(dst, fileutil.ContextReader(ctx, zr), make([]byte, 1<<20)); err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		return nil
	case XZ:
		return runTool(ctx, dst, src, "xz", "-d", "-c", "-q", "-T"+strconv.Itoa(o.threads()))
	}
	return fmt.Errorf("unknown compressor %q", a)
}

// zstdCommand is the zstd program used for compression when installed;
// a variable so tests can exercise the in-process fallback.
var zstdCommand = "zstd"

func zstdCompress(ctx context.Context, dst io.Writer, src io.Reader, o StreamOptions) error {
	if usesTool(Zstd, o) {
		level := "-3"
		if o.Fast {
			level = "-1"
		}
		// --no-sparse: the output is written front to back, never seeked
		// over (followWrites hashes it as it grows).
		return runTool(ctx, dst, src, zstdCommand, "-c", "-q", "--no-sparse", level, "-T"+strconv.Itoa(o.threads()))
	}
	level := zstd.SpeedDefault
	if o.Fast {
		level = zstd.SpeedFastest
	}
	// Independent frames of zstdFrameSize input each, encoded side by side
	// and written in order: a valid zstd stream (zstd -d reads
	// concatenated frames as one), each frame recording its content size.
	// On 2 CPUs this kept both busy where the encoder's own streaming mode
	// (one block compressed while the next is read) left one mostly idle.
	// EncodeAll is safe for concurrent use by up to its concurrency.
	threads := o.threads()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(threads))
	if err != nil {
		return err
	}
	defer enc.Close()
	return blockPipeline{
		size:    zstdFrameSize,
		threads: threads,
		newWorker: func() func(data, dict []byte, out *outBuf) error {
			return func(data, _ []byte, out *outBuf) error {
				*out = enc.EncodeAll(data, *out)
				return nil
			}
		},
	}.runBlocks(ctx, dst, fileutil.ContextReader(ctx, src))
}

// zstdFrameSize is the input per frame of the in-process zstd encoder.
// Against one frame for the whole input, 8 MiB frames came out 0.2% larger
// on the default qcow2 (4 MiB ones 0.5%) and 1.4% on a dense one (32 MiB
// ones 0.2%). 16 MiB frames doubled the page faults of a run, and its
// time with them.
const zstdFrameSize = 8 << 20

// usesTool reports whether CompressStream runs an external program for a:
// such a program is then best given the files themselves (see
// compressFile), not pipes fed by Go.
func usesTool(a Algorithm, o StreamOptions) bool {
	switch a {
	case XZ:
		return true
	case Zstd:
		_, err := exec.LookPath(zstdCommand)
		return err == nil && !o.InProcess
	}
	return false
}

// NeedTool returns an error if a's implementation needs a program that is
// not on PATH.
func NeedTool(a Algorithm) error {
	if a != XZ {
		return nil
	}
	if _, err := exec.LookPath("xz"); err != nil {
		return errors.New("xz is not installed (it is in the xz-utils package)")
	}
	return nil
}

// runTool runs name as a filter from src to dst.
func runTool(ctx context.Context, dst io.Writer, src io.Reader, name string, args ...string) error {
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("%s is not installed: %w", name, err)
	}
	cmd := hostcmd.Command(name, args...)
	cmd.Stdin, cmd.Stdout = src, dst
	if err := cmd.Run(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return nil
}
