package segment

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// WriterOptions configure a Writer.
type WriterOptions struct {
	// FS is where the files are written. Default vfs.Default, the operating system's.
	FS vfs.FS
	// IndexIntervalBytes is Kafka's index.interval.bytes: an offset and a time index entry are
	// added once more than this many bytes were appended since the last entry. Default 4096.
	IndexIntervalBytes int
	// Codec compresses the batches AppendRecords builds. Default snappy; set NoCompression to
	// write CodecNone, whose zero value otherwise means the default.
	Codec Codec
	// NoCompression makes AppendRecords write uncompressed batches.
	NoCompression bool
}

// EnsureDefaults fills in the defaults of unset fields and returns o.
func (o *WriterOptions) EnsureDefaults() *WriterOptions {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.IndexIntervalBytes == 0 {
		o.IndexIntervalBytes = 4096
	}
	if o.Codec == CodecNone && !o.NoCompression {
		o.Codec = CodecSnappy
	}
	return o
}

// Validate reports every field that holds an impossible value.
func (o *WriterOptions) Validate() error {
	var errs []error
	if o.IndexIntervalBytes < 0 {
		errs = append(errs, fmt.Errorf("IndexIntervalBytes is %d, want at least 0", o.IndexIntervalBytes))
	}
	if o.Codec < CodecNone || o.Codec > CodecZstd {
		errs = append(errs, fmt.Errorf("Codec is %d, not a codec", o.Codec))
	}
	if o.NoCompression && o.Codec != CodecNone {
		errs = append(errs, fmt.Errorf("NoCompression with Codec %v", o.Codec))
	}
	return errors.Join(errs...)
}

// Writer appends batches to a new segment and maintains its .index and .timeindex the way a
// broker does. Appended bytes go to the .log at once; Sync makes them durable. Index entries are
// kept in memory, written at Sync and Close; the indexes can always be rebuilt from the log. A
// Writer is not safe for concurrent use.
type Writer struct {
	opts    WriterOptions
	base    int64
	dir     string
	log     vfs.File
	idx     vfs.File
	tidx    vfs.File
	logPath string

	size       int64
	nextOffset int64
	sinceIndex int64 // bytes appended since the last index entry

	maxTS       int64 // largest batch max timestamp so far
	maxTSOffset int64 // last offset of the batch that carried it

	offsetEntries []byte // whole offset index
	timeEntries   []byte // whole time index
	idxWritten    int    // bytes of offsetEntries already in the file
	tidxWritten   int
	lastTimeEntry int64 // timestamp of the last time index entry, or -1

	err error // sticky: after a failed write the segment's tail is unknown

	bld Builder // for AppendRecords
	buf []byte
}

// CreateWriter creates the files of a new segment with base offset base in dir. It refuses to
// overwrite an existing .log.
func CreateWriter(dir string, base int64, opts WriterOptions) (*Writer, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	fs := opts.FS
	w := &Writer{opts: opts, base: base, dir: dir, nextOffset: base, maxTS: -1, maxTSOffset: base, lastTimeEntry: -1}
	w.logPath = fs.PathJoin(dir, FileName(base, LogExt))
	if _, err := fs.Stat(w.logPath); err == nil {
		return nil, fmt.Errorf("segment: %s already exists", w.logPath)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var err error
	if w.log, err = fs.Create(w.logPath, vfs.WriteCategoryUnspecified); err != nil {
		return nil, err
	}
	if w.idx, err = fs.Create(fs.PathJoin(dir, FileName(base, IndexExt)), vfs.WriteCategoryUnspecified); err != nil {
		w.log.Close()
		return nil, err
	}
	if w.tidx, err = fs.Create(fs.PathJoin(dir, FileName(base, TimeIndexExt)), vfs.WriteCategoryUnspecified); err != nil {
		w.log.Close()
		w.idx.Close()
		return nil, err
	}
	return w, nil
}

// OpenWriter reopens an existing segment to append to it, as the active segment of a log after a
// restart. It reads the whole .log, checking every batch's CRC, and rebuilds both indexes from it;
// a torn or corrupt tail is an error (a CorruptionError whose Pos is where the valid bytes end),
// so the caller truncates the file there first.
func OpenWriter(dir string, base int64, opts WriterOptions) (*Writer, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	fs := opts.FS
	w := &Writer{opts: opts, base: base, dir: dir, nextOffset: base, maxTS: -1, maxTSOffset: base, lastTimeEntry: -1}
	w.logPath = fs.PathJoin(dir, FileName(base, LogExt))
	var err error
	if w.log, err = fs.OpenReadWrite(w.logPath, vfs.WriteCategoryUnspecified); err != nil {
		return nil, err
	}
	st, err := w.log.Stat()
	if err != nil {
		w.log.Close()
		return nil, err
	}
	sc := NewScanner(w.log, w.logPath, st.Size(), ScanOptions{VerifyCRC: true})
	for sc.Next() {
		b := sc.Batch()
		if b.Magic != 2 || b.BaseOffset < w.nextOffset {
			w.log.Close()
			return nil, corruptf(w.logPath, b.Pos, ErrMalformed, "batch of magic %d at offset %d does not continue the log at %d", b.Magic, b.BaseOffset, w.nextOffset)
		}
		w.index(b.Pos, b.Size(), b.LastOffset(), b.MaxTimestamp)
		w.nextOffset = b.NextOffset()
		w.size = b.Pos + b.Size()
	}
	if err := sc.Err(); err != nil {
		w.log.Close()
		return nil, err
	}
	if w.idx, err = fs.Create(fs.PathJoin(dir, FileName(base, IndexExt)), vfs.WriteCategoryUnspecified); err != nil {
		w.log.Close()
		return nil, err
	}
	if w.tidx, err = fs.Create(fs.PathJoin(dir, FileName(base, TimeIndexExt)), vfs.WriteCategoryUnspecified); err != nil {
		w.log.Close()
		w.idx.Close()
		return nil, err
	}
	return w, nil
}

// Base is the segment's base offset.
func (w *Writer) Base() int64 { return w.base }

// Size is the number of bytes appended to the .log.
func (w *Writer) Size() int64 { return w.size }

// NextOffset is the offset the next appended batch must start at or after.
func (w *Writer) NextOffset() int64 { return w.nextOffset }

// MaxTimestamp is the largest batch max timestamp appended, or -1.
func (w *Writer) MaxTimestamp() int64 { return w.maxTS }

// OffsetIndex is the offset index as it stands, for readers of a segment still being written.
func (w *Writer) OffsetIndex() *OffsetIndex {
	return &OffsetIndex{base: w.base, entries: w.offsetEntries[:len(w.offsetEntries):len(w.offsetEntries)]}
}

// TimeIndex is the time index as it stands.
func (w *Writer) TimeIndex() *TimeIndex {
	return &TimeIndex{base: w.base, entries: w.timeEntries[:len(w.timeEntries):len(w.timeEntries)]}
}

// Append writes one or more encoded batches, whose offsets must continue the segment, and adds
// index entries as a broker would. The batches are checked for framing and CRC first, so a bad
// batch is refused before anything is written.
func (w *Writer) Append(batches []byte) error {
	if w.err != nil {
		return w.err
	}
	type placed struct {
		pos, size, last, maxTS int64
	}
	var hdrs [16]placed
	list := hdrs[:0]
	next := w.nextOffset
	sc := NewScanner(bytesReaderAt(batches), "append", int64(len(batches)), ScanOptions{VerifyCRC: true, BufferSize: len(batches)})
	for sc.Next() {
		b := sc.Batch()
		if b.Magic != 2 {
			return fmt.Errorf("segment: refusing to append a magic-%d batch; the writer writes magic 2", b.Magic)
		}
		if b.BaseOffset < next {
			return fmt.Errorf("segment: batch at offset %d does not follow offset %d", b.BaseOffset, next-1)
		}
		if b.LastOffset()-w.base > 1<<31-1 {
			return fmt.Errorf("segment: offset %d is too far from the segment base %d for a relative offset", b.LastOffset(), w.base)
		}
		next = b.NextOffset()
		list = append(list, placed{pos: b.Pos, size: b.Size(), last: b.LastOffset(), maxTS: b.MaxTimestamp})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("segment: refusing to append: %w", err)
	}
	if len(list) == 0 {
		return nil
	}
	if w.size+int64(len(batches)) > 1<<31-1 {
		return fmt.Errorf("segment: %d more bytes would take the segment past 2 GiB, the limit of its index positions", len(batches))
	}
	if _, err := w.log.WriteAt(batches, w.size); err != nil {
		w.err = fmt.Errorf("segment: write %s: %w", w.logPath, err)
		return w.err
	}
	for _, b := range list {
		w.index(w.size+b.pos, b.size, b.last, b.maxTS)
	}
	w.size += int64(len(batches))
	w.nextOffset = next
	return nil
}

// index accounts for a batch appended at pos, adding index entries as a broker does.
func (w *Writer) index(pos, size, last, maxTS int64) {
	if maxTS > w.maxTS {
		w.maxTS, w.maxTSOffset = maxTS, last
	}
	if w.sinceIndex > int64(w.opts.IndexIntervalBytes) {
		w.offsetEntries = appendOffsetEntry(w.offsetEntries, w.base, last, pos)
		w.maybeAppendTimeEntry()
		w.sinceIndex = 0
	}
	w.sinceIndex += size
}

// AppendRecords encodes records as one batch in the writer's codec (snappy by default), at the
// segment's next offset, and appends it. Their Offset fields are ignored.
func (w *Writer) AppendRecords(records []Record) error {
	if len(records) == 0 {
		return nil
	}
	w.bld.Reset()
	for i := range records {
		w.bld.Add(&records[i])
	}
	var err error
	if w.buf, err = w.bld.Build(w.buf[:0], BatchOptions{BaseOffset: w.nextOffset, Codec: w.opts.Codec}); err != nil {
		return err
	}
	return w.Append(w.buf)
}

func (w *Writer) maybeAppendTimeEntry() {
	if w.maxTS > w.lastTimeEntry {
		w.timeEntries = appendTimeEntry(w.timeEntries, w.base, w.maxTS, w.maxTSOffset)
		w.lastTimeEntry = w.maxTS
	}
}

// Sync makes everything appended so far durable in the .log, and writes new index entries.
func (w *Writer) Sync() error {
	if w.err != nil {
		return w.err
	}
	if err := w.log.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages: nothing written since
		// the last good sync can be trusted, so the writer refuses further use.
		w.err = fmt.Errorf("segment: fsync %s: %w", w.logPath, err)
		return w.err
	}
	return w.flushIndexes()
}

// SyncLog fsyncs the .log alone. Unlike every other method it may run concurrently with Append
// (though not with Close): it reads no state that Append changes, which lets a log run one fsync
// for many appends (group commit) while more appends go on. Its error is the caller's to act on.
func (w *Writer) SyncLog() error { return w.log.Sync() }

func (w *Writer) flushIndexes() error {
	if n := len(w.offsetEntries); n > w.idxWritten {
		if _, err := w.idx.WriteAt(w.offsetEntries[w.idxWritten:n], int64(w.idxWritten)); err != nil {
			w.err = fmt.Errorf("segment: write offset index: %w", err)
			return w.err
		}
		w.idxWritten = n
	}
	if n := len(w.timeEntries); n > w.tidxWritten {
		if _, err := w.tidx.WriteAt(w.timeEntries[w.tidxWritten:n], int64(w.tidxWritten)); err != nil {
			w.err = fmt.Errorf("segment: write time index: %w", err)
			return w.err
		}
		w.tidxWritten = n
	}
	return nil
}

// Close adds the final time index entry (the segment's largest timestamp, as a broker adds when a
// segment stops being active), syncs all three files and closes them. The index files hold
// exactly their entries: they are written as they grow, never preallocated, so there is no tail
// to trim.
func (w *Writer) Close() error {
	if w.log == nil {
		return nil
	}
	err := w.err
	if err == nil {
		w.maybeAppendTimeEntry()
		err = w.Sync()
	}
	if err == nil {
		err = errors.Join(w.idx.Sync(), w.tidx.Sync())
	}
	err = errors.Join(err, w.log.Close(), w.idx.Close(), w.tidx.Close())
	w.log, w.idx, w.tidx = nil, nil, nil
	if w.err == nil {
		w.err = errors.New("segment: writer is closed")
	}
	return err
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
