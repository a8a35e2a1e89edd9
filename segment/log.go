package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ScanOptions configure a Scanner. The zero value scans a whole file without CRC checks.
type ScanOptions struct {
	// Start is the byte position of the first batch to read. Default 0.
	Start int64
	// End is the byte position to stop at; 0 means the size given to NewScanner.
	End int64
	// VerifyCRC checks every batch's CRC as it is read, so that ValidEnd is the end of the
	// last batch known intact (what recovery needs). Default false: a hot path that only needs
	// headers, or that checks CRCs when it decodes records, skips the cost.
	VerifyCRC bool
	// BufferSize is how many bytes one read asks the file for. Default 1 MiB.
	BufferSize int
}

// Scanner reads the batches of a .log file in order, by byte position. Each batch's header is
// parsed and its bytes are in memory, but nothing is decompressed, so a caller can skip batches by
// offset or timestamp for the cost of reading them. It is not safe for concurrent use.
type Scanner struct {
	r    io.ReaderAt
	file string
	end  int64
	opts ScanOptions

	buf      []byte
	bufStart int64 // file position of buf[0]
	pos      int64 // position of the next batch
	batch    Batch
	err      error
	done     bool
}

// NewScanner scans r, which holds size bytes and is named file in errors.
func NewScanner(r io.ReaderAt, file string, size int64, opts ScanOptions) *Scanner {
	if opts.BufferSize <= 0 {
		opts.BufferSize = 1 << 20
	}
	end := size
	if opts.End > 0 && opts.End < end {
		end = opts.End
	}
	return &Scanner{r: r, file: file, end: end, opts: opts, pos: opts.Start, bufStart: opts.Start}
}

// Next reads the next batch and reports whether there is one. At the end of the file, or at the
// first bad batch, it returns false and Err says which.
func (s *Scanner) Next() bool {
	if s.done {
		return false
	}
	if s.pos >= s.end {
		s.done = true
		return false
	}
	if err := s.fill(LogOverhead + 5); err != nil {
		return s.fail(err)
	}
	off := int(s.pos - s.bufStart)
	length := int64(int32(binary.BigEndian.Uint32(s.buf[off+8:])))
	magic := int8(s.buf[off+16])
	minLen := int64(legacyMinMessage0)
	if magic >= 2 {
		minLen = BatchHeaderSize - LogOverhead
	}
	if length < minLen || length > MaxBatchSize {
		return s.fail(corruptf(s.file, s.pos, ErrMalformed, "batch length %d is out of range [%d, %d]", length, minLen, MaxBatchSize))
	}
	if err := s.fill(LogOverhead + int(length)); err != nil {
		return s.fail(err)
	}
	off = int(s.pos - s.bufStart)
	raw := s.buf[off : off+LogOverhead+int(length) : off+LogOverhead+int(length)]
	s.batch.File, s.batch.Pos, s.batch.Raw = s.file, s.pos, raw
	if err := parseHeader(raw, &s.batch.BatchHeader, s.file, s.pos); err != nil {
		return s.fail(err)
	}
	if s.opts.VerifyCRC {
		if err := s.batch.VerifyCRC(); err != nil {
			return s.fail(err)
		}
	}
	s.pos += int64(len(raw))
	return true
}

// fill makes sure buf holds n bytes from s.pos, reading more of the file if needed.
func (s *Scanner) fill(n int) error {
	off := int(s.pos - s.bufStart)
	if len(s.buf)-off >= n {
		return nil
	}
	if s.end-s.pos < int64(n) {
		return corruptf(s.file, s.pos, ErrTornTail, "file ends %d bytes into a batch of at least %d", s.end-s.pos, n)
	}
	// Keep the unread bytes, move them to the front, and read a whole buffer's worth more.
	want := max(n, s.opts.BufferSize)
	keep := len(s.buf) - off
	if cap(s.buf) < want {
		nb := make([]byte, keep, want)
		copy(nb, s.buf[off:])
		s.buf = nb
	} else {
		copy(s.buf[:keep], s.buf[off:])
		s.buf = s.buf[:keep]
	}
	s.bufStart = s.pos
	readTo := min(int64(want), s.end-s.pos)
	got, err := s.r.ReadAt(s.buf[keep:readTo], s.pos+int64(keep))
	s.buf = s.buf[:keep+got]
	if err != nil && !(errors.Is(err, io.EOF) && keep+got >= n) {
		if errors.Is(err, io.EOF) {
			return corruptf(s.file, s.pos, ErrTornTail, "file ends %d bytes into a batch of at least %d", keep+got, n)
		}
		return fmt.Errorf("%s: read at byte %d: %w", s.file, s.pos+int64(keep), err)
	}
	return nil
}

func (s *Scanner) fail(err error) bool {
	s.err = err
	s.done = true
	return false
}

// Batch is the batch Next read; it and its bytes are valid until the next call to Next.
func (s *Scanner) Batch() *Batch { return &s.batch }

// Err is what stopped the scan: nil at the clean end of the file.
func (s *Scanner) Err() error { return s.err }

// ValidEnd is the byte position just past the last batch Next returned: with VerifyCRC, the
// length a corrupt or torn log can be truncated to without losing an intact batch before it.
func (s *Scanner) ValidEnd() int64 { return s.pos }

// ReadBatchAt reads the one batch that starts at byte pos of r (which holds size bytes) into buf,
// reusing its storage, and returns it. It is the targeted read of replay: the position comes from
// an index. The CRC is not checked here; RecordReader.Reset checks it.
func ReadBatchAt(r io.ReaderAt, file string, size, pos int64, buf []byte) (Batch, []byte, error) {
	var b Batch
	if pos < 0 || pos >= size {
		return b, buf, fmt.Errorf("%s: batch position %d is outside the file's %d bytes", file, pos, size)
	}
	head := min(int64(BatchHeaderSize), size-pos)
	buf = growTo(buf, int(head))
	if _, err := r.ReadAt(buf, pos); err != nil && !errors.Is(err, io.EOF) {
		return b, buf, fmt.Errorf("%s: read at byte %d: %w", file, pos, err)
	}
	if head < LogOverhead+5 {
		return b, buf, corruptf(file, pos, ErrTornTail, "file ends %d bytes into a batch header", head)
	}
	length := int64(int32(binary.BigEndian.Uint32(buf[8:])))
	if length < legacyMinMessage0 || length > MaxBatchSize {
		return b, buf, corruptf(file, pos, ErrMalformed, "batch length %d is out of range", length)
	}
	total := LogOverhead + length
	if total > size-pos {
		return b, buf, corruptf(file, pos, ErrTornTail, "file ends %d bytes into a batch of %d", size-pos, total)
	}
	buf = growTo(buf, int(total))
	if total > head {
		if _, err := r.ReadAt(buf[head:], pos+head); err != nil && !errors.Is(err, io.EOF) {
			return b, buf, fmt.Errorf("%s: read at byte %d: %w", file, pos+head, err)
		}
	}
	b.File, b.Pos, b.Raw = file, pos, buf
	if err := parseHeader(buf, &b.BatchHeader, file, pos); err != nil {
		return b, buf, err
	}
	return b, buf, nil
}

func growTo(b []byte, n int) []byte {
	if cap(b) < n {
		nb := make([]byte, n)
		copy(nb, b) // ReadBatchAt grows a buffer that already holds the header
		return nb
	}
	return b[:n]
}
