package index

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/replay/replay/index/pebblelog"
)

// TruncateStats say what a truncation of a partition's part of the index dropped.
type TruncateStats struct {
	Partition int32
	// From is the checkpoint before, To the log end offset it was moved back to.
	From, To int64
	// Buckets are the buckets whose summary reached To: the only ones that can hold offsets at
	// or past it, and the only ones read. Entries is how many of their entries were rewritten
	// (Deleted of them: every offset was at or past To); Offsets how many offsets were dropped.
	Buckets, Entries, Deleted, Offsets int
}

// TruncatePartition drops what the index holds of partition p at or past end, the partition's
// log end offset after the log was truncated below the index's checkpoint (Kafka truncates a
// follower's log after an unclean leader election; the embedded log cuts a torn tail on
// recovery): entry offsets ≥ end, bucket summaries above end (lowered to the largest offset left,
// or deleted), and the checkpoint moved back to end, in one synced batch. Offsets below end are
// kept: a truncated log keeps its prefix. Only the buckets whose summary is ≥ end are read and
// rewritten. A checkpoint at or below end is left alone (zero stats). It excludes the partition's
// commits and retention; the builder calls it when it sees the log end below where it is, after
// dropping what it had pending, and then indexes from end whatever is appended there.
func (ix *Index) TruncatePartition(p int32, end int64) (_ TruncateStats, err error) {
	defer pebblelog.Recover(&err)
	st := TruncateStats{Partition: p, To: end}
	if err := ix.usable(); err != nil {
		return st, err
	}
	if ix.opts.ReadOnly {
		return st, errors.New("index: opened read-only")
	}
	if end < 0 {
		return st, fmt.Errorf("index: truncate partition %d to offset %d: negative", p, end)
	}
	mu := &ix.partLocks[uint32(p)%uint32(len(ix.partLocks))]
	mu.Lock()
	defer mu.Unlock()
	cp, ok, err := ix.Checkpoint(p)
	if err != nil || !ok || cp <= end {
		st.From = cp
		return st, err
	}
	st.From = cp
	// The buckets that can hold offsets ≥ end: their summary (largest offset) says so. Out of
	// order timestamps put late offsets into old buckets, so every summary is read (one small key
	// per bucket), but only these buckets' entries.
	var buckets []uint32
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: appendPartKey(nil, prefixSummary, p), UpperBound: partitionEnd(prefixSummary, p)})
	if err != nil {
		return st, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return st, err
		}
		hi, k := binary.Uvarint(v)
		if k <= 0 || k != len(v) || len(it.Key()) != summaryKeyLen {
			it.Close()
			return st, corruptf("summary %x = %x", it.Key(), v)
		}
		if int64(hi) >= end {
			buckets = append(buckets, binary.BigEndian.Uint32(it.Key()[5:]))
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return st, err
	}
	st.Buckets = len(buckets)
	batch := ix.db.NewBatch()
	defer batch.Close()
	var offs []int64
	for _, b := range buckets {
		lo := bucketStart(prefixEntry, p, b)
		hi := bucketStart(prefixEntry, p, b+1)
		if b == 1<<32-1 {
			hi = partitionEnd(prefixEntry, p)
		}
		it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return st, err
		}
		newHi := int64(-1)
		for ok := it.First(); ok; ok = it.Next() {
			v, err := it.ValueAndErr()
			if err == nil {
				offs, err = decodeRuns(offs[:0], v)
			}
			if err != nil {
				it.Close()
				return st, fmt.Errorf("index: truncate partition %d: entry %x: %w", p, it.Key(), err)
			}
			keep := 0
			for keep < len(offs) && offs[keep] < end {
				keep++
			}
			if keep == len(offs) {
				newHi = max(newHi, offs[len(offs)-1])
				continue
			}
			st.Entries++
			st.Offsets += len(offs) - keep
			if keep == 0 {
				st.Deleted++
				err = batch.Delete(it.Key(), nil)
			} else {
				newHi = max(newHi, offs[keep-1])
				err = batch.Set(it.Key(), appendRun(nil, offs[:keep]), nil)
			}
			if err != nil {
				it.Close()
				return st, err
			}
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return st, err
		}
		if newHi < 0 {
			err = batch.Delete(summaryKey(nil, p, b), nil)
		} else {
			err = batch.Set(summaryKey(nil, p, b), binary.AppendUvarint(nil, uint64(newHi)), nil)
		}
		if err != nil {
			return st, err
		}
	}
	if err := batch.Set(appendPartKey(nil, prefixCheckpoint, p), binary.BigEndian.AppendUint64(nil, uint64(end)), nil); err != nil {
		return st, err
	}
	// The batch below end is not known without reading the log: the next commit records one.
	if err := batch.Delete(appendPartKey(nil, prefixLastBatch, p), nil); err != nil {
		return st, err
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return st, err
	}
	ix.opts.Logger.Warn("index: the log was truncated below the checkpoint: dropped the index above its end",
		"dir", ix.opts.Dir, "partition", p, "checkpoint", cp, "log_end", end,
		"buckets", st.Buckets, "entries_rewritten", st.Entries, "entries_deleted", st.Deleted, "offsets_dropped", st.Offsets)
	return st, nil
}

const lastBatchLen = 8 + 4

// lastBatch is the identity (base offset, CRC) of the last batch the builder indexed below
// partition p's checkpoint, recorded with every commit: the builder compares it with the log's
// batch at that offset before going on, so a log truncated and refilled past the checkpoint
// between two looks (its end never seen below the checkpoint) is noticed too.
func (ix *Index) lastBatch(p int32) (base int64, crc uint32, ok bool, err error) {
	v, closer, err := ix.db.Get(appendPartKey(nil, prefixLastBatch, p))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	defer closer.Close()
	if len(v) != lastBatchLen {
		return 0, 0, false, corruptf("last batch of partition %d: %x", p, v)
	}
	return int64(binary.BigEndian.Uint64(v)), binary.BigEndian.Uint32(v[8:]), true, nil
}

func lastBatchValue(base int64, crc uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, uint64(base)), crc)
}
