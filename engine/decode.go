package engine

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/replay/replay/segment"
)

// Decoder decodes (verifies and decompresses: segment.RecordReader.Reset) the batches a read
// hands it on several goroutines and hands them to its callback in the order they were added,
// each with a RecordReader already reset on it. It exists because decompression is most of a
// replay's CPU (snappy, 72–79% of a 50% webhook's read, bench replay): on one goroutine a read
// of many batches is bound by one core however many the machine has.
//
// Add is a Scan or ReadBatches callback; it and Flush and Close are called from one goroutine
// at a time, and the callback runs on that goroutine, inside Add or Flush. The first batch a
// Decoder gets is decoded and handed over inside its Add, with no other goroutine involved (a
// wake-up of one can take milliseconds on a loaded machine, and the first batch is the time to
// the first event); the following ones are copied (a batch's bytes are valid only during the
// callback) into one of a bounded number of slots and decoded by Decoders()−1 goroutines and
// by the adding goroutine itself, which decodes a waiting batch rather than wait for one. With
// GOMAXPROCS 1 every batch is decoded inline. A batch is handed over once every batch added
// before it has been, so at most DecodeAhead() batches are decoded and not yet handed over; a
// decoding error (a checksum, a malformed batch: a *segment.CorruptionError) is the batch's
// own, reported at its place by the RecordReader's Err, as Reset would have. A callback's error
// (ErrStop included) is returned by that Add or Flush and by every later one: what stops the
// read. Close stops the goroutines and waits for them.
type Decoder struct {
	ctx context.Context
	fn  func(*segment.Batch, *segment.RecordReader) error

	started bool
	err     error
	ring    []*decodeSlot // ring[(head+i)%len] for i < n: added and not yet handed over
	head, n int
	inline  decodeSlot // the first batch's: decoded in Add, its bytes not copied

	work     chan *decodeSlot
	stopping atomic.Bool
	wg       sync.WaitGroup
	closed   bool

	// delay, when set (tests), runs before each decode: random decode times.
	delay func(*segment.Batch)
}

// Slot states.
const (
	slotPending   int32 = iota + 1 // added, not yet taken by a decoder
	slotByWorker                   // a worker decodes it and then sends on done
	slotByCaller                   // the adding goroutine decoded it
	slotUndecoded                  // a control batch: handed over as it is
)

// decodeSlot is one batch in flight: its own copy of the bytes and a RecordReader, kept for the
// next batch once handed over, so a Decoder's memory is its DecodeAhead() batches' and
// readers' buffers.
type decodeSlot struct {
	state atomic.Int32
	done  chan struct{} // a worker's "decoded" (capacity 1)
	b     segment.Batch
	raw   []byte
	rr    segment.RecordReader
}

// Decoders is how many goroutines a Decoder decodes on, its adding goroutine included:
// GOMAXPROCS, at most 8 (as the index builder's decoders), so that a read on a large machine,
// one per job and topic, keeps to a few MiB.
func Decoders() int { return min(runtime.GOMAXPROCS(0), 8) }

// DecodeAhead is the most batches a Decoder has decoded, or is decoding, and not yet handed
// over: 4 per goroutine decoding, enough to keep them busy while the callback takes its time
// over one, and 4 × (16 KiB batch + its decompressed records) per goroutine of memory.
func DecodeAhead() int { return 4 * Decoders() }

// NewDecoder returns a Decoder handing batches to fn: b is valid during the call, and rr is
// reset on it (rr.Err() is the batch's decoding error, if any; nil rr for a control batch,
// which is not decoded: it holds transaction markers no consumer sees). ctx ending ends the
// waits for a decoded batch with its error. Close it.
func NewDecoder(ctx context.Context, fn func(b *segment.Batch, rr *segment.RecordReader) error) *Decoder {
	return &Decoder{ctx: ctx, fn: fn}
}

// Add adds b, the next batch in log order; it hands over the batches that are decoded, in
// order, and waits only while DecodeAhead() batches are in flight.
func (d *Decoder) Add(b *segment.Batch) error {
	if d.err != nil {
		return d.err
	}
	if err := d.ctx.Err(); err != nil {
		d.err = err
		return err
	}
	if !d.started {
		// The first batch: nothing to wait for behind it.
		d.started = true
		s := &d.inline
		s.b = *b
		if d.decode(s) {
			return d.hand(s, &s.rr)
		}
		return d.hand(s, nil)
	}
	if d.ring == nil {
		d.ring = make([]*decodeSlot, DecodeAhead())
		for i := range d.ring {
			d.ring[i] = &decodeSlot{done: make(chan struct{}, 1)}
		}
		if w := Decoders() - 1; w > 0 {
			d.work = make(chan *decodeSlot, len(d.ring))
			d.wg.Add(w)
			for range w {
				go d.worker()
			}
		}
	}
	for d.n == len(d.ring) {
		if _, err := d.handHead(true); err != nil {
			return err
		}
	}
	s := d.ring[(d.head+d.n)%len(d.ring)]
	d.n++
	s.raw = append(s.raw[:0], b.Raw...)
	s.b = *b
	s.b.Raw = s.raw
	if b.IsControl() {
		s.state.Store(slotUndecoded)
	} else {
		s.state.Store(slotPending)
		if d.work != nil {
			select {
			case d.work <- s:
			default: // the workers are behind: the adding goroutine decodes it when it is the head
			}
		} else {
			d.claim(s)
		}
	}
	for d.n > 0 {
		if handed, err := d.handHead(false); err != nil || !handed {
			return err
		}
	}
	return nil
}

// Flush hands over every batch added, in order: the read ended, or the caller is about to wait
// for something else (its next chunk of offsets) and the batches in flight should not wait with
// it.
func (d *Decoder) Flush() error {
	for d.n > 0 && d.err == nil {
		if _, err := d.handHead(true); err != nil {
			return err
		}
	}
	return d.err
}

// Close stops the decoding goroutines, without handing over what is still in flight, and waits
// for them to return. It is idempotent.
func (d *Decoder) Close() {
	if d.closed {
		return
	}
	d.closed = true
	d.stopping.Store(true)
	if d.work != nil {
		close(d.work)
	}
	d.wg.Wait()
}

// handHead hands the head batch over if it is decoded and reports whether it did. With wait
// it makes sure it is: it decodes the head itself when no worker has taken it, else decodes
// later batches no worker has taken while it waits. Without wait, a head not yet decoded is
// left alone (the caller has reading to do).
func (d *Decoder) handHead(wait bool) (bool, error) {
	s := d.ring[d.head]
	switch s.state.Load() {
	case slotPending:
		if !wait {
			return false, nil
		}
		if !d.claim(s) {
			return d.handHead(true) // a worker took it meanwhile
		}
	case slotByWorker:
		select {
		case <-s.done:
		default:
			if !wait {
				return false, nil
			}
			if !d.waitFor(s) {
				return false, d.err
			}
		}
	}
	d.head = (d.head + 1) % len(d.ring)
	d.n--
	if s.state.Load() == slotUndecoded {
		return true, d.hand(s, nil)
	}
	return true, d.hand(s, &s.rr)
}

// waitFor waits for the worker decoding s, decoding the batches after it that no worker has
// taken meanwhile. It reports false when ctx ended first (d.err says so).
func (d *Decoder) waitFor(s *decodeSlot) bool {
	for i := 1; i < d.n; i++ {
		o := d.ring[(d.head+i)%len(d.ring)]
		if o.state.Load() != slotPending {
			continue
		}
		d.claim(o)
		select {
		case <-s.done:
			return true
		default:
		}
	}
	select {
	case <-s.done:
		return true
	case <-d.ctx.Done():
		d.err = d.ctx.Err()
		return false
	}
}

// claim decodes s on the adding goroutine unless a worker has taken it.
func (d *Decoder) claim(s *decodeSlot) bool {
	if !s.state.CompareAndSwap(slotPending, slotByCaller) {
		return false
	}
	d.decode(s)
	return true
}

func (d *Decoder) worker() {
	defer d.wg.Done()
	for s := range d.work {
		// A slot may be queued twice (once per batch it held, the first decoded by the adding
		// goroutine); the state says whether it still waits, for whichever batch it holds now.
		if d.stopping.Load() || !s.state.CompareAndSwap(slotPending, slotByWorker) {
			continue
		}
		d.decode(s)
		s.done <- struct{}{}
	}
}

// decode resets s's reader on its batch, unless it is a control batch; the error stays in the
// reader, the batch's own.
func (d *Decoder) decode(s *decodeSlot) bool {
	if s.b.IsControl() {
		return false
	}
	if d.delay != nil {
		d.delay(&s.b)
	}
	_ = s.rr.Reset(&s.b)
	return true
}

func (d *Decoder) hand(s *decodeSlot, rr *segment.RecordReader) error {
	if err := d.fn(&s.b, rr); err != nil {
		d.err = err
		return err
	}
	return nil
}
