package compress

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"sync"
	"sync/atomic"

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

type gzJob struct {
	data []byte // the block's input
	dict []byte // the 32 KiB before it, nil for the first block
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func gzipLevel(fast bool) int {
	if fast {
		return flate.BestSpeed
	}
	return 6 // gzip's own default
}

func gzipCompress(ctx context.Context, dst io.Writer, src io.Reader, o StreamOptions) error {
	level := gzipLevel(o.Fast)
	threads := o.threads()

	// Header: magic, deflate, no flags, mtime 0 (output depends only on
	// the input), extra flags (2: slowest, 4: fastest), OS 3 (Unix).
	xfl := byte(0)
	if o.Fast {
		xfl = 4
	}
	if _, err := dst.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3}); err != nil {
		return err
	}

	bufs := sync.Pool{New: func() any { return make([]byte, gzipBlockSize) }}
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

	jobs := make(chan *gzJob, threads)
	order := make(chan *gzJob, 2*threads)
	var workers sync.WaitGroup
	for range threads {
		workers.Add(1)
		go func() {
			defer workers.Done()
			var fw *flate.Writer
			for j := range jobs {
				if len(j.data) == gzipBlockSize && fileutil.AllZero(j.data) {
					var zb []byte
					if zb, j.err = zeroBlock(); j.err == nil {
						j.out.Write(zb)
					}
				} else {
					if fw == nil {
						fw, j.err = flate.NewWriter(nil, level)
					}
					if j.err == nil {
						fw.ResetDict(&j.out, j.dict)
						if _, j.err = fw.Write(j.data); j.err == nil {
							j.err = fw.Flush()
						}
					}
				}
				bufs.Put(j.data[:cap(j.data)])
				j.data = nil
				close(j.done)
			}
		}()
	}

	// The writer puts finished blocks out in input order. After a failure
	// it keeps draining so that the reader never blocks.
	var writeErr atomic.Pointer[error]
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		failed := false
		for j := range order {
			<-j.done
			if failed {
				continue
			}
			err := j.err
			if err == nil {
				_, err = dst.Write(j.out.Bytes())
			}
			if err != nil {
				failed = true
				writeErr.Store(&err)
			}
		}
	}()

	crc := crc32.NewIEEE()
	var size uint64
	var prevTail []byte
	readErr := func() error {
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			if p := writeErr.Load(); p != nil {
				return nil // reported below
			}
			buf := bufs.Get().([]byte)
			n, err := io.ReadFull(src, buf)
			if n > 0 {
				data := buf[:n]
				crc.Write(data)
				size += uint64(n)
				j := &gzJob{data: data, dict: prevTail, done: make(chan struct{})}
				tail := data[max(0, n-gzipDictSize):]
				prevTail = append([]byte(nil), tail...)
				order <- j
				jobs <- j
			} else {
				bufs.Put(buf)
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}()
	close(jobs)
	close(order)
	workers.Wait()
	<-writerDone
	if readErr != nil {
		return readErr
	}
	if p := writeErr.Load(); p != nil {
		return *p
	}
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[:4], crc.Sum32())
	binary.LittleEndian.PutUint32(trailer[4:], uint32(size)) // ISIZE is the size mod 2^32
	if _, err := dst.Write(gzipFinalBlock); err != nil {
		return err
	}
	_, err := dst.Write(trailer[:])
	return err
}
