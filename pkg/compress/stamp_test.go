package compress

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stampOrSkip stamps the fixture's artifact name with its true sum, or
// skips the test where the file system takes no user xattrs or keeps
// coarse timestamps.
func (f *fixture) stampOrSkip(t *testing.T, name string) string {
	t.Helper()
	a := f.meta.Images[name]
	p := filepath.Join(f.dir, a.Path)
	if err := StampSum(p, a.Sha256, a.Size); err != nil {
		if strings.HasPrefix(err.Error(), "not stamping") {
			t.Skipf("no stamps here: %v", err)
		}
		t.Fatal(err)
	}
	return p
}

func hashedInputs(res []Result) map[string]bool {
	m := map[string]bool{}
	for _, r := range res {
		if r.Action == ActionCompressed {
			m[r.Artifact] = r.hashedInput
		}
	}
	return m
}

// A valid stamp spares the read of the input, and what meta.json records
// is still what a fresh sha256 of every file gives; Decompress stamps what
// it writes, so compressing again is trusted too.
func TestCompressTrustsValidStamp(t *testing.T) {
	ctx := context.Background()
	for _, alg := range []Algorithm{Zstd, Gzip} {
		t.Run(string(alg), func(t *testing.T) {
			f := newFixture(t)
			f.stampOrSkip(t, "qemu")
			res, err := Compress(ctx, f.d, testID, testArch, Options{Algorithm: alg, Fast: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := hashedInputs(res); got["qemu"] || !got["metal"] {
				t.Errorf("input hashed: %v, want qemu trusted (stamped) and metal hashed", got)
			}
			m := f.checkConsistent(t) // sha256 and size of each compressed file, freshly hashed
			for _, name := range []string{"qemu", "metal"} {
				orig := f.meta.Images[name]
				if a := m.Images[name]; a.UncompressedSha256 != f.sums[orig.Path] || a.UncompressedSize != orig.Size {
					t.Errorf("%s: uncompressed %s %d, the original file hashed to %s %d", name, a.UncompressedSha256, a.UncompressedSize, f.sums[orig.Path], orig.Size)
				}
			}

			if _, err := Decompress(ctx, f.d, testID, testArch, Options{}); err != nil {
				t.Fatal(err)
			}
			f.checkConsistent(t)
			res, err = Compress(ctx, f.d, testID, testArch, Options{Algorithm: alg, Fast: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := hashedInputs(res); got["qemu"] || got["metal"] {
				t.Errorf("input hashed after decompress: %v, want both trusted", got)
			}
			m = f.checkConsistent(t)
			for _, name := range []string{"qemu", "metal"} {
				orig := f.meta.Images[name]
				if a := m.Images[name]; a.UncompressedSha256 != f.sums[orig.Path] {
					t.Errorf("%s: uncompressed-sha256 %s after a round trip, want %s", name, a.UncompressedSha256, f.sums[orig.Path])
				}
			}
		})
	}
}

// A file written after it was stamped, even at once (same size, meta.json
// now stale), must be hashed: compress then refuses it, where trusting the
// stamp would record a wrong uncompressed-sha256.
func TestCompressHashesChangedInput(t *testing.T) {
	ctx := context.Background()
	for _, alg := range []Algorithm{Zstd, Gzip} {
		t.Run(string(alg), func(t *testing.T) {
			f := newFixture(t)
			p := f.stampOrSkip(t, "qemu")
			w, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteAt([]byte("LINE"), 100); err != nil {
				t.Fatal(err)
			}
			w.Close()
			before := dirState(t, f.dir)
			_, err = Compress(ctx, f.d, testID, testArch, Options{Algorithm: alg, Fast: true, Artifacts: []string{"qemu"}})
			if err == nil || !strings.Contains(err.Error(), "meta.json sha256 is "+f.meta.Images["qemu"].Sha256) {
				t.Fatalf("err = %v, want a sha256 mismatch", err)
			}
			if after := dirState(t, f.dir); !reflect.DeepEqual(before, after) {
				t.Errorf("state changed:\n%v\n->\n%v", before, after)
			}
			if m := f.readMeta(t); m.Images["qemu"] != f.meta.Images["qemu"] {
				t.Errorf("meta.json changed: %+v", m.Images["qemu"])
			}
		})
	}
}

// Without a stamp the input is hashed, so a meta.json that is wrong about
// it is caught.
func TestCompressHashesUnstampedInput(t *testing.T) {
	f := newFixture(t)
	a := f.meta.Images["qemu"]
	a.Sha256 = strings.Repeat("0", 64)
	f.meta.Images["qemu"] = a
	if err := f.d.WriteMeta(testID, testArch, f.meta); err != nil {
		t.Fatal(err)
	}
	_, err := Compress(context.Background(), f.d, testID, testArch, Options{Algorithm: Zstd, Artifacts: []string{"qemu"}})
	if err == nil || !strings.Contains(err.Error(), "meta.json sha256 is "+a.Sha256) {
		t.Fatalf("err = %v, want a sha256 mismatch", err)
	}
}

// stampedSum believes only a stamp that matches meta.json and the file and
// was taken clear of the file's last write.
func TestStampedSum(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	writeFile(t, p, []byte("image content"))
	sum, size := fileSum(t, p)
	if err := StampSum(p, sum, size); err != nil {
		if strings.HasPrefix(err.Error(), "not stamping") {
			t.Skipf("no stamps here: %v", err)
		}
		t.Fatal(err)
	}
	open := func() *os.File {
		in, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.Close() })
		return in
	}
	in := open()
	if _, ok := stampedSum(in, sum, size); !ok {
		t.Fatal("fresh valid stamp not believed")
	}
	if _, ok := stampedSum(in, strings.Repeat("1", 64), size); ok {
		t.Error("stamp believed for another sha256 than meta.json's")
	}
	if _, ok := stampedSum(in, sum, size+1); ok {
		t.Error("stamp believed for another size than meta.json's")
	}
	ft, err := fstatTimes(in)
	if err != nil {
		t.Fatal(err)
	}
	set := func(s string) {
		if err := unix.Setxattr(p, stampAttr, []byte(s), 0); err != nil {
			t.Fatal(err)
		}
	}
	// Taken within a clock tick of the write: a second write in that
	// tick would not show.
	set(sumStamp{sha256: sum, size: size, mtimeNs: ft.mtimeNs, atNs: ft.mtimeNs + int64(time.Millisecond)}.String())
	if _, ok := stampedSum(open(), sum, size); ok {
		t.Error("stamp taken 1 ms after the write believed")
	}
	set(sumStamp{sha256: sum, size: size, mtimeNs: ft.mtimeNs - 1, atNs: ft.mtimeNs + int64(time.Second)}.String())
	if _, ok := stampedSum(open(), sum, size); ok {
		t.Error("stamp of another mtime believed")
	}
	for _, bad := range []string{"", "v1", "v2 " + sum + " 13 1 2", "v1 " + sum + " x 1 2", "v1 abc 13 1 2"} {
		set(bad)
		if _, ok := stampedSum(open(), sum, size); ok {
			t.Errorf("stamp %q believed", bad)
		}
	}

	// StampSum refuses a file that is not what the caller says.
	if err := StampSum(p, sum, size+1); err == nil {
		t.Error("stamped with a wrong size")
	}
	if err := stampSum(p, sum, size, ft.mtimeNs+1); err == nil {
		t.Error("stamped although written since the caller knew its content")
	}
	future := time.Now().Add(time.Hour).Truncate(time.Second).Add(123456789) // sub-ms: not taken for a coarse file system
	if err := os.Chtimes(p, future, future); err != nil {
		t.Fatal(err)
	}
	if err := StampSum(p, sum, size); err == nil || !strings.Contains(err.Error(), "ahead of the clock") {
		t.Errorf("err = %v, want a refusal to stamp a file from the future (not an hour's wait)", err)
	}
}

// writebackWriter starts writeback along the way; what lands in the file
// is still exactly what was written, across several chunks.
func TestWritebackWriter(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &writebackWriter{f: f}
	want := make([]byte, 0, 2*writebackChunk+12345)
	for i := 0; len(want) < cap(want); i++ {
		chunk := []byte(strings.Repeat(string(rune('a'+i%26)), min(1<<20+i, cap(want)-len(want))))
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
		want = append(want, chunk...)
	}
	if w.started < 2*writebackChunk && !w.disabled {
		t.Errorf("writeback started up to %d of %d bytes", w.started, len(want))
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("file holds %d bytes, not the %d written", len(got), len(want))
	}
}
