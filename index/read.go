package index

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/segment"
)

// scanDensity is the share of a chunk's range of batches above which ReadStream scans the
// range instead of reading the chunk's batches by offset: a sequential scan costs about 0.7 µs a
// batch of 64 KiB, a targeted read 0.9 µs a wanted batch when they are neighbours and 3.7 µs when
// one in ten is wanted (DirSource, page cache; bench/).
const scanDensity = 0.3

// ReadPartition reads the batches of partition p that LookupPartition lists for webhook and
// [from, to), calling fn for each once, in ascending offset order, while the lookup goes on
// (LookupStream, read by ReadStream): the first batches are read before the last buckets are.
// fn gets each batch decoded, as ReadStream says. The Result is the lookup's.
func (ix *Index) ReadPartition(ctx context.Context, src engine.Source, p int32, webhook []byte, from, to int64, fn func(*segment.Batch, *segment.RecordReader) error) (Result, error) {
	var res Result
	err := ReadStream(ctx, src, p, func(ctx context.Context, emit func([]int64) error) error {
		var err error
		res, err = ix.LookupStream(ctx, src, p, webhook, from, to, emit)
		return err
	}, ReadOptions{}, fn)
	return res, err
}

// ReadOptions are how ReadStream treats a batch the source cannot read.
type ReadOptions struct {
	// Unframed, when set, is called, in order, with the first offset not yet read when the source
	// cannot frame the batch holding it (a corruption error from the read itself, not a batch's
	// checksum, which is the batch's RecordReader's error): that offset is skipped and reading
	// goes on with the next ones, unless Unframed returns an error, which ends the read. Unset,
	// such an error ends the read.
	Unframed func(offset int64, err error) error
}

// ReadStream reads the batches of partition p holding the offsets that lookup hands to its
// emit, in ascending chunks, while the lookup goes on: what a replay reads, through the index
// (ReadPartition: LookupStream) or any streaming locator (the worker's). fn is called once for
// each batch, in ascending offset order, with a RecordReader reset on it (nil for a control
// batch): the batches are decoded by an engine.Decoder, on GOMAXPROCS goroutines (at most 8), since
// decompression is most of a dense replay's CPU (snappy 72–79% at a 50% share, bench replay),
// and a batch's own decoding error (checksum, malformed records) is its RecordReader's Err.
//
// The first batch is read and decoded on the lookup's goroutine, inside its first emit: handing
// it to another one costs a wake-up, which on 2 busy cores was most of the time to the first
// event (0.3–2 ms of 0.5–2.5). The rest is read by a goroutine of its own, chunk after chunk, by
// offset (ReadBatches) or, for a dense chunk of a local source, by a scan of its range that
// hands over only the listed batches (a remote source's scan fetches far past the chunk's end:
// measured on Kafka, 1.56× the seed consumer's bytes at a 50% share). The lookup never waits
// for the reader: its chunks are queued (at most the whole answer), so it ends, and lets go of
// the index, at its own pace; it ends early (its context cancelled) once reading has.
//
// fn returning engine.ErrStop ends the read without an error; another error of fn's, or of the
// read, is returned; else the lookup's error, after the chunks it handed over are read.
func ReadStream(ctx context.Context, src engine.Source, p int32, lookup func(ctx context.Context, emit func([]int64) error) error, o ReadOptions, fn func(*segment.Batch, *segment.RecordReader) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &chunkReader{src: src, p: p, next: -1, unframed: o.Unframed}
	r.dec = engine.NewDecoder(ctx, func(b *segment.Batch, rr *segment.RecordReader) error {
		err := fn(b, rr)
		if errors.Is(err, engine.ErrStop) {
			r.stopped = true
		}
		return err
	})
	defer r.dec.Close()
	var (
		q    *chunkQueue
		done chan struct{}
	)
	lerr := lookup(ctx, func(offs []int64) error {
		if len(offs) == 0 {
			return nil
		}
		if q == nil {
			if r.read(ctx, offs[:1]); r.ended() {
				return errReadEnded
			}
			q = &chunkQueue{}
			q.cond.L = &q.mu
			done = make(chan struct{})
			go func() {
				defer close(done)
				for {
					c, ok := q.pop()
					if !ok {
						return
					}
					if !r.ended() {
						if r.read(ctx, c); r.ended() {
							cancel() // the lookup ends with the cancelled context
						}
					}
				}
			}()
			if offs = offs[1:]; len(offs) == 0 {
				return nil
			}
		}
		q.push(offs)
		return ctx.Err()
	})
	if q != nil {
		q.close()
		<-done
	}
	switch {
	case r.err != nil:
		return r.err
	case r.stopped:
		return nil
	}
	return lerr
}

// errReadEnded ends a ReadStream's lookup once its reading ended (an error, or ErrStop).
var errReadEnded = errors.New("index: read ended")

// chunkQueue hands a lookup's chunks to the reader without ever blocking the lookup.
type chunkQueue struct {
	mu     sync.Mutex
	cond   sync.Cond
	chunks [][]int64
	closed bool
}

func (q *chunkQueue) push(offs []int64) {
	q.mu.Lock()
	q.chunks = append(q.chunks, offs)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *chunkQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Signal()
}

// pop returns the next chunk; ok is false once the queue is closed and every chunk was taken.
func (q *chunkQueue) pop() (offs []int64, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.chunks) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.chunks) == 0 {
		return nil, false
	}
	offs, q.chunks = q.chunks[0], q.chunks[1:]
	return offs, true
}

// chunkReader reads ReadStream's chunks in order, each batch once; err and stopped say how
// reading ended. One goroutine at a time uses it.
type chunkReader struct {
	src      engine.Source
	p        int32
	dec      *engine.Decoder
	unframed func(int64, error) error
	next     int64 // offsets below are in a batch already read
	err      error
	stopped  bool
}

func (r *chunkReader) ended() bool { return r.err != nil || r.stopped }

func (r *chunkReader) each(b *segment.Batch) error {
	if b.BaseOffset < r.next {
		return nil
	}
	r.next = b.NextOffset()
	return r.dec.Add(b)
}

// read reads the batches holding offs. Dense chunks of a local log are scanned; a remote
// source's (Kafka) are not: a scan fetches FetchMaxBytes at a time, far past the chunk's end
// (measured, bench kafka: 1.56× the seed consumer's bytes at a 50% share), where targeted reads
// fetch the span of the wanted batches.
func (r *chunkReader) read(ctx context.Context, offs []int64) {
	// The first batch is read by offset whatever the density: a scan starts with a search for
	// its first batch and a large first read (measured: 0.25–0.9 ms to the first batch against
	// 0.05–0.09 ms), and the first event waits for it.
	scan := r.next >= 0 && !engine.Remote(r.src)
	for {
		offs = offs[sort.Search(len(offs), func(i int) bool { return offs[i] >= r.next }):]
		if len(offs) == 0 {
			return
		}
		var err error
		scanned := scan && dense(offs)
		if scanned {
			err = scanChunk(ctx, r.src, r.p, offs, r.each)
		} else {
			err = r.src.ReadBatches(ctx, r.p, offs, r.each)
		}
		// The batches still being decoded are handed over before the next chunk is waited for,
		// and before r.next is trusted below. The Decoder's error is fn's (or ctx's): fn may
		// return a batch's corruption error, which is not the source's.
		ferr := r.dec.Flush()
		switch {
		case r.stopped:
			return
		case ferr != nil:
			r.err = ferr
			return
		case err == nil:
			return
		case !segment.IsCorruption(err) || r.unframed == nil:
			r.err = err
			return
		case scanned:
			// A scan stops at any batch it cannot frame, listed or not: the rest of the chunk is
			// read by offset, which skips the unframed batch if it is listed.
			scan = false
			continue
		}
		i := sort.Search(len(offs), func(i int) bool { return offs[i] >= r.next })
		if i == len(offs) {
			r.err = err
			return
		}
		if err := r.unframed(offs[i], err); err != nil {
			r.err = err
			return
		}
		offs = offs[i+1:]
	}
}

// dense says offs (ascending batch base offsets) are a large enough share of the batches in
// their range for a scan of it to cost less than reading them one by one. A batch's record count
// is taken to be the 10th percentile of the gaps between them (of up to 1024 of them, evenly
// spread): neighbouring wanted batches are what makes a chunk dense, and the percentile keeps
// the few small batches a producer cuts (a flush, the end of a segment) from counting.
func dense(offs []int64) bool {
	if len(offs) < 16 {
		return false
	}
	step := max(1, (len(offs)-1)/1024)
	gaps := make([]int64, 0, (len(offs)-1)/step+1)
	for i := step; i < len(offs); i += step {
		gaps = append(gaps, offs[i]-offs[i-1])
	}
	slices.Sort(gaps)
	batch := max(gaps[len(gaps)/10], 1)
	batches := float64(offs[len(offs)-1]-offs[0])/float64(batch) + 1
	return float64(len(offs)) >= scanDensity*batches
}

// scanChunk scans the log from offs[0] to the batch holding offs[len-1], calling fn for the
// batches holding one of offs, as ReadBatches would.
func scanChunk(ctx context.Context, src engine.Source, p int32, offs []int64, fn func(*segment.Batch) error) error {
	last := offs[len(offs)-1]
	err := src.Scan(ctx, p, offs[0], func(b *segment.Batch) error {
		if b.BaseOffset > last {
			return engine.ErrStop
		}
		for len(offs) > 0 && offs[0] < b.BaseOffset {
			offs = offs[1:] // in a gap of the log: no batch holds it, as ReadBatches skips it
		}
		if len(offs) == 0 || offs[0] >= b.NextOffset() {
			return nil
		}
		for len(offs) > 0 && offs[0] < b.NextOffset() {
			offs = offs[1:]
		}
		return fn(b)
	})
	if errors.Is(err, engine.ErrStop) {
		return nil
	}
	return err
}
