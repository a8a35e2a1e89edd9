package segment

import (
	"errors"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// CheckSegment verifies a segment on disk and reports every problem found: each batch's framing
// and CRC, that every record decodes and offsets only increase, and that every index entry points
// at a batch that makes lookups through it correct. Missing index files are allowed (a reader
// scans without them); unreadable ones are problems. Tests run it after every write.
func CheckSegment(fs vfs.FS, dir string, base int64) error {
	seg, err := OpenSegment(fs, dir, base)
	if err != nil {
		return err
	}
	defer seg.Close()
	var errs []error
	if seg.IndexErr != nil {
		errs = append(errs, seg.IndexErr)
	}
	type batchFacts struct {
		pos, base, last int64
		maxTSBefore     int64 // largest timestamp of the batches before this one
		maxTS           int64
	}
	var batches []batchFacts
	var rr RecordReader
	prev := base - 1
	maxTS := int64(-1 << 63)
	sc := seg.Scanner(ScanOptions{VerifyCRC: true})
	for sc.Next() {
		b := sc.Batch()
		first := b.BaseOffset
		if err := rr.Reset(b); err != nil {
			errs = append(errs, err)
			break
		}
		n := 0
		for rr.Next() {
			off := rr.Record().Offset
			if n == 0 {
				first = off
			}
			if off <= prev || off > b.LastOffset() {
				errs = append(errs, fmt.Errorf("%s: batch at byte %d: record offset %d after offset %d, batch ends at %d", seg.Path, b.Pos, off, prev, b.LastOffset()))
			}
			prev = off
			n++
		}
		if err := rr.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if b.NumRecords >= 0 && int32(n) != b.NumRecords {
			errs = append(errs, fmt.Errorf("%s: batch at byte %d: header says %d records, holds %d", seg.Path, b.Pos, b.NumRecords, n))
		}
		if first < base {
			errs = append(errs, fmt.Errorf("%s: batch at byte %d starts at offset %d, before the segment base %d", seg.Path, b.Pos, first, base))
		}
		prev = max(prev, b.LastOffset())
		batches = append(batches, batchFacts{pos: b.Pos, base: first, last: b.LastOffset(), maxTSBefore: maxTS, maxTS: b.MaxTimestamp})
		maxTS = max(maxTS, b.MaxTimestamp)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	byPos := func(pos int64) (int, bool) {
		i := sort.Search(len(batches), func(i int) bool { return batches[i].pos >= pos })
		return i, i < len(batches) && batches[i].pos == pos
	}
	byOffset := func(off int64) (int, bool) {
		i := sort.Search(len(batches), func(i int) bool { return batches[i].last >= off })
		return i, i < len(batches) && batches[i].base <= off
	}
	if x := seg.OffsetIndex(); x != nil {
		for i := 0; i < x.Len(); i++ {
			off, pos := x.Entry(i)
			j, ok := byPos(pos)
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%s: offset index entry %d points at byte %d, where no batch starts", seg.Path, i, pos))
			case batches[j].base > off:
				errs = append(errs, fmt.Errorf("%s: offset index entry %d maps offset %d to the batch at byte %d, which starts at offset %d", seg.Path, i, off, pos, batches[j].base))
			case off > batches[len(batches)-1].last:
				errs = append(errs, fmt.Errorf("%s: offset index entry %d names offset %d, past the segment's last offset %d", seg.Path, i, off, batches[len(batches)-1].last))
			}
		}
	}
	if x := seg.TimeIndex(); x != nil {
		for i := 0; i < x.Len(); i++ {
			ts, off := x.Entry(i)
			j, ok := byOffset(off)
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%s: time index entry %d names offset %d, which no batch holds", seg.Path, i, off))
			case batches[j].maxTSBefore >= ts:
				errs = append(errs, fmt.Errorf("%s: time index entry %d says timestamp %d is first reached at offset %d, but an earlier batch has %d", seg.Path, i, ts, off, batches[j].maxTSBefore))
			case ts > maxTS:
				errs = append(errs, fmt.Errorf("%s: time index entry %d has timestamp %d, larger than any in the segment (%d)", seg.Path, i, ts, maxTS))
			}
		}
	}
	return errors.Join(errs...)
}
