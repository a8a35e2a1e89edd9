package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/pebblelog"
	"github.com/replay/replay/segment"
)

// streamFrontiers is how many times a streaming lookup asks the source where a bucket's records
// start (OffsetForTime) to hand over the offsets found so far, before it reads the rest of the
// window's buckets in one go: on Kafka each is a ListOffsets round trip, and after the first
// chunks the reader has batches to decode while the lookup finishes on the other core.
const streamFrontiers = 3

// errLogMoved is a streaming lookup finding, after it handed offsets over, an entry below them:
// the log changed under the lookup (its start deleted between two looks at it).
// It is retryable (engine.IsRetryable): a new lookup answers for the log as it is now, so a
// replay job is released and leased again rather than failed.
var errLogMoved error = logMovedError{}

type logMovedError struct{}

func (logMovedError) Error() string {
	return "index: the log changed under a streaming lookup; look it up again"
}
func (logMovedError) Retryable() bool { return true }

// LookupStream is LookupPartition answering as it goes: emit is called with the answer's offsets
// in ascending chunks, the first as soon as the first buckets are read. Together the chunks are
// exactly the returned Result's Offsets, which are LookupPartition's. emit may keep a chunk but
// not modify it; an error from it ends the lookup with that error.
//
// Offsets of bucket b are final once every later bucket is known to hold none below them: the
// records of buckets after b have timestamps at or after b+1's start, and the source's
// OffsetForTime of that time is the first record with one (ListOffsets' answer, even with
// timestamps out of order), so later entries are at or after the batch holding it. Offsets below
// it are handed over; the one batch holding it is the only one a later bucket may list again
// (dropped as a duplicate).
func (ix *Index) LookupStream(ctx context.Context, src engine.Source, p int32, webhook []byte, from, to int64, emit func(offsets []int64) error) (_ Result, err error) {
	defer pebblelog.Recover(&err)
	if err := ix.usable(); err != nil {
		return Result{}, err
	}
	if _, err := ix.checkPartitions(ctx, src, false); err != nil {
		return Result{Partition: p}, err
	}
	return ix.lookupPartition(ctx, src, p, webhook, from, to, emit)
}

// lookup is one lookup's state: the offsets found and not handed over yet (pend, ascending and
// distinct), those handed over (res.Offsets), and the source's bounds once known.
type lookup struct {
	res     Result
	emit    func([]int64) error
	pend    []int64
	scratch []int64
	bounds  engine.Bounds
	known   bool // bounds are known
	// limit: offsets at or past it are dropped (the end of a log truncated below the checkpoint).
	limit int64
}

func (ix *Index) lookupPartition(ctx context.Context, src engine.Source, p int32, webhook []byte, from, to int64, emit func([]int64) error) (Result, error) {
	lk := &lookup{res: Result{Partition: p}, emit: emit, limit: math.MaxInt64}
	if from >= to {
		return lk.res, nil
	}
	wh := WebhookID(webhook)
	lo, hi := ix.Bucket(from), ix.Bucket(to-1)
	// A streaming lookup needs the bounds and the first frontier before it hands anything over:
	// they are asked for beside the checkpoint and the first seek (on the other core), each by
	// a goroutine that the lookup does the work of itself if it has not started by the time
	// the lookup needs it (on a loaded machine a goroutine can wait milliseconds for a core).
	// Bounds read before the checkpoint are as good as after: the answer is then the log as it
	// was when they were read (a checkpoint past that end only drops what was appended since).
	var (
		bounds     engine.Bounds
		berr, ferr error
		first      = int64(math.MaxInt64)
	)
	boundsTask := &sideTask{run: func() { bounds, berr = src.Bounds(ctx, p) }}
	frontierTask := &sideTask{run: func() {
		if lo < hi {
			first, ferr = frontier(ctx, src, p, ix.BucketTime(lo+1))
		}
	}}
	frontiers := 0
	if emit != nil {
		boundsTask.start()
		frontierTask.start()
		// Nothing reads the source after the lookup returned.
		defer boundsTask.drain()
		defer frontierTask.drain()
	}
	// The checkpoint is read before the entries: entries committed after it only duplicate
	// what the suffix scan finds, while the reverse order could skip a commit made in between.
	cp, _, err := ix.Checkpoint(p)
	if err != nil {
		return lk.res, err
	}
	lk.res.Indexed = cp
	if hi >= lo {
		upper := partitionEnd(prefixEntry, p)
		if hi < math.MaxUint32 {
			upper = bucketStart(prefixEntry, p, hi+1)
		}
		it, err := ix.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: bucketStart(prefixEntry, p, lo), UpperBound: upper})
		if err != nil {
			return lk.res, err
		}
		key := make([]byte, 0, entryKeyLen)
		var offs []int64
		for b := lo; ; b++ {
			if err := ctx.Err(); err != nil {
				it.Close()
				return lk.res, err
			}
			key = entryKey(key[:0], p, b, wh)
			lk.res.Seeks++
			if it.SeekGE(key) && bytes.Equal(it.Key(), key) {
				v, err := it.ValueAndErr()
				if err == nil {
					offs, err = decodeRuns(offs[:0], v)
				}
				if err == nil {
					err = lk.add(offs)
				}
				if err != nil {
					it.Close()
					return lk.res, fmt.Errorf("index: partition %d bucket %d webhook %d: %w", p, b, wh, err)
				}
			}
			if b == hi {
				break
			}
			if emit != nil && frontiers < streamFrontiers && len(lk.pend) > 0 {
				var f int64
				if frontiers == 0 {
					boundsTask.take()
					frontierTask.take()
					if err := errors.Join(berr, ferr); err != nil {
						it.Close()
						return lk.res, err
					}
					lk.setBounds(bounds, cp)
					f = first
				} else if f, err = frontier(ctx, src, p, ix.BucketTime(b+1)); err != nil {
					it.Close()
					return lk.res, err
				}
				frontiers++
				if err := lk.flush(f); err != nil {
					it.Close()
					return lk.res, err
				}
			}
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return lk.res, err
		}
	}
	if !lk.known {
		boundsTask.take()
		if berr != nil {
			return lk.res, berr
		}
		lk.setBounds(bounds, cp)
	}
	// Every bucket is read: what is pending is final.
	if err := lk.flush(math.MaxInt64); err != nil {
		return lk.res, err
	}
	if start := max(min(cp, lk.bounds.End), lk.bounds.Start); start < lk.bounds.End {
		var rr segment.RecordReader
		var found []int64
		err := src.Scan(ctx, p, start, func(b *segment.Batch) error {
			lk.res.ScannedBatches++
			if b.IsControl() || b.NextOffset() <= start {
				return nil
			}
			if err := rr.Reset(b); err != nil {
				return err
			}
			for rr.Next() {
				r := rr.Record()
				if r.Timestamp >= from && r.Timestamp < to && bytes.Equal(r.Key, webhook) {
					found = append(found, b.BaseOffset)
					return nil
				}
			}
			return rr.Err()
		})
		if err != nil {
			return lk.res, err
		}
		if err := lk.add(found); err != nil {
			return lk.res, err
		}
		if err := lk.flush(math.MaxInt64); err != nil {
			return lk.res, err
		}
	}
	return lk.res, nil
}

// sideTask is work a lookup may hand to another goroutine: whoever claims it first runs it.
type sideTask struct {
	run   func()
	state atomic.Int32 // 0 unclaimed, 1 the goroutine's, 2 the lookup's
	done  chan struct{}
}

// start offers the task to a goroutine of its own.
func (t *sideTask) start() {
	t.done = make(chan struct{})
	go func() {
		if t.state.CompareAndSwap(0, 1) {
			t.run()
			close(t.done)
		}
	}()
}

// take returns once the task has run, running it here unless a goroutine has claimed it.
func (t *sideTask) take() {
	switch {
	case t.state.CompareAndSwap(0, 2):
		t.run()
	case t.state.Load() == 1:
		<-t.done
	}
}

// drain returns once a goroutine that claimed the task is done with it; an unclaimed task is
// claimed, so that it never runs.
func (t *sideTask) drain() {
	if !t.state.CompareAndSwap(0, 2) && t.state.Load() == 1 {
		<-t.done
	}
}

// frontier is the first offset of partition p whose record has a timestamp at or after ts, or
// MaxInt64 when the log has none.
func frontier(ctx context.Context, src engine.Source, p int32, ts int64) (int64, error) {
	off, found, err := src.OffsetForTime(ctx, p, ts)
	if err != nil || !found {
		return math.MaxInt64, err
	}
	return off, nil
}

// setBounds records the source's bounds. A checkpoint above the log end is not trusted: the log
// was truncated below it and the builder has not dropped the index's part above the end yet
// (truncate.go), so nothing at or past the end is real and nothing is scanned.
func (lk *lookup) setBounds(b engine.Bounds, cp int64) {
	lk.bounds, lk.known = b, true
	lk.res.End = b.End
	if cp > b.End {
		lk.res.Indexed, lk.limit = b.End, b.End
	}
	lk.pend = lk.keep(lk.pend)
}

// keep drops, in place, the offsets no batch of the log holds any more: below its start (deleted
// by retention; a read would skip them) and at or past a truncated end.
func (lk *lookup) keep(offs []int64) []int64 {
	if !lk.known {
		return offs
	}
	return slices.DeleteFunc(offs, func(o int64) bool { return o < lk.bounds.Start || o >= lk.limit })
}

// add merges one bucket's offsets (ascending runs, which a value holds one of unless the builder
// re-indexed a part of the log) into the pending ones.
func (lk *lookup) add(offs []int64) error {
	if !slices.IsSorted(offs) {
		slices.Sort(offs)
	}
	offs = lk.keep(offs)
	if n := len(lk.res.Offsets); n > 0 {
		// Below what was handed over only the batch handed over last may come again.
		last := lk.res.Offsets[n-1]
		i := sort.Search(len(offs), func(i int) bool { return offs[i] > last })
		for _, o := range offs[:i] {
			if o != last {
				return fmt.Errorf("%w: offset %d after %d", errLogMoved, o, last)
			}
		}
		offs = offs[i:]
	}
	if len(offs) == 0 {
		return nil
	}
	if len(lk.pend) == 0 || offs[0] > lk.pend[len(lk.pend)-1] {
		lk.pend = appendDistinct(lk.pend, offs)
		return nil
	}
	// Buckets overlap by the timestamps' disorder: only the tail of pend at or above offs[0]
	// interleaves with them, and a merge of that tail replaces a sort of everything.
	i := sort.Search(len(lk.pend), func(i int) bool { return lk.pend[i] >= offs[0] })
	lk.scratch = append(lk.scratch[:0], lk.pend[i:]...)
	lk.pend = lk.pend[:i]
	a, b := lk.scratch, offs
	for len(a) > 0 && len(b) > 0 {
		var o int64
		if a[0] <= b[0] {
			o, a = a[0], a[1:]
		} else {
			o, b = b[0], b[1:]
		}
		if n := len(lk.pend); n == 0 || lk.pend[n-1] != o {
			lk.pend = append(lk.pend, o)
		}
	}
	lk.pend = appendDistinct(lk.pend, a)
	lk.pend = appendDistinct(lk.pend, b)
	return nil
}

// appendDistinct appends the ascending offs to the ascending dst, dropping repeats.
func appendDistinct(dst, offs []int64) []int64 {
	for _, o := range offs {
		if n := len(dst); n == 0 || dst[n-1] != o {
			dst = append(dst, o)
		}
	}
	return dst
}

// flush hands over the pending offsets below f.
func (lk *lookup) flush(f int64) error {
	k := sort.Search(len(lk.pend), func(i int) bool { return lk.pend[i] >= f })
	if k == 0 {
		return nil
	}
	n := len(lk.res.Offsets)
	lk.res.Offsets = append(lk.res.Offsets, lk.pend[:k]...)
	lk.pend = lk.pend[:copy(lk.pend, lk.pend[k:])]
	if lk.emit == nil {
		return nil
	}
	// A full slice expression: the chunk is the caller's while the answer grows.
	return lk.emit(lk.res.Offsets[n:len(lk.res.Offsets):len(lk.res.Offsets)])
}
