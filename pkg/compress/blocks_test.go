package compress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"unsafe"
)

// endless is a source that never ends: a pipeline that does not stop
// reading after a failure never returns.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e.n + int64(i))
	}
	e.n += int64(len(p))
	return len(p), nil
}

type failWriter struct {
	writes, failAt int
	onFail         func()
}

func (w *failWriter) Write(p []byte) (int, error) {
	w.writes++
	if w.writes == w.failAt {
		if w.onFail != nil {
			w.onFail()
			return len(p), nil
		}
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// TestBlockPipeline checks the order of the output when blocks finish out
// of order, what the read hook sees, and that every kind of failure stops
// the reading and is returned.
func TestBlockPipeline(t *testing.T) {
	ctx := context.Background()
	const size = 1000
	data := make([]byte, 5*size+321)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range data {
		data[i] = byte(rng.UintN(256))
	}
	// Block 0 is held until block 2 is encoded, so the blocks finish out
	// of order (three workers: no deadlock).
	gate := make(chan struct{})
	var seen []int
	idx := 0
	p := blockPipeline{
		size:    size,
		threads: 3,
		read: func(b []byte) []byte {
			seen = append(seen, len(b))
			idx++
			return []byte{byte(idx - 1)}
		},
		newWorker: func() func(data, dict []byte, out *outBuf) error {
			return func(data, dict []byte, out *outBuf) error {
				switch dict[0] {
				case 0:
					<-gate
				case 2:
					close(gate)
				}
				out.Write(dict)
				for i := len(data) - 1; i >= 0; i-- {
					*out = append(*out, data[i])
				}
				return nil
			}
		},
	}
	var got bytes.Buffer
	if err := p.runBlocks(ctx, &got, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	var want []byte
	for i := 0; i*size < len(data); i++ {
		blk := slices.Clone(data[i*size : min(len(data), (i+1)*size)])
		slices.Reverse(blk)
		want = append(append(want, byte(i)), blk...)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("output differs (%d bytes, want %d)", got.Len(), len(want))
	}
	if !slices.Equal(seen, []int{size, size, size, size, size, 321}) {
		t.Errorf("read hook saw blocks of %v", seen)
	}

	copyWorker := func() func(data, dict []byte, out *outBuf) error {
		return func(data, _ []byte, out *outBuf) error { out.Write(data); return nil }
	}
	got.Reset()
	if err := (blockPipeline{size: size, threads: 2, newWorker: copyWorker}).runBlocks(ctx, &got, bytes.NewReader(nil)); err != nil || got.Len() != 0 {
		t.Errorf("empty input: %d bytes, %v", got.Len(), err)
	}

	encErr := errors.New("encoder broke")
	n := 0
	failing := blockPipeline{size: size, threads: 2, read: func([]byte) []byte { n++; return []byte{byte(min(n, 200))} },
		newWorker: func() func(data, dict []byte, out *outBuf) error {
			return func(_, dict []byte, _ *outBuf) error {
				if dict[0] == 3 {
					return encErr
				}
				return nil
			}
		}}
	if err := failing.runBlocks(ctx, io.Discard, &endless{}); !errors.Is(err, encErr) {
		t.Errorf("encoder error: got %v", err)
	}

	if err := (blockPipeline{size: size, threads: 2, newWorker: copyWorker}).runBlocks(ctx, &failWriter{failAt: 3}, &endless{}); err == nil || err.Error() != "disk full" {
		t.Errorf("write error: got %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := (blockPipeline{size: size, threads: 2, newWorker: copyWorker}).runBlocks(cctx, &failWriter{failAt: 3, onFail: cancel}, &endless{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}

	readErr := errors.New("read failed")
	src := io.MultiReader(bytes.NewReader(data[:2500]), iotest.ErrReader(readErr))
	if err := (blockPipeline{size: size, threads: 2, newWorker: copyWorker}).runBlocks(ctx, io.Discard, src); !errors.Is(err, readErr) {
		t.Errorf("read error: got %v", err)
	}
}

// mixedData is n bytes alternating runs of random bytes and repeated text.
func mixedData(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, 0, n)
	for len(b) < n {
		run := 1 + rng.IntN(200<<10)
		if rng.IntN(2) == 0 {
			for range run {
				b = append(b, byte(rng.UintN(256)))
			}
		} else {
			for len(b) < cap(b) && run > 0 {
				s := fmt.Sprintf("line %d of a text run\n", rng.IntN(1000))
				b = append(b, s...)
				run -= len(s)
			}
		}
	}
	return b[:n]
}

// TestZstdFrames compresses more than two frames' worth in-process and
// has zstd(1) read it back: the frames must form one valid stream.
func TestZstdFrames(t *testing.T) {
	data := mixedData(2*zstdFrameSize+12345, 7)
	for _, fast := range []bool{false, true} {
		var comp bytes.Buffer
		if err := CompressStream(context.Background(), Zstd, &comp, bytes.NewReader(data), StreamOptions{Fast: fast, Threads: 2, InProcess: true}); err != nil {
			t.Fatal(err)
		}
		if comp.Len() >= len(data) {
			t.Errorf("fast=%v: %d bytes compressed to %d", fast, len(data), comp.Len())
		}
		var ours bytes.Buffer
		if err := DecompressStream(context.Background(), Zstd, &ours, bytes.NewReader(comp.Bytes()), StreamOptions{}); err != nil || !bytes.Equal(ours.Bytes(), data) {
			t.Fatalf("fast=%v: own decoder: %v", fast, err)
		}
		if !haveTool("zstd") {
			continue
		}
		cmd := exec.Command("zstd", "-d", "-c")
		cmd.Stdin = bytes.NewReader(comp.Bytes())
		out, err := cmd.Output()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("fast=%v: zstd -d: %d bytes, %v", fast, len(out), err)
		}
	}
}

func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func TestMostlyIncompressible(t *testing.T) {
	const n = 24 << 20
	text := []byte(strings.Repeat("systemd-networkd.service is a system service\n", n/45+1))[:n]
	// Random but for its first MiB (a qcow2's zero-filled tables in front of
	// its compressed clusters).
	headed := randomBytes(n, 1)
	clear(headed[:1<<20])
	// A third random, by MiB.
	third := slices.Clone(text)
	for i := 0; i < n; i += 3 << 20 {
		copy(third[i:i+1<<20], randomBytes(1<<20, uint64(i)))
	}
	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"random", randomBytes(n, 2), true},
		{"random after a zero header", headed, true},
		{"text", text, false},
		{"a third random", third, false},
		{"random but small", randomBytes(4<<20, 3), false},
	} {
		p := filepath.Join(t.TempDir(), "f")
		writeFile(t, p, tc.data)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := mostlyIncompressible(f); got != tc.want {
			t.Errorf("%s: mostlyIncompressible = %v, want %v", tc.name, got, tc.want)
		}
		f.Close()
	}
}

// TestCompressPicksEncoder: with a zstd(1) that always fails, compressing
// an incompressible artifact must still work (the in-process encoder is
// chosen for it) and a compressible one must fail (zstd(1) is chosen).
func TestCompressPicksEncoder(t *testing.T) {
	falseBin, err := exec.LookPath("false")
	if err != nil {
		t.Skip("no false(1)")
	}
	defer func(c string) { zstdCommand = c }(zstdCommand)
	zstdCommand = falseBin
	ctx := context.Background()
	f := newFixture(t)
	const n = 20 << 20
	set := func(name string, data []byte) {
		a := f.meta.Images[name]
		p := filepath.Join(f.dir, a.Path)
		os.Chmod(p, 0o644)
		writeFile(t, p, data)
		sum, size := fileSum(t, p)
		a.Sha256, a.Size = sum, size
		f.meta.Images[name] = a
		f.sums[a.Path] = sum
		if err := f.d.WriteMeta(testID, testArch, f.meta); err != nil {
			t.Fatal(err)
		}
	}
	set("qemu", randomBytes(n, 9))
	set("ostree", []byte(strings.Repeat("compressible ostree tar content\n", n/32)))
	res, err := Compress(ctx, f.d, testID, testArch, Options{Algorithm: Zstd, Artifacts: []string{"qemu"}})
	if err != nil || len(res) != 1 || res[0].Action != ActionCompressed {
		t.Fatalf("incompressible artifact: %+v, %v", res, err)
	}
	if _, err := Compress(ctx, f.d, testID, testArch, Options{Algorithm: Zstd, Artifacts: []string{"ostree"}}); err == nil {
		t.Fatal("compressible artifact: compressed without zstd(1), which was to be used (and fails)")
	}
	m := f.checkConsistent(t)
	if !strings.HasSuffix(m.Images["qemu"].Path, ".zst") || IsCompressed(m.Images["ostree"].Path) {
		t.Errorf("images after: %+v", m.Images)
	}
	if _, err := Decompress(ctx, f.d, testID, testArch, Options{Artifacts: []string{"qemu"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := fileSum(t, filepath.Join(f.dir, f.meta.Images["qemu"].Path)); got != f.meta.Images["qemu"].Sha256 {
		t.Error("qemu does not decompress to its original")
	}
}

func TestArenaTakesThenFallsBackToHeap(t *testing.T) {
	a := newArena(3 << 20)
	defer a.free()
	if a.mem == nil {
		t.Skip("anonymous mmap refused here")
	}
	if len(a.mem) != 4<<20 {
		t.Errorf("arena of %d bytes, want 3 MiB rounded up to 2 MiB pages (4 MiB)", len(a.mem))
	}
	x := a.take(3 << 20)
	y := a.take(1 << 20)
	z := a.take(1 << 20) // more than is left: from the heap
	if len(x) != 3<<20 || len(y) != 1<<20 || len(z) != 1<<20 {
		t.Fatalf("lengths %d %d %d", len(x), len(y), len(z))
	}
	// Taken pieces must not overlap, nor grow into one another by append.
	if cap(x) != len(x) || cap(y) != len(y) {
		t.Errorf("caps %d %d: an append could run into the next piece", cap(x), cap(y))
	}
	x[len(x)-1], y[0] = 1, 2
	if x[len(x)-1] != 1 || &a.mem[3<<20] != &y[0] {
		t.Error("the second piece does not follow the first")
	}
	lo := uintptr(unsafe.Pointer(&a.mem[0]))
	if p := uintptr(unsafe.Pointer(&z[0])); p >= lo && p < lo+uintptr(len(a.mem)) {
		t.Error("a piece past the end came from the arena")
	}
}
