package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/replay/replay/segment"
)

// partition is one partition of a Log: sealed segments, read-only, and the active segment that
// appends go to.
//
// Locking: mu guards all fields. An append holds mu while it writes; the fsync that makes writes
// durable runs outside mu, by whichever appender holds syncMu (group commit: appends that wrote
// while it ran are covered by the next one). A roll waits for a running fsync, since it closes
// the file being synced.
type partition struct {
	log *Log
	id  int32
	dir string

	syncMu sync.Mutex
	mu     sync.Mutex
	cond   *sync.Cond // signalled when syncing goes false

	sealed []*sealedSegment
	active *segment.Writer
	reader *fileRef // read handle of the active segment's .log
	// firstTS is the max timestamp of the active segment's first batch (-1 if empty): the
	// reference point for rolling by age.
	firstTS int64

	written     int64 // next offset to be written
	durable     int64 // offsets below are on disk (all of them under SyncNever: readers see them)
	durableSize int64 // bytes of the active segment readers may see
	syncing     bool
	failed      error // after a failed write or fsync: nothing more is appended
	notify      chan struct{}
	closed      bool
}

type sealedSegment struct {
	seg   *segment.Segment
	maxTS int64
	ref   *fileRef
}

// fileRef counts the reads using a file, so that a segment deleted by retention or a read handle
// retired by a roll is closed only when its last read is done.
type fileRef struct {
	c       io.Closer
	refs    int
	retired bool
}

func (r *fileRef) release() error {
	r.refs--
	if r.retired && r.refs == 0 {
		return r.c.Close()
	}
	return nil
}

func (r *fileRef) retire() error {
	r.retired = true
	if r.refs == 0 {
		return r.c.Close()
	}
	return nil
}

func partitionDir(topic string, p int32) string { return fmt.Sprintf("%s-%d", topic, p) }

func openPartition(l *Log, id int32) (*partition, error) {
	fs := l.opts.FS
	p := &partition{log: l, id: id, dir: fs.PathJoin(l.opts.Dir, partitionDir(l.opts.Topic, id)), firstTS: -1, notify: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	if err := fs.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	names, err := fs.List(p.dir)
	if err != nil {
		return nil, err
	}
	logs := map[int64]bool{}
	for _, name := range names {
		if base, ext, ok := segment.ParseFileName(name); ok && ext == segment.LogExt {
			logs[base] = true
		}
	}
	var bases []int64
	for _, name := range names {
		base, ext, ok := segment.ParseFileName(name)
		switch {
		case ok && ext == segment.LogExt:
			bases = append(bases, base)
		case ok && (ext == segment.IndexExt || ext == segment.TimeIndexExt) && !logs[base],
			strings.HasSuffix(name, ".tmp"):
			// Left by a crash between deleting a segment's files, or writing a file atomically.
			if err := fs.Remove(fs.PathJoin(p.dir, name)); err != nil {
				return nil, err
			}
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	if len(bases) == 0 {
		return p, p.startSegment(0)
	}
	for _, base := range bases[:len(bases)-1] {
		s, err := p.openSealed(base)
		if err != nil {
			return nil, err
		}
		p.sealed = append(p.sealed, s)
	}
	if err := p.recoverActive(bases[len(bases)-1]); err != nil {
		return nil, err
	}
	return p, nil
}

// openSealed opens a segment that is no longer written, rebuilding its indexes when they are
// missing or unusable (a crash during a roll can leave them so).
func (p *partition) openSealed(base int64) (*sealedSegment, error) {
	fs := p.log.opts.FS
	seg, err := segment.OpenSegment(fs, p.dir, base)
	if err != nil {
		return nil, err
	}
	if problem := indexProblem(seg); problem != "" {
		p.log.opts.Logger.Warn("rebuilding segment indexes", "segment", seg.Path, "reason", problem)
		seg.Close()
		w, err := segment.OpenWriter(p.dir, base, segment.WriterOptions{FS: fs, IndexIntervalBytes: p.log.opts.IndexIntervalBytes})
		if err != nil {
			return nil, fmt.Errorf("engine: segment %s is corrupt and is not the active one; refusing to drop the records after it: %w", seg.Path, err)
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		if seg, err = segment.OpenSegment(fs, p.dir, base); err != nil {
			return nil, err
		}
	}
	return &sealedSegment{seg: seg, maxTS: sealedMaxTimestamp(seg), ref: &fileRef{c: seg}}, nil
}

func indexProblem(seg *segment.Segment) string {
	if seg.IndexErr != nil {
		return seg.IndexErr.Error()
	}
	if seg.OffsetIndex() == nil || seg.TimeIndex() == nil {
		return "index file missing"
	}
	if x := seg.OffsetIndex(); x.Len() > 0 {
		if _, pos := x.Entry(x.Len() - 1); pos >= seg.Size() {
			return fmt.Sprintf("offset index points at byte %d of a %d-byte log", pos, seg.Size())
		}
	}
	if seg.Size() > 0 && seg.TimeIndex().Len() == 0 {
		return "time index has no entry for a segment with records"
	}
	return ""
}

// recoverActive opens the last segment for appending. A torn or corrupt tail (a crash during a
// write, which no Append had acknowledged) is truncated away.
func (p *partition) recoverActive(base int64) error {
	fs := p.log.opts.FS
	wopts := segment.WriterOptions{FS: fs, IndexIntervalBytes: p.log.opts.IndexIntervalBytes}
	w, err := segment.OpenWriter(p.dir, base, wopts)
	var ce *segment.CorruptionError
	if errors.As(err, &ce) {
		path := fs.PathJoin(p.dir, segment.FileName(base, segment.LogExt))
		st, serr := fs.Stat(path)
		if serr != nil {
			return serr
		}
		p.log.opts.Logger.Warn("truncating corrupt tail of active segment", "segment", path,
			"position", ce.Pos, "bytes_dropped", st.Size()-ce.Pos, "reason", ce.Error())
		if err := fs.Truncate(path, ce.Pos); err != nil {
			return err
		}
		w, err = segment.OpenWriter(p.dir, base, wopts)
	}
	if err != nil {
		return err
	}
	if err := p.attachActive(w); err != nil {
		w.Close()
		return err
	}
	if w.Size() > 0 {
		b, _, err := segment.ReadBatchAt(p.reader.c.(vfs.File), "", w.Size(), 0, nil)
		if err != nil {
			return err
		}
		p.firstTS = b.MaxTimestamp
	}
	return nil
}

func (p *partition) attachActive(w *segment.Writer) error {
	fs := p.log.opts.FS
	f, err := fs.Open(fs.PathJoin(p.dir, segment.FileName(w.Base(), segment.LogExt)))
	if err != nil {
		return err
	}
	p.active, p.reader = w, &fileRef{c: f}
	p.written, p.durable, p.durableSize = w.NextOffset(), w.NextOffset(), w.Size()
	p.firstTS = -1
	return nil
}

// startSegment creates a new active segment at base and makes its name durable.
func (p *partition) startSegment(base int64) error {
	fs := p.log.opts.FS
	w, err := segment.CreateWriter(p.dir, base, segment.WriterOptions{FS: fs, IndexIntervalBytes: p.log.opts.IndexIntervalBytes})
	if err != nil {
		return err
	}
	if err := SyncDir(fs, p.dir); err != nil {
		w.Close()
		return err
	}
	return p.attachActive(w)
}

// roll seals the active segment (sync, final index entries) and starts a new one. Called with mu.
func (p *partition) roll() error {
	for p.syncing {
		p.cond.Wait()
	}
	w := p.active
	if err := w.Close(); err != nil {
		return p.fail(fmt.Errorf("%w: sealing %s: %w", ErrSync, p.dir, err))
	}
	p.setDurable(w.NextOffset(), w.Size())
	s, err := segment.OpenSegment(p.log.opts.FS, p.dir, w.Base())
	if err != nil {
		return p.fail(err)
	}
	p.sealed = append(p.sealed, &sealedSegment{seg: s, maxTS: max(w.MaxTimestamp(), sealedMaxTimestamp(s)), ref: &fileRef{c: s}})
	if err := p.reader.retire(); err != nil {
		return p.fail(err)
	}
	if err := p.startSegment(w.NextOffset()); err != nil {
		return p.fail(err)
	}
	return nil
}

func (p *partition) fail(err error) error {
	if p.failed == nil {
		p.failed = err
	}
	return err
}

// setDurable moves the end readers see. Called with mu.
func (p *partition) setDurable(offset, size int64) {
	if offset > p.durable {
		p.durable, p.durableSize = offset, size
		close(p.notify)
		p.notify = make(chan struct{})
	}
}

// append writes encoded batches and returns the offset of their first record.
func (p *partition) append(raw []byte) (int64, error) {
	last, maxTS, firstMaxTS, err := assignOffsets(raw, 0)
	if err != nil {
		return 0, err
	}
	opts := &p.log.opts
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	if p.failed != nil {
		p.mu.Unlock()
		return 0, fmt.Errorf("engine: partition %d refuses appends after an earlier failure (reopen the log to recover): %w", p.id, p.failed)
	}
	w := p.active
	tooBig := w.Size() > 0 && w.Size()+int64(len(raw)) > opts.SegmentBytes
	tooOld := p.firstTS >= 0 && maxTS-p.firstTS > opts.SegmentAge.Milliseconds()
	tooFar := p.written+last-w.Base() > 1<<31-1
	if tooBig || tooOld || tooFar {
		if err := p.roll(); err != nil {
			p.mu.Unlock()
			return 0, err
		}
		w = p.active
	}
	// Only now, after a roll (which may let other appends in while it waits for an fsync), is
	// the next offset known.
	base := p.written
	if _, _, _, err := assignOffsets(raw, base); err != nil {
		p.mu.Unlock()
		return 0, err
	}
	if err := w.Append(raw); err != nil {
		p.fail(err)
		p.mu.Unlock()
		return 0, err
	}
	if p.firstTS < 0 {
		p.firstTS = firstMaxTS
	}
	p.written = w.NextOffset()
	end := p.written
	if opts.Sync == SyncNever {
		p.setDurable(end, w.Size())
		p.mu.Unlock()
		return base, nil
	}
	p.mu.Unlock()
	return base, p.waitDurable(end)
}

// waitDurable returns once offsets below end are on disk, running an fsync unless one that covers
// them already ran.
func (p *partition) waitDurable(end int64) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	p.mu.Lock()
	if p.durable >= end {
		p.mu.Unlock()
		return nil
	}
	if p.failed != nil {
		err := p.failed
		p.mu.Unlock()
		return err
	}
	w, target, size := p.active, p.written, p.active.Size()
	p.syncing = true
	p.mu.Unlock()

	err := w.SyncLog()

	p.mu.Lock()
	defer p.mu.Unlock()
	p.syncing = false
	p.cond.Broadcast()
	if err != nil {
		return p.fail(fmt.Errorf("%w: %s: %w", ErrSync, p.dir, err))
	}
	p.setDurable(target, size)
	return nil
}

// assignOffsets rewrites the base offsets of the batches in raw to follow from base, and returns
// the last offset relative to base, the largest max timestamp and the first batch's.
func assignOffsets(raw []byte, base int64) (last, maxTS, firstMaxTS int64, err error) {
	batches := 0
	next := base
	maxTS = -1 << 63
	sc := segment.NewScanner(bytesAt(raw), "append", int64(len(raw)), segment.ScanOptions{BufferSize: len(raw)})
	for sc.Next() {
		b := sc.Batch()
		if b.Magic != 2 {
			return 0, 0, 0, fmt.Errorf("engine: cannot append a magic-%d batch", b.Magic)
		}
		segment.SetBaseOffset(raw[b.Pos:], next)
		next += int64(b.LastOffsetDelta) + 1
		if batches == 0 {
			firstMaxTS = b.MaxTimestamp
		}
		maxTS = max(maxTS, b.MaxTimestamp)
		batches++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, 0, fmt.Errorf("engine: %w", err)
	}
	if batches == 0 {
		return 0, 0, 0, errors.New("engine: nothing to append")
	}
	return next - 1 - base, maxTS, firstMaxTS, nil
}

type bytesAt []byte

func (b bytesAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (p *partition) bounds() Bounds {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := p.active.Base()
	if len(p.sealed) > 0 {
		start = p.sealed[0].seg.Base
	}
	return Bounds{Start: start, End: p.durable}
}

// view is the partition as a read sees it; release must be called when the read is done.
func (p *partition) view() (*segments, func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v := &segments{end: p.durable}
	refs := make([]*fileRef, 0, len(p.sealed)+1)
	for _, s := range p.sealed {
		v.segs = append(v.segs, s.seg)
		v.maxTS = append(v.maxTS, s.maxTS)
		s.ref.refs++
		refs = append(refs, s.ref)
	}
	w := p.active
	path := p.log.opts.FS.PathJoin(p.dir, segment.FileName(w.Base(), segment.LogExt))
	v.segs = append(v.segs, segment.NewSegment(w.Base(), path, p.reader.c.(io.ReaderAt), p.durableSize, w.OffsetIndex(), w.TimeIndex()))
	v.maxTS = append(v.maxTS, -1)
	p.reader.refs++
	refs = append(refs, p.reader)
	return v, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, r := range refs {
			r.release()
		}
	}
}

func (p *partition) waitForEnd(ctx context.Context, offset int64) (int64, error) {
	for {
		p.mu.Lock()
		end, ch, closed := p.durable, p.notify, p.closed
		p.mu.Unlock()
		if closed {
			return end, ErrClosed
		}
		if end > offset {
			return end, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return end, ctx.Err()
		}
	}
}

// deleteOlderThan deletes the oldest sealed segments whose largest timestamp is below cutoff.
func (p *partition) deleteOlderThan(cutoff int64) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fs := p.log.opts.FS
	n := 0
	for len(p.sealed) > 0 && p.sealed[0].maxTS >= 0 && p.sealed[0].maxTS < cutoff {
		s := p.sealed[0]
		// The .log goes last: a crash in between leaves a whole segment or orphaned indexes,
		// which the next open removes.
		for _, ext := range []string{segment.TimeIndexExt, segment.IndexExt, segment.LogExt} {
			if err := fs.Remove(fs.PathJoin(p.dir, segment.FileName(s.seg.Base, ext))); err != nil && !isNotExist(err) {
				return n, err
			}
		}
		p.log.opts.Logger.Info("retention deleted segment", "segment", s.seg.Path, "max_timestamp", s.maxTS)
		p.sealed = p.sealed[1:]
		if err := s.ref.retire(); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (p *partition) check() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	fs := p.log.opts.FS
	if p.failed == nil && !p.closed {
		if err := p.active.Sync(); err != nil { // writes the index entries Check reads
			return err
		}
	}
	var errs []error
	next := int64(-1)
	bases := make([]int64, 0, len(p.sealed)+1)
	for _, s := range p.sealed {
		bases = append(bases, s.seg.Base)
	}
	bases = append(bases, p.active.Base())
	for i, base := range bases {
		if err := segment.CheckSegment(fs, p.dir, base); err != nil {
			errs = append(errs, err)
		}
		if next >= 0 && base != next {
			errs = append(errs, fmt.Errorf("%s: segment %d starts at offset %d, the previous one ends before %d", p.dir, i, base, next))
		}
		if i < len(p.sealed) {
			next = lastOffsetOf(p.sealed[i].seg) + 1
		}
	}
	if p.durable != p.active.NextOffset() {
		errs = append(errs, fmt.Errorf("%s: end offset %d, active segment ends before %d", p.dir, p.durable, p.active.NextOffset()))
	}
	return errors.Join(errs...)
}

func lastOffsetOf(seg *segment.Segment) int64 {
	last := seg.Base - 1
	sc := seg.Scanner(segment.ScanOptions{})
	for sc.Next() {
		last = sc.Batch().LastOffset()
	}
	return last
}

func (p *partition) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	for p.syncing {
		p.cond.Wait()
	}
	p.closed = true
	close(p.notify)
	var errs []error
	if p.active != nil {
		errs = append(errs, p.active.Close())
	}
	if p.reader != nil {
		errs = append(errs, p.reader.retire())
	}
	for _, s := range p.sealed {
		errs = append(errs, s.ref.retire())
	}
	return errors.Join(errs...)
}

func isNotExist(err error) bool { return errors.Is(err, errNotExist) }
