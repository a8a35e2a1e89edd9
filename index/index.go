package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/diskreserve"
	"github.com/replay/replay/index/pebblelog"
)

// ErrClosed is returned by every method of a closed Index.
var ErrClosed = errors.New("index: closed")

type meta struct {
	Version       int   `json:"version"`
	BucketWidthMs int64 `json:"bucket_width_ms"`
	// Partitions is the topic's partition count the index was built with; 0 (absent, an index
	// from before it was recorded) until the next build adopts the source's (partitions.go).
	Partitions int32 `json:"partitions,omitempty"`
	// Topics are the topics an index of several (engine.Topics) was built from, in order: the
	// position of a topic is its ordinal, its partitions being ordinal*P+p (engine.Partition).
	// Absent for an index of one topic, whatever its name (every index before several topics
	// were read): topic 0 of a list keeps its partition numbers.
	Topics []string `json:"topics,omitempty"`
}

// Index is the time-and-webhook index in one Pebble database. Its methods are safe for concurrent
// use; one builder per partition writes to it (see Build).
type Index struct {
	opts    Options
	db      *pebble.DB
	widthMs int64
	closed  atomic.Bool
	// plog is Pebble's logger: it records a Pebble fatal error, after which usable refuses
	// every call with it.
	plog *pebblelog.Logger
	// partLocks serialize a partition's commits with its retention, so that retention never
	// deletes a bucket a commit has just added to after retention read its summary.
	partLocks [64]sync.Mutex
	// partitions is the meta's partition count (0: not recorded yet); metaMu serializes its
	// recording.
	partitions atomic.Int32
	metaMu     sync.Mutex
	// topics is the meta's topic list (nil: one topic), recorded with the partition count.
	topics []string
}

// Open opens the index in opts.Dir, creating it unless ReadOnly.
func Open(opts Options) (*Index, error) {
	explicitWidth := opts.BucketWidth != 0
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("index: invalid options: %w", err)
	}
	plog := pebblelog.New(opts.Logger, "index")
	po := &pebble.Options{
		FS:               opts.FS,
		Merger:           merger,
		ReadOnly:         opts.ReadOnly,
		ErrorIfNotExists: opts.ReadOnly,
		Logger:           plog,
		// A rebuild writes every entry once, in big batches: a larger memtable means fewer
		// flushes of half-merged values and fewer L0 compactions competing with the decoding.
		MemTableSize: 64 << 20,
	}
	// Entries are written once and compacted into the bottom levels; zstd there keeps the index
	// small (the webhook ids and offsets compress poorly with snappy).
	po.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionGood })
	for i := range po.Levels {
		// Larger blocks with fewer restart points: zstd sees more of the similar keys at once.
		po.Levels[i].BlockSize = 32 << 10
		po.Levels[i].BlockRestartInterval = 64
	}
	db, err := pebble.Open(opts.Dir, po)
	if err != nil {
		return nil, fmt.Errorf("index: open %s: %w", opts.Dir, err)
	}
	ix := &Index{opts: opts, db: db, plog: plog}
	if err := ix.loadMeta(explicitWidth); err != nil {
		db.Close()
		return nil, err
	}
	return ix, nil
}

// usable is nil unless the index is closed (ErrClosed) or Pebble had a fatal error.
func (ix *Index) usable() error {
	if ix.closed.Load() {
		return ErrClosed
	}
	return ix.plog.Err()
}

func (ix *Index) loadMeta(explicitWidth bool) error {
	v, closer, err := ix.db.Get([]byte(keyMeta))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if ix.opts.ReadOnly {
			return fmt.Errorf("%w: %s has no index meta", ErrCorrupt, ix.opts.Dir)
		}
		m := meta{Version: 1, BucketWidthMs: ix.opts.BucketWidth.Milliseconds()}
		b, _ := json.Marshal(m)
		if err := ix.db.Set([]byte(keyMeta), b, pebble.Sync); err != nil {
			return err
		}
		ix.widthMs = m.BucketWidthMs
		return nil
	case err != nil:
		return err
	}
	defer closer.Close()
	var m meta
	if err := json.Unmarshal(v, &m); err != nil || m.Version != 1 || m.BucketWidthMs <= 0 || m.Partitions < 0 {
		return corruptf("meta %q", v)
	}
	if explicitWidth && m.BucketWidthMs != ix.opts.BucketWidth.Milliseconds() {
		return fmt.Errorf("index: %s was built with %v buckets, not %v", ix.opts.Dir, time.Duration(m.BucketWidthMs)*time.Millisecond, ix.opts.BucketWidth)
	}
	ix.widthMs = m.BucketWidthMs
	ix.opts.BucketWidth = time.Duration(m.BucketWidthMs) * time.Millisecond
	ix.partitions.Store(m.Partitions)
	ix.topics = m.Topics
	return nil
}

// Options are the options the index runs with, defaults filled in and BucketWidth as stored.
func (ix *Index) Options() Options { return ix.opts }

// Close closes the database. It is idempotent. After a Pebble fatal error it returns that error.
func (ix *Index) Close() (err error) {
	if ix.closed.Swap(true) {
		return nil
	}
	defer pebblelog.Recover(&err)
	return errors.Join(ix.plog.Err(), ix.db.Close())
}

// Bucket is the time bucket of a timestamp in ms. Timestamps before the epoch (Kafka's -1, no
// timestamp) fall in bucket 0.
func (ix *Index) Bucket(ts int64) uint32 {
	if ts <= 0 {
		return 0
	}
	b := ts / ix.widthMs
	if b > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(b)
}

// BucketTime is the first timestamp (ms) of bucket b.
func (ix *Index) BucketTime(b uint32) int64 { return int64(b) * ix.widthMs }

// Checkpoint is partition p's next offset to index, and whether the index has one.
func (ix *Index) Checkpoint(p int32) (_ int64, _ bool, err error) {
	defer pebblelog.Recover(&err)
	if err := ix.usable(); err != nil {
		return 0, false, err
	}
	v, closer, err := ix.db.Get(appendPartKey(nil, prefixCheckpoint, p))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, false, corruptf("checkpoint of partition %d: %x", p, v)
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// floor is the lowest bucket time retention kept in partition p (0: none dropped).
func (ix *Index) floor(p int32) (uint32, error) {
	v, closer, err := ix.db.Get(appendPartKey(nil, prefixFloor, p))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 4 {
		return 0, corruptf("retention floor of partition %d: %x", p, v)
	}
	return binary.BigEndian.Uint32(v), nil
}

// Result is what Lookup found.
type Result struct {
	Partition int32
	// Offsets are the base offsets of the batches that may hold the webhook's events in the
	// window, ascending and distinct: every batch that does is there; batches that only hold its
	// events in the window's edge buckets (or another key with the same WebhookID) may be too.
	// Offsets below the log's start (batches deleted since they were indexed) are not.
	Offsets []int64
	// Indexed is the partition's checkpoint at the lookup: offsets below it came from the index;
	// [Indexed, End) was scanned from the source (the never-stale suffix).
	Indexed int64
	// End is the partition's end offset when the suffix was scanned.
	End int64
	// Seeks is how many index seeks the lookup made (one per bucket), ScannedBatches how many
	// batches of the unindexed suffix it read.
	Seeks          int
	ScannedBatches int
}

// Lookup returns the partition of webhook (the record key) in src and the base offsets of the
// batches holding its events with from ≤ timestamp < to (ms). It never misses an event that is in
// the log: batches the builder has not indexed yet are scanned from src.
// A source whose partition count is not the index's is refused (*PartitionCountError). Of an
// engine.Topics it looks in the first topic; LookupPartition with engine.Partition reads another.
func (ix *Index) Lookup(ctx context.Context, src engine.Source, webhook []byte, from, to int64) (_ Result, err error) {
	defer pebblelog.Recover(&err)
	if err := ix.usable(); err != nil {
		return Result{}, err
	}
	n, err := ix.checkPartitions(ctx, src, false)
	if err != nil {
		return Result{}, err
	}
	n /= int32(engine.TopicsOf(src).Len())
	return ix.lookupPartition(ctx, src, engine.PartitionFor(webhook, n), webhook, from, to, nil)
}

// LookupPartition is Lookup in a given partition.
func (ix *Index) LookupPartition(ctx context.Context, src engine.Source, p int32, webhook []byte, from, to int64) (_ Result, err error) {
	defer pebblelog.Recover(&err)
	if err := ix.usable(); err != nil {
		return Result{}, err
	}
	if _, err := ix.checkPartitions(ctx, src, false); err != nil {
		return Result{Partition: p}, err
	}
	return ix.lookupPartition(ctx, src, p, webhook, from, to, nil)
}

// PartitionLag is how far the index is behind one partition of the log.
type PartitionLag struct {
	Partition int32
	// Topic and TopicPartition are the topic and its partition that Partition is (of an
	// engine.Topics source; else the source's topic and Partition).
	Topic          string
	TopicPartition int32
	Checkpoint     int64 // next offset to index (0 when never indexed)
	Start, End     int64 // the log's bounds
	// Lag is the offsets of the log not indexed yet: End - max(Checkpoint, Start). Lookups scan
	// them; they cost time, never correctness.
	Lag int64
}

// Lag reports, for every partition of src, how far the index is behind it.
func (ix *Index) Lag(ctx context.Context, src engine.Source) (_ []PartitionLag, err error) {
	defer pebblelog.Recover(&err)
	n, err := ix.checkPartitions(ctx, src, false)
	if err != nil {
		return nil, err
	}
	out := make([]PartitionLag, 0, n)
	ts := engine.TopicsOf(src)
	per := n / int32(ts.Len())
	for p := int32(0); p < n; p++ {
		ti, tp := engine.Split(p, per)
		cp, _, err := ix.Checkpoint(p)
		if err != nil {
			return nil, err
		}
		b, err := src.Bounds(ctx, p)
		if err != nil {
			return nil, err
		}
		out = append(out, PartitionLag{Partition: p, Topic: ts.Name(ti), TopicPartition: tp, Checkpoint: cp, Start: b.Start, End: b.End, Lag: max(0, b.End-max(cp, b.Start))})
	}
	return out, nil
}

// Entry is one key of the index: the batches of partition holding webhook's events whose
// timestamps fall in bucket.
type Entry struct {
	Partition int32
	Bucket    uint32
	Webhook   uint64
	Offsets   []int64
}

// Entries calls fn for each entry of partition p (all partitions when p < 0) in key order. The
// entry's Offsets are fn's to keep.
func (ix *Index) Entries(p int32, fn func(Entry) error) error {
	if err := ix.usable(); err != nil {
		return err
	}
	lo, hi := []byte{prefixEntry}, []byte{prefixEntry + 1}
	if p >= 0 {
		lo, hi = appendPartKey(nil, prefixEntry, p), partitionEnd(prefixEntry, p)
	}
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k, err := parseEntryKey(it.Key())
		if err != nil {
			return err
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		offs, err := decodeRuns(nil, v)
		if err != nil {
			return fmt.Errorf("entry %d/%d/%d: %w", k.partition, k.bucket, k.webhook, err)
		}
		if err := fn(Entry{Partition: k.partition, Bucket: k.bucket, Webhook: k.webhook, Offsets: offs}); err != nil {
			return err
		}
	}
	return it.Error()
}

// Check verifies the index's own invariants: every key is one the index writes, every value
// decodes, each entry's offsets ascend strictly and lie below its partition's checkpoint, each
// entry's bucket has a summary covering its largest offset, and no checkpoint or entry is of a
// partition beyond the recorded partition count. A violation is an ErrCorrupt.
func (ix *Index) Check() error {
	if err := ix.usable(); err != nil {
		return err
	}
	it, err := ix.db.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	checkpoints := map[int32]int64{}
	summaries := map[[2]uint32]int64{}
	// Keys sort 'c' < 'e' < 'm' < 'r' < 's': read checkpoints and summaries first.
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		switch {
		case len(k) == partKeyLen && k[0] == prefixCheckpoint:
			if len(v) != 8 {
				return corruptf("checkpoint %x = %x", k, v)
			}
			checkpoints[int32(binary.BigEndian.Uint32(k[1:]))] = int64(binary.BigEndian.Uint64(v))
		case len(k) == summaryKeyLen && k[0] == prefixSummary:
			x, n := binary.Uvarint(v)
			if n != len(v) {
				return corruptf("summary %x = %x", k, v)
			}
			summaries[[2]uint32{binary.BigEndian.Uint32(k[1:]), binary.BigEndian.Uint32(k[5:])}] = int64(x)
		case len(k) == partKeyLen && k[0] == prefixLastBatch:
			if len(v) != lastBatchLen {
				return corruptf("last batch %x = %x", k, v)
			}
		case len(k) == partKeyLen && k[0] == prefixFloor:
			if len(v) != 4 {
				return corruptf("retention floor %x = %x", k, v)
			}
		case string(k) == keyMeta, k[0] == prefixEntry:
		default:
			return corruptf("unknown key %x", k)
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	n := ix.partitions.Load()
	for p := range checkpoints {
		if n > 0 && (p < 0 || p >= n) {
			return corruptf("checkpoint of partition %d in an index of %d partitions", p, n)
		}
	}
	return ix.Entries(-1, func(e Entry) error {
		if n > 0 && (e.Partition < 0 || e.Partition >= n) {
			return corruptf("entry %d/%d/%d in an index of %d partitions", e.Partition, e.Bucket, e.Webhook, n)
		}
		for i := 1; i < len(e.Offsets); i++ {
			if e.Offsets[i] <= e.Offsets[i-1] {
				return corruptf("entry %d/%d/%d: offsets %d, %d not ascending", e.Partition, e.Bucket, e.Webhook, e.Offsets[i-1], e.Offsets[i])
			}
		}
		if len(e.Offsets) == 0 {
			return corruptf("entry %d/%d/%d has no offsets", e.Partition, e.Bucket, e.Webhook)
		}
		last := e.Offsets[len(e.Offsets)-1]
		if cp, ok := checkpoints[e.Partition]; !ok || last >= cp {
			return corruptf("entry %d/%d/%d: offset %d at or past the checkpoint %d", e.Partition, e.Bucket, e.Webhook, last, cp)
		}
		if s, ok := summaries[[2]uint32{uint32(e.Partition), e.Bucket}]; !ok || s < last {
			return corruptf("entry %d/%d/%d: offset %d not covered by its bucket's summary (%d, %v)", e.Partition, e.Bucket, e.Webhook, last, s, ok)
		}
		return nil
	})
}

// PartitionStats describe one partition's part of the index.
type PartitionStats struct {
	Partition     int32
	Checkpoint    int64
	HasCheckpoint bool
	Entries       int64 // keys
	Offsets       int64 // batch offsets in them
	Buckets       int64 // time buckets with entries
	// FirstBucket and LastBucket are the start times (ms) of the oldest and newest buckets.
	FirstBucket, LastBucket int64
}

// Stats describe the whole index.
type Stats struct {
	DiskBytes  uint64 // the database's files: tables, WAL, manifest
	TableBytes int64  // the live sstables alone: the index's settled size after Compact
	Entries    int64
	Offsets    int64
	KeyBytes   int64 // logical sizes of the entries' keys and values, before Pebble's encoding
	ValueBytes int64
	Partitions []PartitionStats // partitions with a checkpoint or entries, ascending
}

// Stats counts the index's entries by reading all of them.
func (ix *Index) Stats() (Stats, error) {
	if err := ix.usable(); err != nil {
		return Stats{}, err
	}
	var st Stats
	m := ix.db.Metrics()
	st.DiskBytes = m.DiskSpaceUsage()
	for i := range m.Levels {
		st.TableBytes += m.Levels[i].TablesSize
	}
	parts := map[int32]*PartitionStats{}
	get := func(p int32) *PartitionStats {
		if parts[p] == nil {
			parts[p] = &PartitionStats{Partition: p, FirstBucket: -1, LastBucket: -1}
		}
		return parts[p]
	}
	it, err := ix.db.NewIter(nil)
	if err != nil {
		return st, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		switch {
		case len(k) == partKeyLen && k[0] == prefixCheckpoint:
			v, err := it.ValueAndErr()
			if err != nil || len(v) != 8 {
				it.Close()
				return st, errors.Join(err, corruptf("checkpoint %x", k))
			}
			ps := get(int32(binary.BigEndian.Uint32(k[1:])))
			ps.Checkpoint, ps.HasCheckpoint = int64(binary.BigEndian.Uint64(v)), true
		case len(k) == summaryKeyLen && k[0] == prefixSummary:
			ps := get(int32(binary.BigEndian.Uint32(k[1:])))
			t := ix.BucketTime(binary.BigEndian.Uint32(k[5:]))
			ps.Buckets++
			if ps.FirstBucket < 0 {
				ps.FirstBucket = t
			}
			ps.LastBucket = t
		case len(k) == entryKeyLen && k[0] == prefixEntry:
			v, err := it.ValueAndErr()
			if err != nil {
				it.Close()
				return st, err
			}
			offs, err := decodeRuns(nil, v)
			if err != nil {
				it.Close()
				return st, err
			}
			ps := get(int32(binary.BigEndian.Uint32(k[1:])))
			ps.Entries++
			ps.Offsets += int64(len(offs))
			st.Entries++
			st.Offsets += int64(len(offs))
			st.KeyBytes += int64(len(k))
			st.ValueBytes += int64(len(v))
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return st, err
	}
	for _, ps := range parts {
		st.Partitions = append(st.Partitions, *ps)
	}
	slices.SortFunc(st.Partitions, func(a, b PartitionStats) int { return int(a.Partition) - int(b.Partition) })
	return st, nil
}

// Compact compacts the whole index, so that its size on disk is what it settles to (merge
// operands folded into one run per key, deleted ranges gone). Rebuild runs it before switching.
func (ix *Index) Compact(ctx context.Context) (err error) {
	defer pebblelog.Recover(&err)
	if err := ix.usable(); err != nil {
		return err
	}
	if err := ix.db.Flush(); err != nil {
		return err
	}
	return ix.db.Compact(ctx, []byte{0}, []byte{0xff}, true)
}

// EnforceRetention drops, in every partition of src, the buckets that ended more than Retention
// ago and the oldest buckets whose every offset is below the log start (deleted from the log),
// each partition with one DeleteRange per key kind. It returns how many buckets it dropped.
func (ix *Index) EnforceRetention(ctx context.Context, src engine.Source) (_ int, err error) {
	defer pebblelog.Recover(&err)
	if err := ix.usable(); err != nil {
		return 0, err
	}
	n, err := ix.checkPartitions(ctx, src, false)
	if err != nil {
		return 0, err
	}
	var timeCut uint32
	if ix.opts.Retention >= 0 {
		timeCut = ix.Bucket(ix.opts.Now().Add(-ix.opts.Retention).UnixMilli())
	}
	total := 0
	for p := int32(0); p < n; p++ {
		b, err := src.Bounds(ctx, p)
		if err != nil {
			return total, err
		}
		d, err := ix.dropPartition(p, timeCut, b.Start)
		total += d
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// dropPartition deletes partition p's buckets below timeCut, and the buckets from the oldest on
// whose largest offset is below logStart.
func (ix *Index) dropPartition(p int32, timeCut uint32, logStart int64) (int, error) {
	mu := &ix.partLocks[uint32(p)%uint32(len(ix.partLocks))]
	mu.Lock()
	defer mu.Unlock()
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: appendPartKey(nil, prefixSummary, p), UpperBound: partitionEnd(prefixSummary, p)})
	if err != nil {
		return 0, err
	}
	cut := timeCut
	dropped := 0
	for ok := it.First(); ok; ok = it.Next() {
		b := binary.BigEndian.Uint32(it.Key()[5:])
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return 0, err
		}
		hi, k := binary.Uvarint(v)
		if k <= 0 {
			it.Close()
			return 0, corruptf("summary %x = %x", it.Key(), v)
		}
		if b < timeCut || int64(hi) < logStart {
			dropped++
			cut = max(cut, b+1)
			continue
		}
		break
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, err
	}
	floor, err := ix.floor(p)
	if err != nil {
		return 0, err
	}
	if cut == 0 || (dropped == 0 && timeCut <= floor) {
		return 0, nil
	}
	batch := ix.db.NewBatch()
	defer batch.Close()
	if err := batch.DeleteRange(bucketStart(prefixEntry, p, 0), bucketStart(prefixEntry, p, cut), nil); err != nil {
		return 0, err
	}
	if err := batch.DeleteRange(bucketStart(prefixSummary, p, 0), bucketStart(prefixSummary, p, cut), nil); err != nil {
		return 0, err
	}
	if timeCut > floor {
		if err := batch.Set(appendPartKey(nil, prefixFloor, p), binary.BigEndian.AppendUint32(nil, timeCut), nil); err != nil {
			return 0, err
		}
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return 0, err
	}
	if dropped > 0 {
		ix.opts.Logger.Info("index: retention dropped buckets", "partition", p, "buckets", dropped, "below", time.UnixMilli(ix.BucketTime(cut)).UTC())
	}
	return dropped, nil
}

// ImportPartitions copies every key of the partitions keep selects (entries, summaries,
// checkpoints, retention floors) from src into ix, as they are. A partial rebuild uses it to carry
// the partitions it did not rebuild over from the live index. Both must have the same bucket
// width. It returns how many keys it copied.
func (ix *Index) ImportPartitions(src *Index, keep func(p int32) bool) (_ int, err error) {
	defer pebblelog.Recover(&err)
	if err := ix.usable(); err != nil {
		return 0, err
	}
	if err := src.usable(); err != nil {
		return 0, err
	}
	if ix.widthMs != src.widthMs {
		return 0, fmt.Errorf("index: cannot import %v buckets into an index of %v buckets", src.opts.BucketWidth, ix.opts.BucketWidth)
	}
	if a, b := ix.partitions.Load(), src.partitions.Load(); a != 0 && b != 0 && a != b {
		return 0, fmt.Errorf("%w: cannot import partitions of %s (built with %d partitions) into %s (built with %d)", ErrPartitionCount, src.opts.Dir, b, ix.opts.Dir, a)
	}
	if a, b := ix.Topics(), src.Topics(); ix.partitions.Load() != 0 && src.partitions.Load() != 0 && !slices.Equal(a, b) {
		return 0, fmt.Errorf("%w: cannot import partitions of %s (built from topics %v) into %s (built from %v)", ErrTopics, src.opts.Dir, b, ix.opts.Dir, a)
	}
	it, err := src.db.NewIter(nil)
	if err != nil {
		return 0, err
	}
	defer it.Close()
	n := 0
	batch := ix.db.NewBatch()
	defer func() { batch.Close() }()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) < partKeyLen || !bytes.ContainsRune([]byte{prefixCheckpoint, prefixEntry, prefixFloor, prefixSummary, prefixLastBatch}, rune(k[0])) {
			continue
		}
		if !keep(int32(binary.BigEndian.Uint32(k[1:]))) {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return n, err
		}
		if err := batch.Set(k, v, nil); err != nil {
			return n, err
		}
		n++
		if batch.Len() > 4<<20 {
			if err := diskreserve.Check(ix.opts.FS, ix.opts.Dir, ix.opts.DiskReserve); err != nil {
				return n, err
			}
			if err := batch.Commit(pebble.NoSync); err != nil {
				return n, err
			}
			batch.Close()
			batch = ix.db.NewBatch()
		}
	}
	if err := it.Error(); err != nil {
		return n, err
	}
	if err := diskreserve.Check(ix.opts.FS, ix.opts.Dir, ix.opts.DiskReserve); err != nil {
		return n, err
	}
	return n, batch.Commit(pebble.Sync)
}
