package compress

import (
	"os"

	"github.com/cosa-build/cosa/pkg/fileutil"
)

// sparseBlock is the granularity at which runs of zeros become holes; it
// matches the block size of the usual filesystems.
const sparseBlock = 4096

// sparseWriter writes to a new (empty) file, leaving holes where whole
// sparseBlock-aligned blocks are zero: a 10 GiB disk image holding 1 GiB of
// data decompresses to 1 GiB on disk. Finish sets the final size, which
// also materializes a trailing hole.
type sparseWriter struct {
	f   *os.File
	off int64
	wb  writebackWriter // only its kick, for the fsync at the end
}

func (s *sparseWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		// Split p at the next block boundaries; write the longest run
		// of blocks that are not all zero in one call, skip zero ones.
		i := 0
		for i < len(p) {
			n := min(len(p)-i, sparseBlock-int((s.off+int64(i))%sparseBlock))
			if fileutil.AllZero(p[i : i+n]) {
				break
			}
			i += n
		}
		if i > 0 {
			if _, err := s.f.WriteAt(p[:i], s.off); err != nil {
				return total - len(p), err
			}
			s.off += int64(i)
			p = p[i:]
		}
		j := 0
		for j < len(p) {
			n := min(len(p)-j, sparseBlock-int((s.off+int64(j))%sparseBlock))
			if !fileutil.AllZero(p[j : j+n]) {
				break
			}
			j += n
		}
		s.off += int64(j)
		p = p[j:]
	}
	s.wb.f = s.f
	s.wb.kick(s.off)
	return total, nil
}

// Finish truncates the file to the number of bytes written.
func (s *sparseWriter) Finish() error {
	return s.f.Truncate(s.off)
}
