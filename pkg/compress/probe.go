package compress

import (
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

// The in-process zstd encoder gives up on a block that does not compress
// after far less work than zstd(1) spends on it, while zstd(1) compresses
// data that does compress better and as fast or faster (docs/compress.md).
// The default qcow2 holds zstd-compressed clusters, so `cosa compress`
// mostly copies it: there the Go encoder took 0.24-0.32 s against zstd
// -T0's 0.48-0.59 s (2 CPUs), for output 0.4% larger; on the ostree tar
// (3% smaller under zstd) 0.38-0.54 s against 0.55-0.66 s. Which one runs
// is decided by compressing a few samples spread over the file.
const (
	probeSamples    = 16
	probeSampleSize = 256 << 10
	// A sample counts as incompressible when it keeps this share (in
	// percent) of its size. The tar's samples kept 89-100%, a dense
	// qcow2's far less.
	probeKeepPercent = 90
)

// mostlyIncompressible reports whether at least three quarters of the
// samples taken from f are incompressible. Files smaller than the samples
// are never reported: the choice would not matter for them.
func mostlyIncompressible(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || fi.Size() < 4*probeSamples*probeSampleSize {
		return false
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return false
	}
	defer enc.Close()
	buf := make([]byte, probeSampleSize)
	var out []byte
	span := fi.Size() - probeSampleSize
	incompressible := 0
	for i := range int64(probeSamples) {
		off := span * i / (probeSamples - 1) &^ 4095
		n, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return false
		}
		out = enc.EncodeAll(buf[:n], out[:0])
		if len(out)*100 >= n*probeKeepPercent {
			incompressible++
		}
	}
	return incompressible*4 >= probeSamples*3
}
