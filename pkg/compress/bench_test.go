package compress

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cosa-build/cosa/pkg/build"
	"github.com/cosa-build/cosa/pkg/fileutil"
)

// BenchmarkCompress compares our compressors with the command-line tools
// on the same ~200 MB file: a tar of /usr/lib (binaries, libraries, text;
// close to what disk images hold), or the file named by
// $COSA_BENCH_FILE. Run it with
//
//	go test -run '^$' -bench Compress -benchtime 1x ./pkg/compress/
//
// b.SetBytes makes `go test` print MB/s of uncompressed input.
func BenchmarkCompress(b *testing.B) {
	path, fi := benchInput(b)
	for _, a := range Algorithms {
		for _, fast := range []bool{false, true} {
			name := string(a)
			if fast {
				name += "-fast"
			}
			b.Run("cosa-"+name, func(b *testing.B) { benchCompressStream(b, a, path, fi.Size(), fast) })
			if a == Zstd {
				// The in-process encoder, used when zstd(1) is missing.
				b.Run("go-"+name, func(b *testing.B) {
					defer func(c string) { zstdCommand = c }(zstdCommand)
					zstdCommand = "cosa-bench-no-such-zstd"
					benchCompressStream(b, a, path, fi.Size(), fast)
				})
			}
			tool, args := cliCommand(a, fast)
			b.Run("cli-"+name, func(b *testing.B) {
				if _, err := exec.LookPath(tool); err != nil {
					b.Skipf("%s not installed", tool)
				}
				benchCompress(b, path, fi.Size(), func(w io.Writer, r io.Reader) error {
					cmd := exec.Command(tool, args...)
					cmd.Stdin, cmd.Stdout = r, w
					return cmd.Run()
				})
			})
		}
	}
}

// cliCommand is the command line a user would type for the same job.
func cliCommand(a Algorithm, fast bool) (string, []string) {
	switch a {
	case Gzip:
		if fast {
			return "gzip", []string{"-c", "-1"}
		}
		return "gzip", []string{"-c", "-6"}
	case XZ:
		if fast {
			return "xz", []string{"-c", "-0", "-T0"}
		}
		return "xz", []string{"-c", "-6", "-T0"}
	default:
		if fast {
			return "zstd", []string{"-c", "-q", "-1", "-T0"}
		}
		return "zstd", []string{"-c", "-q", "-3", "-T0"}
	}
}

// BenchmarkDecompress measures decompression of the benchmark file, in MB/s
// of uncompressed output.
func BenchmarkDecompress(b *testing.B) {
	path, fi := benchInput(b)
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, a := range Algorithms {
		var comp bytes.Buffer
		if err := CompressStream(ctx, a, &comp, bytes.NewReader(data), StreamOptions{}); err != nil {
			b.Fatal(err)
		}
		b.Run("cosa-"+string(a), func(b *testing.B) {
			b.SetBytes(fi.Size())
			for i := 0; i < b.N; i++ {
				if err := DecompressStream(ctx, a, io.Discard, bytes.NewReader(comp.Bytes()), StreamOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		tool := map[Algorithm]string{Gzip: "gzip", XZ: "xz", Zstd: "zstd"}[a]
		b.Run("cli-"+string(a), func(b *testing.B) {
			if _, err := exec.LookPath(tool); err != nil {
				b.Skipf("%s not installed", tool)
			}
			b.SetBytes(fi.Size())
			for i := 0; i < b.N; i++ {
				cmd := exec.Command(tool, "-d", "-c", "-T0")
				if a == Gzip {
					cmd = exec.Command(tool, "-d", "-c")
				}
				cmd.Stdin, cmd.Stdout = bytes.NewReader(comp.Bytes()), io.Discard
				if err := cmd.Run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchInput skips a benchmark under -short (each reads 200 MB several
// times) and returns the benchmark file and its size.
func benchInput(b *testing.B) (string, os.FileInfo) {
	b.Helper()
	if testing.Short() {
		b.Skip("slow: reads the 200 MB benchmark file several times")
	}
	path := benchFile(b)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return path, fi
}

// benchFile returns $COSA_BENCH_FILE or makes a 200 MB tar of /usr/lib.
func benchFile(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("COSA_BENCH_FILE"); p != "" {
		return p
	}
	path := filepath.Join(b.TempDir(), "usr-lib.tar")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("tar", "-cf", "-", "-C", "/", "usr/lib")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Skipf("tar: %v", err)
	}
	n, err := io.CopyN(f, out, 200<<20)
	out.Close()
	cmd.Process.Kill()
	cmd.Wait()
	if n < 20<<20 {
		b.Skipf("only %d bytes under /usr/lib: %v", n, err)
	}
	return path
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// benchCompressStream benchmarks CompressStream on path.
func benchCompressStream(b *testing.B, a Algorithm, path string, size int64, fast bool) {
	benchCompress(b, path, size, func(w io.Writer, r io.Reader) error {
		return CompressStream(context.Background(), a, w, r, StreamOptions{Fast: fast})
	})
}

// benchCompress runs compress from path b.N times and reports the
// compressed size as a share of size.
func benchCompress(b *testing.B, path string, size int64, compress func(io.Writer, io.Reader) error) {
	b.SetBytes(size)
	var out int64
	for i := 0; i < b.N; i++ {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		cw := &countWriter{}
		if err := compress(cw, f); err != nil {
			b.Fatal(err)
		}
		f.Close()
		out = cw.n
	}
	b.ReportMetric(float64(out)/float64(size)*100, "%size")
}

// BenchmarkCompressArtifact measures all of `cosa compress` for one zstd
// artifact (hashing, writing, fsync, meta.json, removing the original) on
// the benchmark file, with the input hashed (no stamp) and trusted on a
// sum stamp. Each round is undone by Decompress, untimed.
func BenchmarkCompressArtifact(b *testing.B) {
	path, fi := benchInput(b)
	sum, size, err := fileutil.SHA256File(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, stamped := range []bool{false, true} {
		name := "hashed"
		if stamped {
			name = "stamped"
		}
		b.Run(name, func(b *testing.B) {
			d, err := build.Open(filepath.Join(b.TempDir(), "builds"))
			if err != nil {
				b.Fatal(err)
			}
			d.LockWait = io.Discard
			dir := d.BuildDir(testID, testArch)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			file := "demo-qemu.qcow2"
			if out, err := exec.Command("cp", path, filepath.Join(dir, file)).CombinedOutput(); err != nil {
				b.Fatalf("cp: %v %s", err, out)
			}
			// meta.json needs an ostree artifact; Compress leaves it alone.
			tar := []byte("ostree")
			if err := os.WriteFile(filepath.Join(dir, "demo-ostree.tar"), tar, 0o644); err != nil {
				b.Fatal(err)
			}
			meta := &build.Meta{BuildID: testID, Name: "demo", OSTreeCommit: sum, OSTreeTimestamp: "2026-11-22T10:00:00Z",
				OSTreeVersion: testID, BaseArch: testArch, Images: map[string]build.Artifact{
					"qemu":   {Path: file, Sha256: sum, Size: size},
					"ostree": {Path: "demo-ostree.tar", Sha256: fileutil.SHA256Hex(tar), Size: int64(len(tar))},
				}}
			if err := d.WriteMeta(testID, testArch, meta); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.SetBytes(fi.Size())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				p := filepath.Join(dir, file)
				if stamped {
					if err := StampSum(p, sum, size); err != nil {
						b.Skipf("no stamps here: %v", err)
					}
				} else if err := unix.Removexattr(p, stampAttr); err != nil && !errors.Is(err, unix.ENODATA) {
					b.Fatal(err)
				}
				b.StartTimer()
				res, err := Compress(ctx, d, testID, testArch, Options{Algorithm: Zstd})
				if err != nil {
					b.Fatal(err)
				}
				if len(res) != 2 || res[1].Artifact != "qemu" || res[1].hashedInput == stamped {
					b.Fatalf("results %+v, want qemu compressed with hashed input %v", res, !stamped)
				}
				b.StopTimer()
				if _, err := Decompress(ctx, d, testID, testArch, Options{}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
