package index

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/diskreserve"
	"github.com/replay/replay/index/pebblelog"
	"github.com/replay/replay/segment"
)

// BuildOptions say what Build indexes and how.
type BuildOptions struct {
	// Partitions are the partitions to index. Default (nil): all of the source's.
	Partitions []int32
	// Parallelism is how many partitions are indexed at once when not following. Default
	// GOMAXPROCS. A following build runs one tailing goroutine per partition (they mostly wait).
	Parallelism int
	// Follow keeps tailing the log after catching up, until ctx is done; Build then returns
	// ctx's error. Without it Build returns when every partition is indexed up to the end offset
	// it saw when it last looked.
	Follow bool
	// RetentionInterval is how often a following Build runs EnforceRetention. Default 1 minute;
	// negative never.
	RetentionInterval time.Duration
	// Progress, if set, is called after every commit and when a partition catches up, from one
	// goroutine of the partition at a time (its aggregating one, for a commit during a scan).
	Progress func(Progress)
}

// Progress is a partition's build progress.
type Progress struct {
	Partition int32
	// From is the offset this build started at; Checkpoint is the next offset to index, as
	// committed; End is the log's end offset the last time the builder looked.
	From, Checkpoint, End int64
	// Records and Bytes are the records and batch bytes this build has indexed (committed).
	Records, Bytes int64
	// CaughtUp says Checkpoint reached End.
	CaughtUp bool
}

// Build indexes the partitions of src from their checkpoints: each partition's records are read
// in offset order, aggregated in memory, and committed every CommitRecords records (or
// CommitInterval) with the partition's new checkpoint in one synced Pebble batch, so that a crash
// at any moment leaves every batch below the checkpoint indexed exactly once and nothing above.
func (ix *Index) Build(ctx context.Context, src engine.Source, o BuildOptions) error {
	if err := ix.usable(); err != nil {
		return err
	}
	if ix.opts.ReadOnly {
		return errors.New("index: opened read-only")
	}
	n, err := ix.checkPartitions(ctx, src, true)
	if err != nil {
		return err
	}
	parts := o.Partitions
	if parts == nil {
		for p := int32(0); p < n; p++ {
			parts = append(parts, p)
		}
	}
	par := o.Parallelism
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}
	if o.Follow {
		par = len(parts)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, max(par, 1))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			if err := ix.BuildPartition(ctx, src, p, o.Follow, o.Progress); err != nil {
				errs[i] = fmt.Errorf("index: partition %d: %w", p, err)
				cancel()
			}
		}()
	}
	if o.Follow && o.RetentionInterval >= 0 {
		every := o.RetentionInterval
		if every == 0 {
			every = time.Minute
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if _, err := ix.EnforceRetention(ctx, src); err != nil && ctx.Err() == nil {
						ix.opts.Logger.Error("index: retention", "err", err)
					}
				}
			}
		}()
	}
	wg.Wait()
	// A partition's own error beats the cancellations it caused in the others.
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

type pendKey struct {
	bucket  uint32
	webhook uint64
}

// partBuilder indexes one partition.
type partBuilder struct {
	ix       *Index
	p        int32
	progress func(Progress)
	pend     pending
	records  int   // pending
	next     int64 // next offset to index: the checkpoint once committed
	prog     Progress
	pendRecs int64
	pendByte int64
	lastSync time.Time
	buf      []byte
	// last is the last batch scanned (below next), haveLast whether it is known; the next scan
	// starts at it and checks that the log still holds it (see lastBatch).
	lastBase int64
	lastCRC  uint32
	haveLast bool
	decoders int // goroutines decoding the partition's batches in scan
}

// BuildPartition indexes partition p of src from its checkpoint to the end offset (and on, if
// follow, until ctx is done). One builder per partition may run at a time.
func (ix *Index) BuildPartition(ctx context.Context, src engine.Source, p int32, follow bool, progress func(Progress)) (err error) {
	defer pebblelog.Recover(&err)
	if err := ix.usable(); err != nil {
		return err
	}
	if ix.opts.ReadOnly {
		return errors.New("index: opened read-only")
	}
	if _, err := ix.checkPartitions(ctx, src, true); err != nil {
		return err
	}
	cp, _, err := ix.Checkpoint(p)
	if err != nil {
		return err
	}
	pb := &partBuilder{ix: ix, p: p, progress: progress, next: cp, lastSync: time.Now(), decoders: 1}
	if !follow {
		// A following build runs a goroutine per partition, which together use the cores and
		// mostly wait; a one-off build of a partition spreads it over them (see scan).
		pb.decoders = min(runtime.GOMAXPROCS(0), maxDecoders)
	}
	if pb.lastBase, pb.lastCRC, pb.haveLast, err = ix.lastBatch(p); err != nil {
		return err
	}
	pb.haveLast = pb.haveLast && pb.lastBase < cp
	pb.prog = Progress{Partition: p, From: cp, Checkpoint: cp}
	first := true
	for {
		b, err := src.Bounds(ctx, p)
		if err != nil {
			return err
		}
		if b.End < pb.next {
			// The log was truncated below where the builder is (truncate.go).
			if err := pb.truncated(b.End); err != nil {
				return err
			}
		}
		if pb.next < b.Start {
			pb.next = b.Start // deleted from the log before it was indexed
		}
		if first {
			pb.prog.From, first = pb.next, false
		}
		pb.prog.End = b.End
		if pb.next < b.End {
			from, check := pb.next, pb.haveLast && pb.lastBase >= b.Start
			if check {
				from = pb.lastBase
			}
			err := pb.scan(ctx, src, from, check)
			var de *divergedError
			if errors.As(err, &de) {
				// The log no longer holds the batch indexed last: it was truncated and
				// refilled past it between two looks, at an offset that cannot be known
				// from here. Index the partition again from the log start.
				ix.opts.Logger.Warn("index: the log's batch at the last indexed offset changed: the log was truncated and rewritten; indexing the partition again",
					"partition", p, "offset", pb.lastBase, "crc", pb.lastCRC, "found_base", de.base, "found_next", de.next, "found_crc", de.crc)
				if err := pb.truncated(b.Start); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				// A log truncated under the scan (its files cut while read) fails the scan;
				// the next look at its end drops what is gone and goes on.
				if nb, berr := src.Bounds(ctx, p); berr == nil && ctx.Err() == nil && nb.End < b.End {
					ix.opts.Logger.Warn("index: the log shrank during a scan", "partition", p, "end", b.End, "now", nb.End, "err", err)
					continue
				}
				return err
			}
		}
		if !follow {
			break
		}
		if pb.next > pb.prog.Checkpoint {
			// Caught up: wait for more before committing, but no longer than CommitInterval.
			wait := ix.opts.CommitInterval - time.Since(pb.lastSync)
			if wait > 0 && pb.records < ix.opts.CommitRecords {
				wctx, cancel := context.WithTimeout(ctx, wait)
				_, err := src.WaitForEnd(wctx, p, pb.next)
				cancel()
				if err == nil || (errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
					continue
				}
				if ctx.Err() != nil {
					return errors.Join(ctx.Err(), pb.commit())
				}
				return err
			}
			if err := pb.commit(); err != nil {
				return err
			}
		}
		pb.prog.CaughtUp = pb.prog.Checkpoint >= pb.prog.End
		if pb.progress != nil {
			pb.progress(pb.prog)
		}
		// Waits are bounded, so that a log truncated while the builder waits is noticed even
		// when it never grows past the builder again.
		wctx, cancel := context.WithTimeout(ctx, idleRecheck)
		_, err = src.WaitForEnd(wctx, p, pb.next)
		cancel()
		if err != nil && !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
			return err
		}
	}
	if err := pb.commit(); err != nil {
		return err
	}
	pb.prog.CaughtUp = true
	if pb.progress != nil {
		pb.progress(pb.prog)
	}
	return nil
}

// scanned is a run of consecutive batches on their way through a partition's build: copies of
// them in one buffer (the scanner's bytes are only valid during its callback), then, once
// decoded, each data record's bucket and webhook or the error that decoding one met. Batches
// travel in runs, not one by one, because a batch of the Java producer's 16 KiB decodes in a few
// microseconds and handing it over (channel operations, wake-ups of the decoding and aggregating
// goroutines) cost a fair part of that: profiled, the hand-off of single batches was 3% of a
// rebuild's CPU and the runtime's scheduling as much again.
type scanned struct {
	batches []segment.Batch // Raw in raw
	raw     []byte
	spans   []int // batch i's bytes are raw[spans[i]:spans[i+1]], once sealed
	// records are the batches' records, distinct within each batch: batch i's are
	// records[ends[i-1]:ends[i]] (from 0 for the first); counts[i] is its data records.
	records []scannedRecord
	ends    []int
	counts  []int
	// err is what decoding batch len(ends) met (or the build's end); the batches before it
	// decoded fine.
	err  error
	done chan struct{} // a token once decoded
}

type scannedRecord struct {
	bucket  uint32
	webhook uint64
}

// scanDepthPerDecoder is how many runs of scanned batches a partition's build may hold at once,
// per decoding goroutine; maxDecoders bounds those goroutines per partition (and with them what a
// build holds in memory: a run's copied batches per slot, a decompression buffer per decoder).
// A run is sealed once it holds runBytes of batches or runBatches of them (or the scan ends),
// whichever comes first: about 24 of the 16 KiB batches' snappy blocks, a few hundred
// microseconds of decoding, and one batch alone when batches are large.
const (
	scanDepthPerDecoder = 2
	maxDecoders         = 8
	runBytes            = 128 << 10
	runBatches          = 64
)

// add copies bt to the end of the run.
func (s *scanned) add(bt *segment.Batch) {
	if len(s.batches) == 0 {
		s.raw, s.spans = s.raw[:0], append(s.spans[:0], 0)
	}
	s.raw = append(s.raw, bt.Raw...)
	s.spans = append(s.spans, len(s.raw))
	b := *bt
	b.Raw = nil // set by seal: raw may still move as it grows
	s.batches = append(s.batches, b)
}

// full says the run should be handed over.
func (s *scanned) full() bool { return len(s.raw) >= runBytes || len(s.batches) >= runBatches }

// seal points each batch at its bytes, now that raw no longer grows.
func (s *scanned) seal() {
	for i := range s.batches {
		s.batches[i].Raw = s.raw[s.spans[i]:s.spans[i+1]:s.spans[i+1]]
	}
}

// decode decodes the run's batches until the first error.
func (s *scanned) decode(ctx context.Context, ix *Index, rr *segment.RecordReader) {
	s.records, s.ends, s.counts = s.records[:0], s.ends[:0], s.counts[:0]
	if s.err = ctx.Err(); s.err != nil {
		return
	}
	for i := range s.batches {
		b := &s.batches[i]
		first, count := len(s.records), 0
		if !b.IsControl() {
			if s.err = rr.Reset(b); s.err == nil {
				// Only keys and timestamps are indexed: NextKey skips the values and
				// headers (the batch's CRC and the records' framing are still checked).
				for rr.NextKey() {
					r := rr.Record()
					count++
					k := scannedRecord{ix.Bucket(r.Timestamp), WebhookID(r.Key)}
					// A batch's records of one webhook in one bucket are one entry: dropping
					// the repeats here, on the decoders' cores, spares the aggregator their
					// lookups. The last few entries catch a busy webhook's.
					if !slices.Contains(s.records[max(first, len(s.records)-4):], k) {
						s.records = append(s.records, k)
					}
				}
				s.err = rr.Err()
			}
			if s.err != nil {
				return
			}
		}
		s.ends, s.counts = append(s.ends, len(s.records)), append(s.counts, count)
	}
}

// scan indexes partition p of src from offset from (the last indexed batch, checked first when
// check) to the end offset. This goroutine reads the batches and copies them, in runs; pb.decoders
// others decode the runs (decompression, CRCs, records: the bulk of a rebuild's work) in any
// order, and one more aggregates them in log order and commits. A plain scan decodes a partition
// on one core, so a rebuild of a partition larger than the others used to be bound by that one
// core (plus its aggregation and commits) while the others idled; now every partition's work
// spreads over all of them. It returns once every batch it read is aggregated (and committed
// when due), with the first error in log order.
func (pb *partBuilder) scan(ctx context.Context, src engine.Source, from int64, check bool) error {
	ix := pb.ix
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The scanning goroutine's view of where the builder is; pb is the aggregator's alone from
	// here until it is done.
	next, lastBase, lastCRC := pb.next, pb.lastBase, pb.lastCRC
	decoders := pb.decoders
	depth := scanDepthPerDecoder*decoders + 2
	decode := make(chan *scanned, depth)
	order := make(chan *scanned, depth) // the same runs, in log order
	free := make(chan *scanned, depth+2)
	var wg sync.WaitGroup
	for range decoders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rr segment.RecordReader
			for s := range decode {
				s.decode(ctx, ix, &rr)
				s.done <- struct{}{}
			}
		}()
	}
	aggregated := make(chan error, 1)
	go func() {
		var err error
		for s := range order {
			<-s.done
			if err == nil {
				err = pb.applyRun(s)
				if err != nil {
					cancel() // the scan stops at its next batch
				}
			}
			s.batches = s.batches[:0]
			select {
			case free <- s:
			default:
			}
		}
		aggregated <- err
	}()
	// hand seals the run and passes it to the aggregator and the decoders.
	hand := func(s *scanned) error {
		s.seal()
		// order first: the aggregator waits for each run's decoding in log order.
		for _, c := range []chan *scanned{order, decode} {
			select {
			case c <- s:
			case <-ctx.Done():
				if c == decode {
					s.ends, s.err = s.ends[:0], ctx.Err()
					s.done <- struct{}{}
				}
				return ctx.Err()
			}
		}
		return nil
	}
	var run *scanned
	serr := src.Scan(ctx, pb.p, from, func(bt *segment.Batch) error {
		if check {
			check = false
			if bt.BaseOffset != lastBase || bt.CRC != lastCRC || bt.NextOffset() != next {
				return &divergedError{base: bt.BaseOffset, next: bt.NextOffset(), crc: bt.CRC}
			}
		}
		if bt.NextOffset() <= next {
			return nil
		}
		if run == nil {
			select {
			case run = <-free:
			default:
				run = &scanned{done: make(chan struct{}, 1)}
			}
		}
		run.add(bt)
		next = bt.NextOffset()
		if !run.full() {
			return nil
		}
		s := run
		run = nil
		return hand(s)
	})
	// What the scan read before it ended (at the log's end, or with an error) is indexed too,
	// unless the build is being stopped.
	if run != nil && ctx.Err() == nil {
		if err := hand(run); err != nil && serr == nil {
			serr = err
		}
	}
	close(decode)
	close(order)
	wg.Wait()
	if err := <-aggregated; err != nil {
		return err // the scan's error is then only the cancellation
	}
	return serr
}

// applyRun aggregates a decoded run's batches in log order, up to the one its decoding failed
// at, and then returns that error.
func (pb *partBuilder) applyRun(s *scanned) error {
	first := 0
	for i, end := range s.ends {
		if err := pb.apply(&s.batches[i], s.records[first:end], s.counts[i]); err != nil {
			return err
		}
		first = end
	}
	return s.err
}

// apply aggregates one decoded batch and commits when CommitRecords or CommitInterval say so.
func (pb *partBuilder) apply(b *segment.Batch, records []scannedRecord, count int) error {
	pb.prog.End = max(pb.prog.End, b.NextOffset())
	pb.records += count
	pb.pendRecs += int64(count)
	for _, r := range records {
		pb.pend.add(r.bucket, r.webhook, b.BaseOffset)
	}
	pb.next = b.NextOffset()
	pb.lastBase, pb.lastCRC, pb.haveLast = b.BaseOffset, b.CRC, true
	pb.pendByte += b.Size()
	if pb.records >= pb.ix.opts.CommitRecords || time.Since(pb.lastSync) >= pb.ix.opts.CommitInterval {
		return pb.commit()
	}
	return nil
}

// idleRecheck is how long a caught-up following builder waits for the log to grow before it
// looks at the log's bounds again.
const idleRecheck = 5 * time.Second

// truncated handles a log end below the builder's next offset: what is pending is dropped (it
// may hold offsets at or past the end), the index's part at or past the end too (when the
// checkpoint is past it), and indexing goes on from the end, or from the checkpoint when that is
// lower.
func (pb *partBuilder) truncated(end int64) error {
	pb.pend.reset()
	pb.records, pb.pendRecs, pb.pendByte = 0, 0, 0
	if _, err := pb.ix.TruncatePartition(pb.p, end); err != nil {
		return fmt.Errorf("dropping the index above the truncated log's end %d: %w", end, err)
	}
	pb.prog.Checkpoint = min(pb.prog.Checkpoint, end)
	pb.next = pb.prog.Checkpoint
	pb.prog.End = end
	pb.haveLast = false
	return nil
}

// divergedError is the batch the log holds where the builder's last indexed batch was.
type divergedError struct {
	base, next int64
	crc        uint32
}

func (e *divergedError) Error() string {
	return fmt.Sprintf("index: the log's batch at the last indexed offset is now [%d, %d) crc %08x", e.base, e.next, e.crc)
}

// commit writes the pending entries, the bucket summaries and the checkpoint in one synced batch.
func (pb *partBuilder) commit() error {
	if pb.next == pb.prog.Checkpoint && pb.pend.empty() {
		return nil
	}
	ix := pb.ix
	mu := &ix.partLocks[uint32(pb.p)%uint32(len(ix.partLocks))]
	mu.Lock()
	defer mu.Unlock()
	batch := ix.db.NewBatch()
	defer batch.Close()
	var err error
	if pb.buf, err = pb.pend.write(batch, pb.p, pb.buf); err != nil {
		return err
	}
	if err := batch.Set(appendPartKey(nil, prefixCheckpoint, pb.p), binary.BigEndian.AppendUint64(nil, uint64(pb.next)), nil); err != nil {
		return err
	}
	if pb.haveLast {
		if err := batch.Set(appendPartKey(nil, prefixLastBatch, pb.p), lastBatchValue(pb.lastBase, pb.lastCRC), nil); err != nil {
			return err
		}
	}
	if err := ix.usable(); err != nil {
		return err
	}
	if err := diskreserve.Check(ix.opts.FS, ix.opts.Dir, ix.opts.DiskReserve); err != nil {
		return err
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return err
	}
	pb.pend.reset()
	pb.records = 0
	pb.prog.Checkpoint = pb.next
	pb.prog.Records += pb.pendRecs
	pb.prog.Bytes += pb.pendByte
	pb.pendRecs, pb.pendByte = 0, 0
	pb.lastSync = time.Now()
	pb.prog.CaughtUp = pb.prog.Checkpoint >= pb.prog.End
	if pb.progress != nil {
		pb.progress(pb.prog)
	}
	return nil
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
