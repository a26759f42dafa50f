package qcow2

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// A raw disk with every kind of cluster: text (compresses), random (does
// not), written zeros, holes, and a partial cluster at the end.
const rawSize = 37<<20 + 12288 // a partial last cluster

func writeCluster(t *testing.T, f *os.File, c int64, b []byte) {
	t.Helper()
	if _, err := f.WriteAt(b, c*ClusterSize); err != nil {
		t.Fatal(err)
	}
}

func textCluster(seed int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < ClusterSize; i++ {
		b.WriteString("cluster ")
		b.WriteString(strings.Repeat("x", (seed+i)%13))
		b.WriteString(" line\n")
	}
	return b.Bytes()[:ClusterSize]
}

func randCluster(r *rand.Rand) []byte {
	b := make([]byte, ClusterSize)
	r.Read(b)
	return b
}

func makeRaw(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(rawSize); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	for c := int64(0); c < 40; c++ {
		writeCluster(t, f, c, textCluster(int(c)))
	}
	for c := int64(40); c < 48; c++ {
		writeCluster(t, f, c, randCluster(r))
	}
	writeCluster(t, f, 100, make([]byte, ClusterSize)) // data, all zero
	for c := int64(200); c < 260; c++ {
		writeCluster(t, f, c, textCluster(int(c)*7))
	}
	// The last, partial cluster.
	if _, err := f.WriteAt([]byte("the end"), rawSize-7); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, raw, out string, prev *Image) Stats {
	t.Helper()
	src, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	st, err := Write(context.Background(), dst, src, prev)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// qemuVerify: qemu-img finds no error in img and reads it as raw's disk.
func qemuVerify(t *testing.T, raw, img string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", "check", img).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors were found") {
		t.Fatalf("qemu-img check %s: %v\n%s", img, err, out)
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, img).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare %s %s: %v\n%s", raw, img, err, out)
	}
	out, err := exec.Command("qemu-img", "info", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "compression type: zstd") {
		t.Fatalf("qemu-img info %s: %v\n%s", img, err, out)
	}
}

func TestWriteAndReuse(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("needs qemu-img (apt-get install qemu-utils)")
	}
	dir := t.TempDir()
	rawA, imgA := filepath.Join(dir, "a.raw"), filepath.Join(dir, "a.qcow2")
	makeRaw(t, rawA)
	stA := write(t, rawA, imgA, nil)
	qemuVerify(t, rawA, imgA)
	if stA.Compressed < 100 || stA.Plain != 8 || stA.Zero != 1 || stA.Reused != 0 {
		t.Fatalf("stats of the first image: %+v", stA)
	}

	// B: some clusters changed, one zeroed, one new, one made a hole.
	rawB := filepath.Join(dir, "b.raw")
	data, err := os.ReadFile(rawA)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rawB, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(rawB, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	writeCluster(t, f, 3, textCluster(1000))
	writeCluster(t, f, 41, textCluster(1001))
	writeCluster(t, f, 5, make([]byte, ClusterSize))
	writeCluster(t, f, 300, textCluster(1002))
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 210*ClusterSize, ClusterSize); err != nil {
		t.Fatal(err)
	}
	f.Close()

	prev, err := Open(imgA)
	if err != nil {
		t.Fatal(err)
	}
	defer prev.Close()
	imgB, imgFresh := filepath.Join(dir, "b.qcow2"), filepath.Join(dir, "fresh.qcow2")
	stB := write(t, rawB, imgB, prev)
	qemuVerify(t, rawB, imgB)
	stFresh := write(t, rawB, imgFresh, nil)
	// Reused: all of A's stored clusters but the four changed (3, 41, 5
	// and 210); compressed: the three with new content.
	if stB.Reused != stA.Compressed+stA.Plain-4 || stB.Compressed != 3 || stFresh.Reused != 0 {
		t.Fatalf("reuse: %+v, without: %+v (first: %+v)", stB, stFresh, stA)
	}
	b1, _ := os.ReadFile(imgB)
	b2, _ := os.ReadFile(imgFresh)
	if !bytes.Equal(b1, b2) {
		t.Fatal("the image made with an earlier one differs from the one made without")
	}

	// An earlier image whose stored cluster was damaged: that cluster is
	// compressed again, never copied.
	bad := filepath.Join(dir, "bad.qcow2")
	dmg := append([]byte(nil), mustRead(t, imgA)...)
	pa, _ := Open(imgA)
	e := pa.l2[0][10]
	pa.Close()
	if e&flagCompressed == 0 {
		t.Fatalf("cluster 10 of A is not compressed: %x", e)
	}
	off := int64(e & offsetMask)
	dmg[off+20] ^= 0xff
	if err := os.WriteFile(bad, dmg, 0o644); err != nil {
		t.Fatal(err)
	}
	pbad, err := Open(bad)
	if err != nil {
		t.Fatal(err)
	}
	defer pbad.Close()
	imgC := filepath.Join(dir, "c.qcow2")
	stC := write(t, rawB, imgC, pbad)
	if stC.Reused != stB.Reused-1 || !bytes.Equal(mustRead(t, imgC), b2) {
		t.Fatalf("with a damaged earlier image: %+v (with a good one: %+v), same file: %v", stC, stB, bytes.Equal(mustRead(t, imgC), b2))
	}

	// Images of another writer are not opened for reuse.
	other := filepath.Join(dir, "other.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", "-o", "compression_type=zstd", rawA, other).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	if im, err := Open(other); err == nil {
		im.Close()
		t.Fatal("opened qemu-img's image for reuse")
	}
	if im, err := Open(rawA); err == nil {
		im.Close()
		t.Fatal("opened a raw disk for reuse")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFrameLen(t *testing.T) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	crc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(2))
	for i, in := range [][]byte{textCluster(3), randCluster(r), make([]byte, ClusterSize), []byte("x"), nil} {
		for _, e := range []*zstd.Encoder{enc, crc} {
			frame := e.EncodeAll(in, nil)
			n, ok := frameLen(append(append([]byte(nil), frame...), "trailing bytes of the next frame"...))
			if !ok || n != len(frame) {
				t.Errorf("input %d: frameLen = %d, %v; want %d", i, n, ok, len(frame))
			}
			if _, ok := frameLen(frame[:len(frame)-1]); ok {
				t.Errorf("input %d: a truncated frame was accepted", i)
			}
		}
	}
}
