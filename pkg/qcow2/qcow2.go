// Package qcow2 writes zstd-compressed qcow2 (version 3) images from raw
// disk images.
//
// It exists for one reason: a rebuild's disk differs from the last one in
// a few percent of its clusters (about 250 of 13,400 for the default image
// after one overlay file changed), and qemu-img convert compresses every
// cluster again, the longest step of a rebuild. Write takes the clusters
// that did not change from an earlier image this writer made, proven
// unchanged by decompressing them and comparing with the new disk, and
// compresses only the rest.
//
// Its output is a function of the raw disk alone: one encoder, one
// setting, one layout. An image made with the earlier one is the same file
// as one made without it, and an earlier image whose writer tag differs is
// not used at all.
package qcow2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/cosa-build/cosa/pkg/fileutil"
	"github.com/klauspost/compress/zstd"
)

const (
	clusterBits = 16
	// ClusterSize is the size of the clusters Write makes (qemu's default).
	ClusterSize = 1 << clusterBits
	l2Entries   = ClusterSize / 8
	// 16-bit refcounts (qemu's default refcount_order 4).
	refsPerBlock = ClusterSize / 2
	headerLen    = 112

	magic              = 0x514649fb // "QFI\xfb"
	incompatCompressed = 1 << 3     // compression type field is used
	compressionZstd    = 1
	flagCompressed     = uint64(1) << 62
	flagCopied         = uint64(1) << 63
	// Compressed cluster descriptor: the host offset takes the low
	// 62-(cluster_bits-8) bits, the count of further 512-byte sectors the
	// rest up to bit 61.
	csizeShift = 62 - (clusterBits - 8)
	offsetMask = uint64(1)<<csizeShift - 1
	l2OffMask  = uint64(0x00fffffffffffe00)

	// extTag is a header extension of cosa's own (qemu keeps and ignores
	// extensions it does not know) naming the writer that made the image.
	extTag = 0x636f7361 // "cosa"
	// clusters per unit of work handed to a worker.
	batch = 64
)

// Tag names this writer's encoding: the format version, the encoder and
// its level. Only an image with the same tag has its clusters reused, so
// reusing never changes the output's bytes.
var Tag = func() string {
	v := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/klauspost/compress" {
				v = d.Version
				if d.Replace != nil {
					v = d.Replace.Version
				}
			}
		}
	}
	return "cosa-qcow2/1 zstd=klauspost/compress@" + v + " level=default crc=no"
}()

// Stats says what Write did.
type Stats struct {
	Clusters   int   // guest clusters with data read from the raw disk
	Zero       int   // of those, all zero (left unallocated)
	Reused     int   // taken from the earlier image
	Compressed int   // compressed now
	Plain      int   // stored uncompressed (compression did not make them smaller)
	Bytes      int64 // size of the image written
}

// Write writes the raw disk image src as a compressed qcow2 to dst, a new
// empty file. prev, if not nil, is an earlier image this writer made;
// clusters whose content is unchanged are copied from it. A prev that
// cannot be read is ignored: it only ever saves work.
func Write(ctx context.Context, dst, src *os.File, prev *Image) (Stats, error) {
	var st Stats
	fi, err := src.Stat()
	if err != nil {
		return st, err
	}
	size := fi.Size()
	if size%512 != 0 {
		return st, fmt.Errorf("qcow2: %s: size %d is not a whole number of 512-byte sectors", src.Name(), size)
	}
	extents, err := dataExtents(src, size)
	if err != nil {
		return st, err
	}
	// The guest clusters to look at: those a data extent touches.
	var clusters []int64
	for _, e := range extents {
		for c := e[0] / ClusterSize; c*ClusterSize < e[1]; c++ {
			if n := len(clusters); n == 0 || clusters[n-1] < c {
				clusters = append(clusters, c)
			}
		}
	}
	st.Clusters = len(clusters)
	lay := plan(size, clusters)

	workers := runtime.NumCPU()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(false),
		zstd.WithEncoderConcurrency(workers))
	if err != nil {
		return st, err
	}
	defer enc.Close()

	type job struct {
		first int // index into clusters
		out   chan []encoded
	}
	jobs := make(chan job)
	ordered := make(chan chan []encoded, workers*2)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var werr error
	var werrOnce sync.Once
	fail := func(err error) {
		werrOnce.Do(func() { werr = err })
		cancel()
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := make([]byte, batch*ClusterSize)
			var pr prevReader
			scratch := make([]byte, 0, 4*ClusterSize) // room for the decoder's fast path
			for j := range jobs {
				end := min(j.first+batch, len(clusters))
				res := make([]encoded, 0, end-j.first)
				// One read per run of consecutive clusters.
				cs := clusters[j.first:end]
				if err := readRuns(src, size, cs, in); err != nil {
					fail(err)
				}
				for i, c := range cs {
					if wctx.Err() != nil {
						break
					}
					e, err := encodeCluster(enc, prev, &pr, c, in[i*ClusterSize:(i+1)*ClusterSize], &scratch)
					if err != nil {
						fail(err)
						break
					}
					res = append(res, e)
				}
				j.out <- res
			}
		}()
	}
	go func() {
		defer close(jobs)
		defer close(ordered)
		for i := 0; i < len(clusters); i += batch {
			out := make(chan []encoded, 1)
			select {
			case ordered <- out:
			case <-wctx.Done():
				return
			}
			select {
			case jobs <- job{first: i, out: out}:
			case <-wctx.Done():
				return
			}
		}
	}()

	w := &imageWriter{f: dst, lay: lay, pos: lay.dataStart, bpos: lay.dataStart, buf: make([]byte, 0, fileutil.WriteChunk),
		l2: map[int][]uint64{}, refs: map[int64]uint16{}}
	for out := range ordered {
		var res []encoded
		select {
		case res = <-out:
		case <-wctx.Done():
		}
		if wctx.Err() != nil {
			break
		}
		for _, e := range res {
			switch {
			case e.zero:
				st.Zero++
				continue
			case e.reused:
				st.Reused++
			case e.plain:
				st.Plain++
			default:
				st.Compressed++
			}
			if err := w.add(e); err != nil {
				fail(err)
				break
			}
		}
	}
	cancel()
	// Workers blocked on a job nobody will read finish on the context.
	go func() {
		for range jobs {
		}
	}()
	wg.Wait()
	if werr != nil {
		return st, werr
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	n, err := w.finish(size)
	st.Bytes = n
	return st, err
}

// encoded is one guest cluster's entry in the image.
type encoded struct {
	cluster int64
	zero    bool
	reused  bool
	plain   bool   // data is the cluster itself
	data    []byte // the zstd frame or the plain cluster
}

func encodeCluster(enc *zstd.Encoder, prev *Image, pr *prevReader, c int64, buf []byte, scratch *[]byte) (encoded, error) {
	e := encoded{cluster: c}
	if fileutil.AllZero(buf) {
		e.zero = true
		return e, nil
	}
	if prev != nil {
		if data, plain, ok := prev.same(pr, c, buf, scratch); ok {
			e.reused, e.plain, e.data = true, plain, data
			return e, nil
		}
	}
	frame := enc.EncodeAll(buf, make([]byte, 0, ClusterSize/2))
	if len(frame) >= ClusterSize {
		e.plain, e.data = true, append([]byte(nil), buf...)
		return e, nil
	}
	e.data = frame
	return e, nil
}

// readRuns reads clusters cs of src (ascending) into in, one after the
// other, zero-filling past the end of the file.
func readRuns(src *os.File, size int64, cs []int64, in []byte) error {
	for i := 0; i < len(cs); {
		j := i + 1
		for j < len(cs) && cs[j] == cs[j-1]+1 {
			j++
		}
		b := in[i*ClusterSize : j*ClusterSize]
		n, err := src.ReadAt(b, cs[i]*ClusterSize)
		if err != nil && !(errors.Is(err, io.EOF) && cs[i]*ClusterSize+int64(n) == size) {
			return fmt.Errorf("qcow2: read %s: %w", src.Name(), err)
		}
		clear(b[n:])
		i = j
	}
	return nil
}

// dataExtents lists [start, end) of the file's data.
func dataExtents(f *os.File, size int64) ([][2]int64, error) {
	var out [][2]int64
	err := fileutil.WalkSparse(f, 0, size, func(int64) error { return nil }, func(off, n int64) error {
		out = append(out, [2]int64{off, min(off+n, size)})
		return nil
	})
	return out, err
}

// layout is where the metadata goes: everything is placed before the
// data, sized for the worst case, so the data streams out in one pass.
type layout struct {
	size      int64
	l1Size    int
	l1Off     int64
	rtOff     int64
	rtCl      int // refcount table clusters
	rbOff     int64
	rbMax     int // refcount blocks reserved
	l2Off     map[int]int64
	l2Order   []int
	dataStart int64
}

func plan(size int64, clusters []int64) layout {
	n := (size + ClusterSize - 1) / ClusterSize
	lay := layout{size: size, l1Size: int((n + l2Entries - 1) / l2Entries), l2Off: map[int]int64{}}
	for _, c := range clusters {
		if i := int(c / l2Entries); len(lay.l2Order) == 0 || lay.l2Order[len(lay.l2Order)-1] != i {
			lay.l2Order = append(lay.l2Order, i)
		}
	}
	l1Cl := int64(max(1, (lay.l1Size*8+ClusterSize-1)/ClusterSize))
	// Worst case: each data cluster takes a cluster, plus the padding of
	// a plain cluster after compressed ones.
	data := 2 * int64(len(clusters))
	rb, rt := int64(1), int64(1)
	for {
		total := 1 + l1Cl + rt + rb + int64(len(lay.l2Order)) + data
		nrb := (total + refsPerBlock - 1) / refsPerBlock
		nrt := max(1, (nrb*8+ClusterSize-1)/ClusterSize)
		if nrb == rb && nrt == rt {
			break
		}
		rb, rt = nrb, nrt
	}
	off := int64(ClusterSize)
	lay.l1Off, off = off, off+l1Cl*ClusterSize
	lay.rtOff, lay.rtCl, off = off, int(rt), off+rt*ClusterSize
	lay.rbOff, lay.rbMax, off = off, int(rb), off+rb*ClusterSize
	for _, i := range lay.l2Order {
		lay.l2Off[i], off = off, off+ClusterSize
	}
	lay.dataStart = off
	return lay
}

type imageWriter struct {
	f    *os.File
	lay  layout
	pos  int64 // file offset of the next byte
	buf  []byte
	bpos int64 // file offset of buf[0]
	l2   map[int][]uint64
	refs map[int64]uint16 // host cluster -> refcount (data only)
}

func (w *imageWriter) add(e encoded) error {
	var entry uint64
	if e.plain {
		if pad := (ClusterSize - w.pos%ClusterSize) % ClusterSize; pad > 0 {
			if err := w.write(make([]byte, pad)); err != nil {
				return err
			}
		}
		entry = uint64(w.pos) | flagCopied
		w.refs[w.pos/ClusterSize]++
	} else {
		last := w.pos + int64(len(e.data)) - 1
		nsect := uint64(last/512 - w.pos/512)
		entry = uint64(w.pos) | nsect<<csizeShift | flagCompressed
		for c := w.pos / ClusterSize; c <= last/ClusterSize; c++ {
			w.refs[c]++
		}
	}
	t := w.l2[int(e.cluster/l2Entries)]
	if t == nil {
		t = make([]uint64, l2Entries)
		w.l2[int(e.cluster/l2Entries)] = t
	}
	t[e.cluster%l2Entries] = entry
	return w.write(e.data)
}

func (w *imageWriter) write(b []byte) error {
	if len(w.buf)+len(b) > cap(w.buf) {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if len(b) > cap(w.buf) {
		if _, err := w.f.WriteAt(b, w.pos); err != nil {
			return err
		}
		w.pos += int64(len(b))
		w.bpos = w.pos
		return nil
	}
	w.buf = append(w.buf, b...)
	w.pos += int64(len(b))
	return nil
}

func (w *imageWriter) flush() error {
	if len(w.buf) > 0 {
		if _, err := w.f.WriteAt(w.buf, w.bpos); err != nil {
			return err
		}
	}
	w.bpos, w.buf = w.pos, w.buf[:0]
	return nil
}

// finish writes the metadata in front of the data and returns the size of
// the file.
func (w *imageWriter) finish(size int64) (int64, error) {
	if err := w.flush(); err != nil {
		return 0, err
	}
	end := max(w.pos, w.lay.dataStart)
	end = (end + 511) &^ 511
	lay := w.lay
	refs := w.refs
	meta := func(off int64, n int) {
		for i := 0; i < n; i++ {
			refs[off/ClusterSize+int64(i)]++
		}
	}
	meta(0, 1)
	meta(lay.l1Off, int((lay.rtOff-lay.l1Off)/ClusterSize))
	meta(lay.rtOff, lay.rtCl)
	fileClusters := (end + ClusterSize - 1) / ClusterSize
	nrb := int((fileClusters + refsPerBlock - 1) / refsPerBlock)
	if nrb > lay.rbMax {
		return 0, fmt.Errorf("qcow2: %d refcount blocks needed, %d planned", nrb, lay.rbMax)
	}
	meta(lay.rbOff, nrb)
	l1 := make([]byte, (lay.rtOff - lay.l1Off))
	for _, i := range lay.l2Order {
		off := lay.l2Off[i]
		meta(off, 1)
		tb := make([]byte, ClusterSize)
		for j, v := range w.l2[i] {
			binary.BigEndian.PutUint64(tb[j*8:], v)
		}
		if _, err := w.f.WriteAt(tb, off); err != nil {
			return 0, err
		}
		binary.BigEndian.PutUint64(l1[i*8:], uint64(off)|flagCopied)
	}
	if _, err := w.f.WriteAt(l1, lay.l1Off); err != nil {
		return 0, err
	}
	rt := make([]byte, lay.rtCl*ClusterSize)
	for b := 0; b < nrb; b++ {
		boff := lay.rbOff + int64(b)*ClusterSize
		binary.BigEndian.PutUint64(rt[b*8:], uint64(boff))
		blk := make([]byte, ClusterSize)
		for k := 0; k < refsPerBlock; k++ {
			if r := refs[int64(b)*refsPerBlock+int64(k)]; r > 0 {
				binary.BigEndian.PutUint16(blk[k*2:], r)
			}
		}
		if _, err := w.f.WriteAt(blk, boff); err != nil {
			return 0, err
		}
	}
	if _, err := w.f.WriteAt(rt, lay.rtOff); err != nil {
		return 0, err
	}
	if _, err := w.f.WriteAt(header(size, lay), 0); err != nil {
		return 0, err
	}
	if err := w.f.Truncate(end); err != nil {
		return 0, err
	}
	return end, nil
}

func header(size int64, lay layout) []byte {
	h := make([]byte, headerLen)
	be := binary.BigEndian
	be.PutUint32(h[0:], magic)
	be.PutUint32(h[4:], 3)
	be.PutUint32(h[20:], clusterBits)
	be.PutUint64(h[24:], uint64(size))
	be.PutUint32(h[36:], uint32(lay.l1Size))
	be.PutUint64(h[40:], uint64(lay.l1Off))
	be.PutUint64(h[48:], uint64(lay.rtOff))
	be.PutUint32(h[56:], uint32(lay.rtCl))
	be.PutUint64(h[72:], incompatCompressed)
	be.PutUint32(h[96:], 4)
	be.PutUint32(h[100:], headerLen)
	h[104] = compressionZstd
	tag := []byte(Tag)
	ext := make([]byte, 8, 8+len(tag)+8+8)
	be.PutUint32(ext[0:], extTag)
	be.PutUint32(ext[4:], uint32(len(tag)))
	ext = append(ext, tag...)
	for len(ext)%8 != 0 {
		ext = append(ext, 0)
	}
	ext = append(ext, make([]byte, 8)...) // end of extensions
	return append(h, ext...)
}

// Image is an earlier image of this writer, opened for reuse.
type Image struct {
	f    *os.File
	size int64 // file size
	l2   map[int][]uint64
	dec  *zstd.Decoder
}

// errNotOurs: the file is not an image this writer made with this Tag.
var errNotOurs = errors.New("not an image of this writer")

// Open opens path for reuse by Write. It fails for anything that is not a
// qcow2 this writer made with the current Tag.
func Open(path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	im, err := open(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return im, nil
}

func open(f *os.File) (*Image, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	h := make([]byte, ClusterSize)
	n, err := f.ReadAt(h, 0)
	if n < headerLen {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	be := binary.BigEndian
	if be.Uint32(h[0:]) != magic || be.Uint32(h[4:]) != 3 || be.Uint32(h[20:]) != clusterBits ||
		be.Uint64(h[8:]) != 0 || be.Uint32(h[32:]) != 0 || be.Uint64(h[72:]) != incompatCompressed ||
		be.Uint32(h[100:]) != headerLen || h[104] != compressionZstd {
		return nil, errNotOurs
	}
	// The tag extension must come first and match.
	if be.Uint32(h[headerLen:]) != extTag || int(be.Uint32(h[headerLen+4:])) != len(Tag) ||
		!bytes.Equal(h[headerLen+8:headerLen+8+len(Tag)], []byte(Tag)) {
		return nil, errNotOurs
	}
	l1Size, l1Off := int(be.Uint32(h[36:])), int64(be.Uint64(h[40:]))
	if l1Size > 1<<16 || l1Off <= 0 || l1Off+int64(l1Size)*8 > fi.Size() {
		return nil, fmt.Errorf("L1 table out of bounds")
	}
	l1 := make([]byte, l1Size*8)
	if _, err := f.ReadAt(l1, l1Off); err != nil {
		return nil, err
	}
	im := &Image{f: f, size: fi.Size(), l2: map[int][]uint64{}}
	for i := 0; i < l1Size; i++ {
		off := int64(be.Uint64(l1[i*8:]) & l2OffMask)
		if off == 0 {
			continue
		}
		if off+ClusterSize > fi.Size() {
			return nil, fmt.Errorf("L2 table out of bounds")
		}
		tb := make([]byte, ClusterSize)
		if _, err := f.ReadAt(tb, off); err != nil {
			return nil, err
		}
		t := make([]uint64, l2Entries)
		for j := range t {
			t[j] = be.Uint64(tb[j*8:])
		}
		im.l2[i] = t
	}
	im.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(4*ClusterSize))
	if err != nil {
		return nil, err
	}
	return im, nil
}

// Close closes the image.
func (im *Image) Close() error {
	if im.dec != nil {
		im.dec.Close()
	}
	return im.f.Close()
}

// same returns the bytes the image stores for guest cluster c if they
// decode to want: a zstd frame, or the plain cluster (plain true).
func (im *Image) same(pr *prevReader, c int64, want []byte, scratch *[]byte) ([]byte, bool, bool) {
	t := im.l2[int(c/l2Entries)]
	if t == nil {
		return nil, false, false
	}
	e := t[c%l2Entries]
	switch {
	case e == 0:
		return nil, false, false
	case e&flagCompressed != 0:
		off := int64(e & offsetMask)
		nsect := int64(e>>csizeShift) & (1<<(clusterBits-8) - 1)
		end := min((off&^511)+(nsect+1)*512, im.size)
		if off >= end {
			return nil, false, false
		}
		region, err := pr.read(im, off, end)
		if err != nil {
			return nil, false, false
		}
		n, ok := frameLen(region)
		if !ok {
			return nil, false, false
		}
		out, err := im.dec.DecodeAll(region[:n], (*scratch)[:0])
		if err != nil || !bytes.Equal(out, want) {
			return nil, false, false
		}
		*scratch = out
		return append([]byte(nil), region[:n]...), false, true
	default:
		off := int64(e & l2OffMask)
		if off%ClusterSize != 0 || off+ClusterSize > im.size {
			return nil, false, false
		}
		b, err := pr.read(im, off, off+ClusterSize)
		if err != nil || !bytes.Equal(b, want) {
			return nil, false, false
		}
		return append([]byte(nil), b...), true, true
	}
}

// prevReader is one worker's window on the earlier image: its clusters
// are looked up in file order, so one read serves many.
type prevReader struct {
	base int64
	buf  []byte
}

const prevWindow = 4 << 20

// read returns the image's bytes [off, end), valid until the next call.
func (pr *prevReader) read(im *Image, off, end int64) ([]byte, error) {
	if off < pr.base || end > pr.base+int64(len(pr.buf)) {
		if pr.buf == nil {
			pr.buf = make([]byte, prevWindow)
		}
		n := min(int64(prevWindow), im.size-off)
		if end-off > n {
			return nil, io.ErrUnexpectedEOF
		}
		pr.buf = pr.buf[:cap(pr.buf)]
		k, err := im.f.ReadAt(pr.buf[:n], off)
		if err != nil && !errors.Is(err, io.EOF) {
			pr.buf = pr.buf[:0]
			return nil, err
		}
		pr.base, pr.buf = off, pr.buf[:k]
		if end-off > int64(k) {
			return nil, io.ErrUnexpectedEOF
		}
	}
	return pr.buf[off-pr.base : end-pr.base], nil
}

// frameLen is the length of the zstd frame at the start of b (which may
// go on past it), walking its header and block headers.
func frameLen(b []byte) (int, bool) {
	if len(b) < 5 || binary.LittleEndian.Uint32(b) != 0xFD2FB528 {
		return 0, false
	}
	fhd := b[4]
	single := fhd&0x20 != 0
	n := 5
	if !single {
		n++ // window descriptor
	}
	n += []int{0, 1, 2, 4}[fhd&3]
	switch fhd >> 6 {
	case 0:
		if single {
			n++
		}
	case 1:
		n += 2
	case 2:
		n += 4
	case 3:
		n += 8
	}
	for {
		if n+3 > len(b) {
			return 0, false
		}
		bh := int(b[n]) | int(b[n+1])<<8 | int(b[n+2])<<16
		n += 3
		size := bh >> 3
		switch (bh >> 1) & 3 {
		case 0, 2:
			n += size
		case 1:
			n++
		default:
			return 0, false
		}
		if n > len(b) {
			return 0, false
		}
		if bh&1 != 0 {
			break
		}
	}
	if fhd&0x04 != 0 {
		n += 4
	}
	if n > len(b) {
		return 0, false
	}
	return n, true
}
