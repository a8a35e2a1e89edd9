package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Window sizes of a BatchReader.
const (
	// batchReadMin is the least a BatchReader reads at once: a header and, for batches up to
	// Kafka's default batch.size (16 KiB), the whole batch in the same system call.
	batchReadMin = 16 << 10
	// batchReadGap is the largest distance between two wanted batches that one read spans: below
	// it, reading the batches between them costs less than another system call.
	batchReadGap = 64 << 10
	// batchReadMax bounds a read window.
	batchReadMax = 1 << 20
)

// BatchReader reads batches of one segment by offset, for targeted reads in ascending offset
// order: a replay's batches, found through an index. Where the wanted batches are close together
// it reads them in one pass through a window of the file's bytes, hopping header to header inside
// it, so that a dense read costs about what a sequential scan does; where they are far apart it
// reads little more than each batch, starting from the offset index's floor entry (or from the
// end of the previous batch, when that is closer).
//
// The Batch a Read returns points into the reader's window: it is valid until the next Read.
type BatchReader struct {
	seg    *Segment
	win    []byte
	winPos int64 // file position of win[0]
	// next is the position and base offset of the batch after the last one read; nextOff is -1
	// before the first read.
	next, nextOff int64
}

// NewBatchReader returns a BatchReader of s that reuses buf's storage for its window.
func (s *Segment) NewBatchReader(buf []byte) *BatchReader {
	return &BatchReader{seg: s, win: buf[:0], nextOff: -1}
}

// Buffer returns the window's storage, for reuse by another reader.
func (r *BatchReader) Buffer() []byte { return r.win[:0] }

// floor is the position of the offset index's floor entry for offset, or 0 without an index.
func (r *BatchReader) floor(offset int64) int64 {
	if r.seg.offsets == nil {
		return 0
	}
	_, pos := r.seg.offsets.Lookup(offset)
	return pos
}

// Read returns the batch holding offset, or the first batch after it (found is false when every
// batch ends before offset). upcoming are the offsets the caller will ask for next, ascending and
// in this segment: they decide how far a read of the file reaches ahead.
func (r *BatchReader) Read(offset int64, upcoming []int64) (b Batch, found bool, err error) {
	s := r.seg
	pos := r.floor(offset)
	if r.nextOff >= 0 && r.nextOff <= offset && r.next > pos {
		pos = r.next // the previous read ended closer to offset than the index's entry
	}
	for pos < s.size {
		headLen := min(int64(BatchHeaderSize), s.size-pos)
		head, err := r.bytes(pos, headLen, upcoming)
		if err != nil {
			return b, false, err
		}
		if headLen < LogOverhead+5 {
			return b, false, corruptf(s.Path, pos, ErrTornTail, "file ends %d bytes into a batch header", headLen)
		}
		length := int64(int32(binary.BigEndian.Uint32(head[8:])))
		if length < legacyMinMessage0 || length > MaxBatchSize {
			return b, false, corruptf(s.Path, pos, ErrMalformed, "batch length %d is out of range", length)
		}
		total := LogOverhead + length
		// The last offset is in the header for magic 2; a legacy entry's offset is its last.
		last := int64(binary.BigEndian.Uint64(head))
		if int8(head[offMagic]) >= 2 && headLen >= offLastOffsetDelta+4 {
			last += int64(int32(binary.BigEndian.Uint32(head[offLastOffsetDelta:])))
		}
		if last < offset {
			pos += total
			continue
		}
		if total > s.size-pos {
			return b, false, corruptf(s.Path, pos, ErrTornTail, "file ends %d bytes into a batch of %d", s.size-pos, total)
		}
		raw, err := r.bytes(pos, total, upcoming)
		if err != nil {
			return b, false, err
		}
		b.File, b.Pos, b.Raw = s.Path, pos, raw
		if err := parseHeader(raw, &b.BatchHeader, s.Path, pos); err != nil {
			return b, false, err
		}
		r.next, r.nextOff = pos+total, last+1
		return b, true, nil
	}
	return b, false, nil
}

// bytes returns the file's bytes [pos, pos+n), from the window or by moving it there. A move
// reads at least batchReadMin bytes and, while the next wanted batch starts within batchReadGap
// of what is read, on to it (up to batchReadMax): one system call for a run of close batches.
func (r *BatchReader) bytes(pos, n int64, upcoming []int64) ([]byte, error) {
	if pos >= r.winPos && pos+n <= r.winPos+int64(len(r.win)) {
		return r.win[pos-r.winPos : pos-r.winPos+n], nil
	}
	s := r.seg
	end := pos + max(n, batchReadMin)
	for _, off := range upcoming {
		q := r.floor(off)
		if q < end {
			continue
		}
		if q-end > batchReadGap || q+batchReadMin-pos > batchReadMax {
			break
		}
		end = q + batchReadMin
	}
	end = min(end, s.size, pos+max(n, batchReadMax))
	// Bytes of the window that are still wanted move to its front instead of being read again.
	keep := int64(0)
	if pos >= r.winPos && pos < r.winPos+int64(len(r.win)) {
		keep = r.winPos + int64(len(r.win)) - pos
		copy(r.win, r.win[pos-r.winPos:])
	}
	size := int(end - pos)
	if cap(r.win) < size {
		nw := make([]byte, size)
		copy(nw, r.win[:keep])
		r.win = nw
	}
	r.win = r.win[:size]
	r.winPos = pos
	if _, err := s.log.ReadAt(r.win[keep:], pos+keep); err != nil && !errors.Is(err, io.EOF) {
		r.win = r.win[:0]
		return nil, fmt.Errorf("%s: read at byte %d: %w", s.Path, pos+keep, err)
	}
	return r.win[:n], nil
}
