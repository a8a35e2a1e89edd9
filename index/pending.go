package index

import (
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// pending is what a partition's builder has indexed and not committed yet: per time bucket, each
// webhook's batch offsets (ascending) and the bucket's largest offset.
//
// It is shaped by what a rebuild costs (profiled: a map keyed by (bucket, webhook) and one for
// the summaries took 13% of a rebuild's CPU, as much as everything else it adds to the scan,
// most of it cache misses): a record looks up its bucket among the few a commit spans (the last
// one first: neighbours share it), then its webhook's slot in that bucket's map with a uint64
// key (the runtime's fast path), and appends (slot, offset) to the bucket's log, which is
// sequential memory; a commit groups the log by slot with a counting sort, dropping an offset
// equal to the one before it in its slot (a batch's records of one webhook are one entry; the
// decoders drop most such repeats already). Checking each slot's last offset at every add
// instead cost a second cache miss per record (the aggregation is bound by them: the maps and
// slots of a commit's buckets do not stay in a core's cache beside the decoders' work). Maps
// and slices are kept across commits, so a builder in its steady state does not allocate.
type pending struct {
	active []*bucketPending // the buckets with entries, in no order
	free   []*bucketPending // emptied ones, for reuse
	cur    *bucketPending   // the bucket of the last record
	// A commit's scratch: slot order, each slot's start and end in out, the log grouped by slot.
	order []int32
	start []int32
	end   []int32
	out   []int64
}

type bucketPending struct {
	bucket   uint32
	hi       int64            // the largest offset pending in the bucket
	slot     map[uint64]int32 // webhook → its slot
	webhooks []uint64         // by slot
	logSlot  []int32          // the log, in the order added (offsets ascend per slot)
	logOff   []int64
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
		i = int32(len(b.webhooks))
		b.slot[webhook] = i
		b.webhooks = append(b.webhooks, webhook)
	}
	b.logSlot = append(b.logSlot, i)
	b.logOff = append(b.logOff, offset)
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
	b.bucket, b.hi = bucket, -1
	pd.active = append(pd.active, b)
	return b
}

// write adds one Merge per pending key, in key order, and the buckets' summaries to batch; buf
// is scratch for the values, returned for reuse.
func (pd *pending) write(batch *pebble.Batch, p int32, buf []byte) ([]byte, error) {
	slices.SortFunc(pd.active, func(a, b *bucketPending) int { return cmp.Compare(a.bucket, b.bucket) })
	key := make([]byte, 0, entryKeyLen)
	for _, b := range pd.active {
		n := len(b.webhooks)
		// Group the log by slot: count, prefix sums, scatter (offsets stay ascending per slot;
		// a repeat of the slot's last offset is dropped).
		pd.start = slices.Grow(pd.start[:0], n+1)[:n+1]
		clear(pd.start)
		for _, s := range b.logSlot {
			pd.start[s+1]++
		}
		for i := 1; i <= n; i++ {
			pd.start[i] += pd.start[i-1]
		}
		pd.out = slices.Grow(pd.out[:0], len(b.logOff))[:len(b.logOff)]
		pd.end = slices.Grow(pd.end[:0], n)[:n]
		copy(pd.end, pd.start[:n])
		for k, s := range b.logSlot {
			off, e := b.logOff[k], pd.end[s]
			if e > pd.start[s] && pd.out[e-1] == off {
				continue
			}
			pd.out[e] = off
			pd.end[s] = e + 1
		}
		pd.order = slices.Grow(pd.order[:0], n)[:n]
		for i := range pd.order {
			pd.order[i] = int32(i)
		}
		slices.SortFunc(pd.order, func(x, y int32) int { return cmp.Compare(b.webhooks[x], b.webhooks[y]) })
		for _, s := range pd.order {
			key = entryKey(key[:0], p, b.bucket, b.webhooks[s])
			buf = appendRun(buf[:0], pd.out[pd.start[s]:pd.end[s]])
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
		b.webhooks, b.logSlot, b.logOff = b.webhooks[:0], b.logSlot[:0], b.logOff[:0]
		pd.free = append(pd.free, b)
	}
	pd.active = pd.active[:0]
	pd.cur = nil
}
