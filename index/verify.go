package index

import (
	"context"
	"fmt"
	"slices"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/segment"
)

// Mismatch is one disagreement between the index and the log.
type Mismatch struct {
	Partition int32
	// Kind is "missing" (a batch holds a record of the webhook in the bucket, below the
	// checkpoint, and the entry does not list it), "extra" (the entry lists a real batch that
	// holds no such record) or "dangling" (the entry lists an offset that is no batch's base
	// offset in the log, or one at or past the checkpoint). "truncated" says the partition's
	// checkpoint (Offset) is past the log's end (End): the log was truncated and the builder has
	// not dropped the index's part above the end yet (TruncatePartition); its entries there are
	// also reported dangling.
	Kind    string
	Bucket  uint32
	Webhook uint64
	Offset  int64
	End     int64 // the log end offset, for "truncated"
}

func (m Mismatch) String() string {
	if m.Kind == "truncated" {
		return fmt.Sprintf("partition %d: truncated: checkpoint %d is past the log end %d", m.Partition, m.Offset, m.End)
	}
	return fmt.Sprintf("partition %d: %s: webhook %d bucket %d offset %d", m.Partition, m.Kind, m.Webhook, m.Bucket, m.Offset)
}

// VerifyReport sums up a Verify.
type VerifyReport struct {
	Batches, Records int64 // read from the log, below the checkpoints
	Pairs            int64 // distinct (webhook, bucket, batch) the log says must be indexed
	Entries          int64 // index entries compared
	Mismatches       int64
	// Expired are entry offsets below the log start: deleted from the log, kept until the next
	// EnforceRetention. They are not mismatches.
	Expired int64
}

// Verify reads partitions parts of src (all when nil) below their checkpoints and checks that
// every (webhook, bucket, batch) of the log is indexed and that every entry's offsets are batches
// of the log holding that webhook's records in that bucket. Buckets below the retention floor are
// not compared. fn, if set, receives each mismatch. Memory is proportional to one partition's
// entries.
func (ix *Index) Verify(ctx context.Context, src engine.Source, parts []int32, fn func(Mismatch)) (VerifyReport, error) {
	var rep VerifyReport
	if err := ix.usable(); err != nil {
		return rep, err
	}
	n, err := ix.checkPartitions(ctx, src, false)
	if err != nil {
		return rep, err
	}
	if parts == nil {
		for p := int32(0); p < n; p++ {
			parts = append(parts, p)
		}
	}
	for _, p := range parts {
		if err := ix.verifyPartition(ctx, src, p, &rep, fn); err != nil {
			return rep, fmt.Errorf("index: verify partition %d: %w", p, err)
		}
	}
	return rep, nil
}

func (ix *Index) verifyPartition(ctx context.Context, src engine.Source, p int32, rep *VerifyReport, fn func(Mismatch)) error {
	report := func(m Mismatch) {
		rep.Mismatches++
		if fn != nil {
			fn(m)
		}
	}
	cp, _, err := ix.Checkpoint(p)
	if err != nil {
		return err
	}
	floor, err := ix.floor(p)
	if err != nil {
		return err
	}
	b, err := src.Bounds(ctx, p)
	if err != nil {
		return err
	}
	if cp > b.End {
		report(Mismatch{Partition: p, Kind: "truncated", Offset: cp, End: b.End})
	}
	expected := map[pendKey][]int64{}
	batches := map[int64]bool{}
	if b.Start < cp {
		var rr segment.RecordReader
		err := src.Scan(ctx, p, b.Start, func(bt *segment.Batch) error {
			if bt.BaseOffset >= cp {
				return engine.ErrStop
			}
			batches[bt.BaseOffset] = true
			rep.Batches++
			if bt.IsControl() {
				return nil
			}
			if err := rr.Reset(bt); err != nil {
				return err
			}
			for rr.Next() {
				r := rr.Record()
				rep.Records++
				bk := ix.Bucket(r.Timestamp)
				if bk < floor {
					continue
				}
				k := pendKey{bk, WebhookID(r.Key)}
				offs := expected[k]
				if n := len(offs); n == 0 || offs[n-1] != bt.BaseOffset {
					expected[k] = append(offs, bt.BaseOffset)
					rep.Pairs++
				}
			}
			return rr.Err()
		})
		if err != nil {
			return err
		}
	}
	err = ix.Entries(p, func(e Entry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		rep.Entries++
		k := pendKey{e.Bucket, e.Webhook}
		exp := expected[k]
		delete(expected, k)
		for _, o := range e.Offsets {
			switch {
			case o < b.Start:
				rep.Expired++
			case o >= cp || !batches[o]:
				report(Mismatch{Partition: p, Kind: "dangling", Bucket: e.Bucket, Webhook: e.Webhook, Offset: o})
			case e.Bucket >= floor && !contains(exp, o):
				report(Mismatch{Partition: p, Kind: "extra", Bucket: e.Bucket, Webhook: e.Webhook, Offset: o})
			}
		}
		if e.Bucket >= floor {
			for _, o := range exp {
				if _, found := slices.BinarySearch(e.Offsets, o); !found {
					report(Mismatch{Partition: p, Kind: "missing", Bucket: e.Bucket, Webhook: e.Webhook, Offset: o})
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	keys := make([]pendKey, 0, len(expected))
	for k := range expected {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b pendKey) int {
		if a.bucket != b.bucket {
			return cmpU(uint64(a.bucket), uint64(b.bucket))
		}
		return cmpU(a.webhook, b.webhook)
	})
	for _, k := range keys {
		for _, o := range expected[k] {
			report(Mismatch{Partition: p, Kind: "missing", Bucket: k.bucket, Webhook: k.webhook, Offset: o})
		}
	}
	return nil
}

func contains(sorted []int64, o int64) bool {
	_, found := slices.BinarySearch(sorted, o)
	return found
}
