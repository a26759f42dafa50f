package compress

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"io"
	"sync"

	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/klauspost/compress/flate"
)

// Parallel gzip. The input is cut into gzipBlockSize blocks that are
// deflated concurrently, each primed with the last 32 KiB of the block
// before it (so matches still reach back across block boundaries) and
// ended with a sync flush, which leaves the output byte-aligned. The
// pieces concatenate into one ordinary deflate stream, which is closed by
// an empty final block and wrapped in a single gzip member: gzip -d,
// gzip -l and every other reader see a normal .gz file. The CRC-32 of the
// whole input is computed while reading.
const (
	gzipBlockSize = 1 << 20
	gzipDictSize  = 32 << 10
)

// gzipFinalBlock is an empty deflate block with BFINAL set: the 3 header
// bits 1 (final) and 01 (fixed Huffman) followed by the 7-bit end-of-block
// code 0000000.
var gzipFinalBlock = []byte{0x03, 0x00}

func gzipLevel(fast bool) int {
	if fast {
		return flate.BestSpeed
	}
	return 6 // gzip's own default
}

func gzipCompress(ctx context.Context, dst io.Writer, src io.Reader, o StreamOptions) error {
	level := gzipLevel(o.Fast)

	// Header: magic, deflate, no flags, mtime 0 (output depends only on
	// the input), extra flags (2: slowest, 4: fastest), OS 3 (Unix).
	xfl := byte(0)
	if o.Fast {
		xfl = 4
	}
	if _, err := dst.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3}); err != nil {
		return err
	}

	// A full block of zeros (common in sparse disk images) deflates to the
	// same bytes every time when no dictionary is used, and a block that
	// does not refer back is valid anywhere in the stream: compute it once.
	zeroBlock := sync.OnceValues(func() ([]byte, error) {
		var b bytes.Buffer
		fw, err := flate.NewWriter(&b, level)
		if err != nil {
			return nil, err
		}
		if _, err := fw.Write(make([]byte, gzipBlockSize)); err != nil {
			return nil, err
		}
		if err := fw.Flush(); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	})

	crc := crc32.NewIEEE()
	var size uint64
	var prevTail []byte
	err := blockPipeline{
		size:    gzipBlockSize,
		threads: o.threads(),
		read: func(data []byte) []byte {
			crc.Write(data)
			size += uint64(len(data))
			dict := prevTail
			// A copy: the block's buffer is reused once it is written.
			prevTail = append([]byte(nil), data[max(0, len(data)-gzipDictSize):]...)
			return dict
		},
		newWorker: func() func(data, dict []byte, out *outBuf) error {
			var fw *flate.Writer
			return func(data, dict []byte, out *outBuf) error {
				if len(data) == gzipBlockSize && fileutil.AllZero(data) {
					zb, err := zeroBlock()
					out.Write(zb)
					return err
				}
				if fw == nil {
					var err error
					if fw, err = flate.NewWriter(nil, level); err != nil {
						return err
					}
				}
				fw.ResetDict(out, dict)
				if _, err := fw.Write(data); err != nil {
					return err
				}
				return fw.Flush()
			}
		},
	}.runBlocks(ctx, dst, src)
	if err != nil {
		return err
	}
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[:4], crc.Sum32())
	binary.LittleEndian.PutUint32(trailer[4:], uint32(size)) // ISIZE is the size mod 2^32
	if _, err := dst.Write(gzipFinalBlock); err != nil {
		return err
	}
	_, err = dst.Write(trailer[:])
	return err
}
