package compress

import (
	"context"
	"errors"
	"io"
	"sync"
)

// The parallel encoders (gzip in pgzip.go, zstd in stream.go) share one
// pipeline: the input is read in fixed-size blocks on the calling
// goroutine, each block is encoded on one of a fixed number of workers,
// and a writer goroutine puts the encoded blocks out in input order. The
// number of blocks in flight is bounded, and their buffers are reused, so
// memory stays at a few blocks per worker whatever the input size (fresh
// buffers per block cost page faults that were a visible share of a
// zstd pass over an already-compressed qcow2).

// A block is one unit of the pipeline.
type block struct {
	data []byte // the input, len <= the block size
	dict []byte // what the reader's hook returned for it (gzip: the 32 KiB before it)
	out  outBuf // the encoded block
	err  error
	done chan struct{}
}

// outBuf is an append-only io.Writer whose storage is kept across blocks.
type outBuf []byte

func (b *outBuf) Write(p []byte) (int, error) {
	*b = append(*b, p...)
	return len(p), nil
}

// blockPipeline describes one run of runBlocks.
type blockPipeline struct {
	size    int // bytes of input per block
	threads int // encoding workers
	// read, if set, sees every block in input order as soon as it is read,
	// on the reading goroutine; what it returns becomes the block's dict.
	read func(data []byte) []byte
	// newWorker makes the encode function of one worker, so that each can
	// keep its own encoder state. encode appends the block's encoding to out.
	newWorker func() func(data, dict []byte, out *outBuf) error
}

// runBlocks reads src to its end through the pipeline and writes the
// encoded blocks to dst in order. After a failure it stops reading, lets
// the blocks in flight finish and returns the first error.
func (p blockPipeline) runBlocks(ctx context.Context, dst io.Writer, src io.Reader) error {
	threads := max(1, p.threads)
	inFlight := threads + 3
	outSize := p.size + p.size/16 + 4096
	ar := newArena(inFlight * (p.size + outSize))
	defer ar.free()
	free := make(chan *block, inFlight)
	for range inFlight {
		free <- &block{}
	}
	jobs := make(chan *block, threads)
	order := make(chan *block, inFlight)

	var workers sync.WaitGroup
	for range threads {
		workers.Add(1)
		go func() {
			defer workers.Done()
			encode := p.newWorker()
			for b := range jobs {
				b.out = b.out[:0]
				b.err = encode(b.data, b.dict, &b.out)
				close(b.done)
			}
		}()
	}

	var writeErr error
	failed := make(chan struct{}) // closed on the writer's first error
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for b := range order {
			<-b.done
			if writeErr == nil {
				err := b.err
				if err == nil {
					_, err = dst.Write(b.out)
				}
				if err != nil {
					writeErr = err
					close(failed)
				}
			}
			free <- b
		}
	}()

	readErr := func() error {
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			// Failure first: with both ready, select would pick at random,
			// and the writer keeps freeing blocks after a failure.
			select {
			case <-failed:
				return nil // reported below
			default:
			}
			var b *block
			select {
			case b = <-free:
			case <-failed:
				return nil
			}
			if cap(b.data) < p.size {
				b.data = ar.take(p.size)
				// Room for an encoding a little larger than its input
				// (incompressible data), so encoders never grow it.
				b.out = outBuf(ar.take(outSize)[:0])
			}
			n, err := io.ReadFull(src, b.data[:p.size])
			if n > 0 {
				b.data = b.data[:n]
				b.dict = nil
				if p.read != nil {
					b.dict = p.read(b.data)
				}
				b.done = make(chan struct{})
				order <- b // never blocks: at most inFlight blocks exist
				jobs <- b
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
	return writeErr
}

// teeWriter writes every p to both writers at the same time (b on a
// goroutine of its own): for a file and a hash, the hash then costs no
// wall time as long as a CPU is free. Meant for large writes; both must
// be done with p when their Write returns, as io.Writer requires.
type teeWriter struct{ a, b io.Writer }

func (t teeWriter) Write(p []byte) (int, error) {
	berr := make(chan error, 1)
	go func() {
		_, err := t.b.Write(p)
		berr <- err
	}()
	n, err := t.a.Write(p)
	if e := <-berr; err == nil {
		err = e
	}
	return n, err
}
