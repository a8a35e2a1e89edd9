package index

import (
	"encoding/binary"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// pending is what a partition's builder has indexed and not committed yet: per time bucket, each
// webhook's batch offsets (ascending) and the bucket's largest offset.
//
// It is shaped by what a rebuild costs (profiled: a map keyed by (bucket, webhook) and one for
// the summaries took 13% of a rebuild's CPU, as much as everything it adds to the scan): a record
// looks up its bucket among the few a commit spans (the last one first: neighbours share it),
// then its webhook in that bucket's map with a uint64 key (the runtime's fast path), and appends
// to a list found by index, so the map is written once per key and commit. Buckets, maps and
// lists are kept across commits, so a builder in its steady state does not allocate.
type pending struct {
	active []*bucketPending // the buckets with entries, in no order
	free   []*bucketPending // emptied ones, for reuse
	cur    *bucketPending   // the bucket of the last record
	keys   []uint64         // a commit's sorted webhooks of one bucket
}

type bucketPending struct {
	bucket uint32
	hi     int64            // the largest offset pending in the bucket
	slot   map[uint64]int32 // webhook → its index in lists
	lists  [][]int64        // the webhooks' offsets; lists[len:cap] are old lists to reuse
	n      int32            // lists in use
}

func (pd *pending) empty() bool { return len(pd.active) == 0 }

func (pd *pending) add(bucket uint32, webhook uint64, offset int64) {
	b := pd.cur
	if b == nil || b.bucket != bucket {
		b = pd.bucketOf(bucket)
		pd.cur = b
	}
	i, ok := b.slot[webhook]
	if !ok {
		i = b.n
		b.n++
		b.slot[webhook] = i
		if int(i) < len(b.lists) {
			b.lists[i] = b.lists[i][:0]
		} else {
			b.lists = append(b.lists, make([]int64, 0, 4))
		}
	}
	l := b.lists[i]
	if n := len(l); n > 0 && l[n-1] == offset {
		return // another record of the webhook in the same batch and bucket
	}
	b.lists[i] = append(l, offset)
	b.hi = max(b.hi, offset)
}

func (pd *pending) bucketOf(bucket uint32) *bucketPending {
	for _, b := range pd.active {
		if b.bucket == bucket {
			return b
		}
	}
	var b *bucketPending
	if n := len(pd.free); n > 0 {
		b, pd.free = pd.free[n-1], pd.free[:n-1]
	} else {
		b = &bucketPending{slot: map[uint64]int32{}}
	}
	b.bucket, b.hi, b.n = bucket, -1, 0
	pd.active = append(pd.active, b)
	return b
}

// write adds one Merge per pending key, in key order, and the buckets' summaries to batch; buf
// is scratch for the values, returned for reuse.
func (pd *pending) write(batch *pebble.Batch, p int32, buf []byte) ([]byte, error) {
	slices.SortFunc(pd.active, func(a, b *bucketPending) int { return cmpU(uint64(a.bucket), uint64(b.bucket)) })
	key := make([]byte, 0, entryKeyLen)
	for _, b := range pd.active {
		pd.keys = pd.keys[:0]
		for wh := range b.slot {
			pd.keys = append(pd.keys, wh)
		}
		slices.Sort(pd.keys)
		for _, wh := range pd.keys {
			key = entryKey(key[:0], p, b.bucket, wh)
			buf = appendRun(buf[:0], b.lists[b.slot[wh]])
			if err := batch.Merge(key, buf, nil); err != nil {
				return buf, err
			}
		}
		if err := batch.Merge(summaryKey(key[:0], p, b.bucket), binary.AppendUvarint(buf[:0], uint64(b.hi)), nil); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// reset empties pd, keeping its storage.
func (pd *pending) reset() {
	for _, b := range pd.active {
		clear(b.slot)
		b.n = 0
		pd.free = append(pd.free, b)
	}
	pd.active = pd.active[:0]
	pd.cur = nil
}
