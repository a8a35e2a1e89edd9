package engine

import (
	"context"
	"errors"
	"sort"

	"github.com/replay/replay/segment"
)

// segments is a partition's segments as one read sees them, in base offset order, with the
// partition's end offset at that moment. The embedded log and the broker directory source both
// answer reads through it.
type segments struct {
	segs []*segment.Segment
	// maxTS[i] is segment i's largest timestamp, or -1 when unknown (the last segment, or one
	// without a time index): such a segment is always searched.
	maxTS []int64
	end   int64
	// liveTail says the last segment may still be appended to by someone else (a broker), so a
	// torn batch at its end is data not yet written, not corruption.
	liveTail bool
}

// locate is the index of the segment that holds offset: the last one whose base is at most it.
func (s *segments) locate(offset int64) int {
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].Base > offset }) - 1
	return max(i, 0)
}

func (s *segments) scanErr(i int, err error) error {
	if err != nil && s.liveTail && i == len(s.segs)-1 && segment.IsTornTail(err) {
		return nil
	}
	return err
}

// scan calls fn for each batch from the one holding from up to the end offset.
func (s *segments) scan(ctx context.Context, from int64, fn func(*segment.Batch) error) error {
	if len(s.segs) == 0 || from >= s.end {
		return nil
	}
	for i := s.locate(from); i < len(s.segs); i++ {
		seg := s.segs[i]
		var start int64
		if from > seg.Base {
			pos, found, err := seg.PositionOf(from)
			if err = s.scanErr(i, err); err != nil {
				return err
			}
			if !found {
				continue
			}
			start = pos
		}
		sc := seg.Scanner(segment.ScanOptions{Start: start})
		for sc.Next() {
			b := sc.Batch()
			if b.BaseOffset >= s.end {
				return nil
			}
			if b.LastOffset() < from {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(b); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
		}
		if err := s.scanErr(i, sc.Err()); err != nil {
			return err
		}
	}
	return nil
}

// readBatches calls fn for each distinct batch holding one of the ascending offsets. Each
// segment is read through a segment.BatchReader that sees the offsets still to come in it, so
// close batches are read in one pass and far ones each on their own.
func (s *segments) readBatches(ctx context.Context, offsets []int64, fn func(*segment.Batch) error) error {
	var (
		buf    []byte
		reader *segment.BatchReader
		cur    = -1 // the segment reader reads
	)
	next := int64(-1) // offsets below this are in a batch already delivered
	for k, off := range offsets {
		if off < next || off >= s.end || len(s.segs) == 0 || off < s.segs[0].Base {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		i := s.locate(off)
		if i != cur {
			if reader != nil {
				buf = reader.Buffer()
			}
			reader, cur = s.segs[i].NewBatchReader(buf), i
		}
		// The offsets after this one that lie in the same segment.
		upcoming := offsets[k+1:]
		if i+1 < len(s.segs) {
			limit := s.segs[i+1].Base
			upcoming = upcoming[:sort.Search(len(upcoming), func(j int) bool { return upcoming[j] >= limit })]
		}
		b, found, err := reader.Read(off, upcoming)
		if err = s.scanErr(i, err); err != nil {
			return err
		}
		if !found {
			continue // in a gap of the log (compaction, aborted transactions' markers): nothing holds it
		}
		if b.BaseOffset >= s.end {
			continue
		}
		next = b.NextOffset()
		if err := fn(&b); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// offsetForTime finds the first offset whose record timestamp is at least ts, as ListOffsets does:
// the first segment whose largest timestamp reaches ts, searched through its time index.
func (s *segments) offsetForTime(ctx context.Context, ts int64) (int64, bool, error) {
	for i, seg := range s.segs {
		if s.maxTS[i] >= 0 && s.maxTS[i] < ts {
			continue
		}
		if err := ctx.Err(); err != nil {
			return 0, false, err
		}
		off, found, err := seg.OffsetForTime(ts)
		if err = s.scanErr(i, err); err != nil {
			return 0, false, err
		}
		if found && off < s.end {
			return off, true, nil
		}
	}
	return s.end, false, nil
}

// sealedMaxTimestamp is the largest timestamp of a segment that is no longer written: the last
// entry of its time index, which a broker (and our writer) adds when the segment is rolled.
func sealedMaxTimestamp(seg *segment.Segment) int64 {
	if x := seg.TimeIndex(); x != nil && x.Len() > 0 {
		ts, _ := x.LastEntry()
		return ts
	}
	return -1
}
