package compress

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cosa-build/cosa/internal/testutil"
	"github.com/cosa-build/cosa/pkg/build"
)

const (
	testID   = "42.20261122.dev.0"
	testArch = "x86_64"
)

// fixture is a builds/ dir with one build holding:
//
//	metal   a 64 MiB sparse raw image with a few MiB of data
//	qemu    a text file
//	ostree  a small "tar"
//	iso     a file marked skip-compression
type fixture struct {
	d    *build.Dir
	dir  string            // builds/<id>/<arch>
	sums map[string]string // file name -> sha256 of the original content
	meta *build.Meta       // as first written
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	d, err := build.Open(filepath.Join(t.TempDir(), "builds"))
	if err != nil {
		t.Fatal(err)
	}
	d.LockWait = io.Discard
	f := &fixture{d: d, dir: d.BuildDir(testID, testArch), sums: map[string]string{}}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	prefix := "demo-" + testID + "-"
	images := map[string]build.Artifact{}
	add := func(name, file string, skip bool) {
		p := filepath.Join(f.dir, file)
		sum, size := fileSum(t, p)
		f.sums[file] = sum
		images[name] = build.Artifact{Path: file, Sha256: sum, Size: size, SkipCompression: skip}
	}

	raw := prefix + "metal." + testArch + ".raw"
	rf, err := os.Create(filepath.Join(f.dir, raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := rf.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 3<<20 + 123, 20 << 20, 64<<20 - 5000} {
		data := random(256 << 10)
		if off+int64(len(data)) > 64<<20 {
			data = data[:64<<20-off]
		}
		// Half random, half text, like a filesystem.
		copy(data[len(data)/2:], bytes.Repeat([]byte("systemd-networkd.service "), len(data)))
		if _, err := rf.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	rf.Close()
	add("metal", raw, false)

	var text strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&text, "line %d: the quick brown fox jumps over the lazy dog\n", i)
	}
	writeFile(t, filepath.Join(f.dir, prefix+"qemu."+testArch+".qcow2"), []byte(text.String()))
	add("qemu", prefix+"qemu."+testArch+".qcow2", false)
	writeFile(t, filepath.Join(f.dir, prefix+"ostree."+testArch+".tar"), append([]byte("ostree "), random(100<<10)...))
	add("ostree", prefix+"ostree."+testArch+".tar", false)
	writeFile(t, filepath.Join(f.dir, prefix+"live."+testArch+".iso"), []byte("an iso"))
	add("iso", prefix+"live."+testArch+".iso", true)

	sum := sha256.Sum256([]byte("commit"))
	f.meta = &build.Meta{
		BuildID:         testID,
		Name:            "demo",
		OSTreeCommit:    hex.EncodeToString(sum[:]),
		OSTreeTimestamp: "2026-11-22T10:00:00Z",
		OSTreeVersion:   testID,
		BaseArch:        testArch,
		Images:          images,
	}
	if err := d.WriteMeta(testID, testArch, f.meta); err != nil {
		t.Fatal(err)
	}
	return f
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileSum(t *testing.T, path string) (string, int64) {
	t.Helper()
	return testutil.FileSHA256(t, path)
}

func (f *fixture) readMeta(t *testing.T) *build.Meta {
	t.Helper()
	m, err := f.d.ReadMeta(testID, testArch)
	if err != nil {
		t.Fatal(err)
	}
	data, err := m.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if err := build.ValidateMeta(data); err != nil {
		t.Fatalf("meta.json does not validate: %v", err)
	}
	return m
}

// checkConsistent asserts the invariants: every file meta.json names
// exists with its sha256, size and mode 0644, and the directory holds
// nothing else but meta.json.
func (f *fixture) checkConsistent(t *testing.T) *build.Meta {
	t.Helper()
	m := f.readMeta(t)
	want := []string{build.MetaFile}
	for name, a := range m.Images {
		p := filepath.Join(f.dir, a.Path)
		sum, size := fileSum(t, p)
		if sum != a.Sha256 || size != a.Size {
			t.Errorf("%s: %s has sha256 %s size %d, meta.json says %s %d", name, a.Path, sum, size, a.Sha256, a.Size)
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %o, want 644", a.Path, fi.Mode().Perm())
		}
		want = append(want, a.Path)
	}
	slices.Sort(want)
	var got []string
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("directory holds %q, want %q", got, want)
	}
	return m
}

func haveTool(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

func testAlgorithms(t *testing.T) []Algorithm {
	if haveTool("xz") {
		return Algorithms
	}
	t.Log("xz not installed: not testing xz")
	return []Algorithm{Gzip, Zstd}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, alg := range testAlgorithms(t) {
		t.Run(string(alg), func(t *testing.T) {
			f := newFixture(t)
			var reported []Result
			res, err := Compress(ctx, f.d, testID, testArch, Options{Algorithm: alg, Fast: alg == XZ, Report: func(r Result) { reported = append(reported, r) }})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res, reported) {
				t.Errorf("reported %+v, returned %+v", reported, res)
			}
			actions := map[string]string{}
			for _, r := range res {
				actions[r.Artifact] = r.Action
			}
			wantActions := map[string]string{"iso": ActionSkipped, "metal": ActionCompressed, "ostree": ActionSkipped, "qemu": ActionCompressed}
			if !reflect.DeepEqual(actions, wantActions) {
				t.Errorf("actions %v, want %v", actions, wantActions)
			}
			m := f.checkConsistent(t)
			for name, a := range m.Images {
				orig := f.meta.Images[name]
				if name == "metal" || name == "qemu" {
					want := build.Artifact{Path: orig.Path + alg.Suffix(), Sha256: a.Sha256, Size: a.Size,
						UncompressedSha256: orig.Sha256, UncompressedSize: orig.Size}
					if a != want {
						t.Errorf("%s: %+v, want %+v", name, a, want)
					}
					if a.Size >= orig.Size {
						t.Errorf("%s: compressed %d bytes from %d", name, a.Size, orig.Size)
					}
					// -t checks the format's own checksum of the content
					// (CRC-32, CRC-64, XXH64).
					tool := map[Algorithm]string{Gzip: "gzip", XZ: "xz", Zstd: "zstd"}[alg]
					if haveTool(tool) {
						if out, err := exec.Command(tool, "-t", filepath.Join(f.dir, a.Path)).CombinedOutput(); err != nil {
							t.Errorf("%s -t %s: %v %s", tool, a.Path, err, out)
						}
					}
				} else if a != orig {
					t.Errorf("%s changed: %+v -> %+v", name, orig, a)
				}
			}

			// Running again does nothing.
			res, err = Compress(ctx, f.d, testID, testArch, Options{Algorithm: alg})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if r.Action != ActionSkipped {
					t.Errorf("second run: %+v", r)
				}
			}

			res, err = Decompress(ctx, f.d, testID, testArch, Options{})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, r := range res {
				if r.Action == ActionDecompressed {
					n++
				}
			}
			if n != 2 {
				t.Errorf("decompressed %d artifacts, want 2: %+v", n, res)
			}
			m = f.checkConsistent(t)
			if !reflect.DeepEqual(m.Images, f.meta.Images) {
				t.Errorf("after decompress images = %+v, want %+v", m.Images, f.meta.Images)
			}
			// The raw image came back sparse.
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(f.dir, m.Images["metal"].Path), &st); err != nil {
				t.Fatal(err)
			}
			if used := st.Blocks * 512; used > 16<<20 {
				t.Errorf("decompressed raw image uses %d bytes on disk for %d apparent", used, st.Size)
			}
		})
	}
}

func TestCompressSelectedArtifacts(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	res, err := Compress(ctx, f.d, testID, testArch, Options{Algorithm: Zstd, Artifacts: []string{"ostree", "iso"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Artifact != "iso" || res[0].Action != ActionSkipped || res[1].Artifact != "ostree" || res[1].Action != ActionCompressed {
		t.Errorf("results %+v", res)
	}
	m := f.checkConsistent(t)
	if !strings.HasSuffix(m.Images["ostree"].Path, ".tar.zst") || m.Images["qemu"] != f.meta.Images["qemu"] {
		t.Errorf("images %+v", m.Images)
	}

	_, err = Compress(ctx, f.d, testID, testArch, Options{Algorithm: Zstd, Artifacts: []string{"qemu", "nope"}})
	var ue *UnknownArtifactError
	if !errors.As(err, &ue) || !slices.Equal(ue.Names, []string{"nope"}) {
		t.Fatalf("err = %v, want UnknownArtifactError for nope", err)
	}
	if m := f.checkConsistent(t); m.Images["qemu"] != f.meta.Images["qemu"] {
		t.Errorf("qemu changed despite the error")
	}
	if _, err := Compress(ctx, f.d, testID, testArch, Options{Algorithm: "lz4"}); err == nil {
		t.Error("lz4 accepted")
	}
}

func TestBusy(t *testing.T) {
	f := newFixture(t)
	unlock, err := lockDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := Compress(context.Background(), f.d, testID, testArch, Options{Algorithm: Gzip}); !errors.Is(err, ErrBusy) {
		t.Errorf("err = %v, want ErrBusy", err)
	}
}

// stageCompressed writes the compressed file for artifact name the way an
// interrupted Compress would have, without touching meta.json.
func (f *fixture) stageCompressed(t *testing.T, alg Algorithm, name string) (rel, sum string, size int64) {
	t.Helper()
	a := f.meta.Images[name]
	p := newOp(f.d, testID, testArch, Options{Algorithm: alg, Fast: true})
	sum, size, _, err := p.compressFile(context.Background(), name, p.abs(a.Path), p.abs(a.Path+alg.Suffix()), a)
	if err != nil {
		t.Fatal(err)
	}
	return a.Path + alg.Suffix(), sum, size
}

func TestResumeCompress(t *testing.T) {
	ctx := context.Background()
	for _, alg := range testAlgorithms(t) {
		t.Run(string(alg), func(t *testing.T) {
			f := newFixture(t)
			// Crash 1: qemu's compressed file was renamed into place,
			// meta.json not yet updated; also a temp file of metal's
			// and a stale file from a run with another compressor.
			f.stageCompressed(t, alg, "qemu")
			metal := f.meta.Images["metal"].Path
			writeFile(t, filepath.Join(f.dir, "."+metal+alg.Suffix()+".tmp-123"), []byte("partial"))
			other := Gzip
			if alg == Gzip {
				other = Zstd
			}
			writeFile(t, filepath.Join(f.dir, metal+other.Suffix()), []byte("stale"))
			// Crash 2: ostree was compressed and meta.json updated, but
			// the original not yet removed.
			rel, sum, size := f.stageCompressed(t, alg, "ostree")
			p := newOp(f.d, testID, testArch, Options{Algorithm: alg})
			orig := f.meta.Images["ostree"]
			if err := p.updateMeta(ctx, "ostree", orig, rel, func(a *build.Artifact) {
				*a = build.Artifact{Path: rel, Sha256: sum, Size: size, UncompressedSha256: orig.Sha256, UncompressedSize: orig.Size}
			}); err != nil {
				t.Fatal(err)
			}

			res, err := Compress(ctx, f.d, testID, testArch, Options{Algorithm: alg, Fast: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if r.Artifact == "qemu" && (r.Action != ActionCompressed || !r.Resumed) {
					t.Errorf("qemu: %+v, want compressed and resumed", r)
				}
				if r.Artifact == "metal" && (r.Action != ActionCompressed || r.Resumed) {
					t.Errorf("metal: %+v, want compressed afresh", r)
				}
			}
			m := f.checkConsistent(t)
			for _, name := range []string{"qemu", "metal", "ostree"} {
				if a := m.Images[name]; a.Path != f.meta.Images[name].Path+alg.Suffix() || a.UncompressedSha256 != f.meta.Images[name].Sha256 {
					t.Errorf("%s: %+v", name, a)
				}
			}
		})
	}
}

func TestResumeCompressCorruptLeftover(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	rel, _, _ := f.stageCompressed(t, Gzip, "qemu")
	// Truncate it: a complete-looking name with incomplete content.
	p := filepath.Join(f.dir, rel)
	data, _ := os.ReadFile(p)
	writeFile(t, p, data[:len(data)/2])
	res, err := Compress(ctx, f.d, testID, testArch, Options{Algorithm: Gzip, Artifacts: []string{"qemu"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Resumed {
		t.Errorf("results %+v, want qemu compressed afresh", res)
	}
	m := f.checkConsistent(t)
	if m.Images["qemu"].Path != rel {
		t.Errorf("qemu: %+v", m.Images["qemu"])
	}
}

func TestResumeDecompress(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, err := Compress(ctx, f.d, testID, testArch, Options{Algorithm: Zstd}); err != nil {
		t.Fatal(err)
	}
	compressed := f.readMeta(t)
	p := newOp(f.d, testID, testArch, Options{})
	// Crash 1: metal decompressed and renamed into place, meta.json not
	// updated. Plus a temp file for qemu.
	ma := compressed.Images["metal"]
	if err := p.decompressFile(ctx, "metal", Zstd, p.abs(ma.Path), p.abs(f.meta.Images["metal"].Path), ma); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.dir, "."+f.meta.Images["qemu"].Path+".tmp-x"), []byte("partial"))
	res, err := Decompress(ctx, f.d, testID, testArch, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Artifact == "metal" && !r.Resumed {
			t.Errorf("metal: %+v, want resumed", r)
		}
	}
	if m := f.checkConsistent(t); !reflect.DeepEqual(m.Images, f.meta.Images) {
		t.Errorf("images %+v", m.Images)
	}

	// Crash 2: meta.json updated, compressed file not yet removed.
	if _, err := Compress(ctx, f.d, testID, testArch, Options{Algorithm: Gzip, Artifacts: []string{"qemu"}}); err != nil {
		t.Fatal(err)
	}
	qa := f.readMeta(t).Images["qemu"]
	if err := p.decompressFile(ctx, "qemu", Gzip, p.abs(qa.Path), p.abs(f.meta.Images["qemu"].Path), qa); err != nil {
		t.Fatal(err)
	}
	if err := p.updateMeta(ctx, "qemu", qa, f.meta.Images["qemu"].Path, func(a *build.Artifact) { *a = f.meta.Images["qemu"] }); err != nil {
		t.Fatal(err)
	}
	if _, err := Decompress(ctx, f.d, testID, testArch, Options{}); err != nil {
		t.Fatal(err)
	}
	if m := f.checkConsistent(t); !reflect.DeepEqual(m.Images, f.meta.Images) {
		t.Errorf("images %+v", m.Images)
	}
}

func TestDecompressCorrupt(t *testing.T) {
	ctx := context.Background()
	for _, alg := range testAlgorithms(t) {
		t.Run(string(alg), func(t *testing.T) {
			f := newFixture(t)
			if _, err := Compress(ctx, f.d, testID, testArch, Options{Algorithm: alg, Fast: true}); err != nil {
				t.Fatal(err)
			}
			m := f.readMeta(t)
			rel := m.Images["qemu"].Path
			p := filepath.Join(f.dir, rel)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0x55
			writeFile(t, p, data)
			before := dirState(t, f.dir)
			_, err = Decompress(ctx, f.d, testID, testArch, Options{Artifacts: []string{"qemu"}})
			if err == nil || !strings.Contains(err.Error(), rel) {
				t.Fatalf("err = %v, want an error naming %s", err, rel)
			}
			if after := dirState(t, f.dir); !reflect.DeepEqual(before, after) {
				t.Errorf("state changed:\n%v\n->\n%v", before, after)
			}
		})
	}
}

// dirState maps file names in dir to their sha256.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	st := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		st[e.Name()], _ = fileSum(t, filepath.Join(dir, e.Name()))
	}
	return st
}

// TestGzipStream checks our parallel gzip against an independent decoder
// (the standard library's) and gzip(1), across block boundaries, zero
// blocks, odd sizes and empty input.
func TestGzipStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	phrase := []byte("a phrase that repeats across the block boundary ")
	var big []byte
	for len(big) < 3*gzipBlockSize+777 {
		if rng.IntN(3) == 0 {
			big = append(big, byte(rng.UintN(256)))
		} else {
			big = append(big, phrase...)
		}
	}
	big = append(big, make([]byte, 2*gzipBlockSize)...) // whole zero blocks
	big = append(big, phrase...)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("hello\n")},
		{"big", big},
	} {
		for _, fast := range []bool{false, true} {
			var buf bytes.Buffer
			if err := CompressStream(context.Background(), Gzip, &buf, bytes.NewReader(tc.data), StreamOptions{Fast: fast, Threads: 3}); err != nil {
				t.Fatal(err)
			}
			zr, err := stdgzip.NewReader(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			zr.Multistream(false)
			got, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(got, tc.data) {
				t.Fatalf("%s fast=%v: decoded %d bytes (err %v), want %d", tc.name, fast, len(got), err, len(tc.data))
			}
			if haveTool("gzip") {
				cmd := exec.Command("gzip", "-d", "-c")
				cmd.Stdin = bytes.NewReader(buf.Bytes())
				out, err := cmd.Output()
				if err != nil || !bytes.Equal(out, tc.data) {
					t.Errorf("%s: gzip -d: %v", tc.name, err)
				}
			}
		}
	}
}

// TestDecompressToolOutput reads what the command-line tools write.
func TestDecompressToolOutput(t *testing.T) {
	data := bytes.Repeat([]byte("interop test data\n"), 100000)
	for _, alg := range Algorithms {
		tool := map[Algorithm]string{Gzip: "gzip", XZ: "xz", Zstd: "zstd"}[alg]
		if !haveTool(tool) {
			continue
		}
		cmd := exec.Command(tool, "-c")
		cmd.Stdin = bytes.NewReader(data)
		comp, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := DecompressStream(context.Background(), alg, &out, bytes.NewReader(comp), StreamOptions{}); err != nil || !bytes.Equal(out.Bytes(), data) {
			t.Errorf("%s: %v", alg, err)
		}
	}
}

func TestSparseWriter(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	sw := &sparseWriter{f: f}
	write := func(b []byte) {
		want.Write(b)
		if _, err := sw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	write([]byte("head"))                 // unaligned data
	write(make([]byte, 10<<20))           // a hole, in one write
	write(append(make([]byte, 100), 'x')) // data after zeros inside a block
	for range 100 {
		write(make([]byte, 65536)) // a hole in many writes
	}
	write([]byte("tail"))
	write(make([]byte, 5<<20+3)) // trailing hole
	if err := sw.Finish(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("content differs: %d bytes, want %d", len(got), want.Len())
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 64<<10 {
		t.Errorf("uses %d bytes on disk for %d apparent", used, st.Size)
	}
}

// TestZstdInProcess covers the encoder used when zstd(1) is not installed.
func TestZstdInProcess(t *testing.T) {
	defer func(c string) { zstdCommand = c }(zstdCommand)
	zstdCommand = "cosa-test-no-such-zstd"
	data := bytes.Repeat([]byte("in-process zstd\n"), 200000)
	for _, fast := range []bool{false, true} {
		var comp, out bytes.Buffer
		if err := CompressStream(context.Background(), Zstd, &comp, bytes.NewReader(data), StreamOptions{Fast: fast}); err != nil {
			t.Fatal(err)
		}
		if err := DecompressStream(context.Background(), Zstd, &out, &comp, StreamOptions{}); err != nil || !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("round trip: %v", err)
		}
	}
}
