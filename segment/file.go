package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// File extensions of a segment's files.
const (
	LogExt       = ".log"
	IndexExt     = ".index"
	TimeIndexExt = ".timeindex"
)

// FileName is the name of a segment file: the base offset in twenty digits, then the extension.
func FileName(base int64, ext string) string { return fmt.Sprintf("%020d%s", base, ext) }

// ParseFileName reads the base offset and extension of a segment file name, and reports whether
// the name is one.
func ParseFileName(name string) (base int64, ext string, ok bool) {
	dot := strings.IndexByte(name, '.')
	if dot != 20 {
		return 0, "", false
	}
	base, err := strconv.ParseInt(name[:20], 10, 64)
	if err != nil || base < 0 {
		return 0, "", false
	}
	return base, name[20:], true
}

// Segment is one segment of a partition opened for reading: its .log file and, where they exist
// and are sound, its indexes. Lookups use the indexes to start near their target and scan the
// log from there; without indexes they scan from the segment's start.
type Segment struct {
	Base     int64
	Path     string // of the .log file
	log      io.ReaderAt
	closer   io.Closer // nil when the caller owns the file
	size     int64
	offsets  *OffsetIndex
	times    *TimeIndex
	IndexErr error // why an index was not used; nil when both loaded or both were absent
}

// OpenSegment opens the segment whose base offset is base in dir, read-only. A missing or corrupt
// index is not an error: the segment is read without it and IndexErr says why.
func OpenSegment(fs vfs.FS, dir string, base int64) (*Segment, error) {
	path := fs.PathJoin(dir, FileName(base, LogExt))
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	s := &Segment{Base: base, Path: path, log: f, closer: f, size: st.Size()}
	var errs []error
	if b, err := readWhole(fs, fs.PathJoin(dir, FileName(base, IndexExt))); err == nil {
		if s.offsets, err = ParseOffsetIndex(fs.PathJoin(dir, FileName(base, IndexExt)), base, b); err != nil {
			errs = append(errs, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if b, err := readWhole(fs, fs.PathJoin(dir, FileName(base, TimeIndexExt))); err == nil {
		if s.times, err = ParseTimeIndex(fs.PathJoin(dir, FileName(base, TimeIndexExt)), base, b); err != nil {
			errs = append(errs, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	s.IndexErr = errors.Join(errs...)
	return s, nil
}

func readWhole(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}

// NewSegment makes a Segment over a .log the caller has open, of which size bytes are readable,
// with the indexes given (nil for none): the view of a segment still being written, whose indexes
// are its Writer's. Close does not close r.
func NewSegment(base int64, path string, r io.ReaderAt, size int64, offsets *OffsetIndex, times *TimeIndex) *Segment {
	return &Segment{Base: base, Path: path, log: r, size: size, offsets: offsets, times: times}
}

// Close closes the .log file if OpenSegment opened it.
func (s *Segment) Close() error {
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}

// Size is the .log file's size when it was opened.
func (s *Segment) Size() int64 { return s.size }

// ReaderAt reads the .log file.
func (s *Segment) ReaderAt() io.ReaderAt { return s.log }

// Scanner scans the segment's batches from byte position start.
func (s *Segment) Scanner(opts ScanOptions) *Scanner {
	return NewScanner(s.log, s.Path, s.size, opts)
}

// OffsetIndex is the segment's offset index, or nil when it has none that could be used.
func (s *Segment) OffsetIndex() *OffsetIndex { return s.offsets }

// TimeIndex is the segment's time index, or nil when it has none that could be used.
func (s *Segment) TimeIndex() *TimeIndex { return s.times }

// PositionOf finds the batch holding offset, or failing that the first batch after it: the
// floor entry of the offset index, then a scan. found is false when every batch ends before offset.
func (s *Segment) PositionOf(offset int64) (pos int64, found bool, err error) {
	var start int64
	if s.offsets != nil {
		_, start = s.offsets.Lookup(offset)
	}
	sc := s.Scanner(ScanOptions{Start: start, BufferSize: 64 << 10})
	for sc.Next() {
		if b := sc.Batch(); b.LastOffset() >= offset {
			return b.Pos, true, nil
		}
	}
	return 0, false, sc.Err()
}

// ReadBatch reads the batch holding offset (or the first batch after it) into buf, reusing its
// storage: the targeted read of a replay. From the floor entry of the offset index it hops from
// header to header, reading only the 61 header bytes of each batch it passes, then reads the one
// batch it wants, once. found is false when every batch ends before offset.
func (s *Segment) ReadBatch(offset int64, buf []byte) (b Batch, out []byte, found bool, err error) {
	var pos int64
	if s.offsets != nil {
		_, pos = s.offsets.Lookup(offset)
	}
	var head [BatchHeaderSize]byte
	for pos < s.size {
		n := min(int64(len(head)), s.size-pos)
		if _, err := s.log.ReadAt(head[:n], pos); err != nil && !errors.Is(err, io.EOF) {
			return b, buf, false, fmt.Errorf("%s: read at byte %d: %w", s.Path, pos, err)
		}
		if n < LogOverhead+5 {
			return b, buf, false, corruptf(s.Path, pos, ErrTornTail, "file ends %d bytes into a batch header", n)
		}
		length := int64(int32(binary.BigEndian.Uint32(head[8:])))
		if length < legacyMinMessage0 || length > MaxBatchSize {
			return b, buf, false, corruptf(s.Path, pos, ErrMalformed, "batch length %d is out of range", length)
		}
		// The last offset is in the header for magic 2; a legacy entry's offset is its last.
		last := int64(binary.BigEndian.Uint64(head[:]))
		if int8(head[offMagic]) >= 2 && n >= offLastOffsetDelta+4 {
			last += int64(int32(binary.BigEndian.Uint32(head[offLastOffsetDelta:])))
		}
		if last >= offset {
			b, buf, err = ReadBatchAt(s.log, s.Path, s.size, pos, buf)
			return b, buf, err == nil, err
		}
		pos += LogOverhead + length
	}
	return b, buf, false, nil
}

// OffsetForTime answers ListOffsets for timestamp ts as a broker does: the offset of the first
// record (in offset order) whose timestamp is at least ts. Timestamps may go backwards within the
// segment; the time index holds the largest timestamp so far, so every record before its floor
// entry's batch is older than ts, and the scan starts there. found is false when no record is.
func (s *Segment) OffsetForTime(ts int64) (offset int64, found bool, err error) {
	var start int64
	if s.times != nil && s.offsets != nil {
		_, off := s.times.Lookup(ts)
		_, start = s.offsets.Lookup(off)
	}
	var rr RecordReader
	sc := s.Scanner(ScanOptions{Start: start, BufferSize: 64 << 10})
	for sc.Next() {
		b := sc.Batch()
		if b.MaxTimestamp < ts || b.IsControl() {
			continue
		}
		if err := rr.Reset(b); err != nil {
			return 0, false, err
		}
		for rr.Next() {
			if rr.Record().Timestamp >= ts {
				return rr.Record().Offset, true, nil
			}
		}
		if err := rr.Err(); err != nil {
			return 0, false, err
		}
	}
	return 0, false, sc.Err()
}
