package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/replay/replay/segment"
)

// DirOptions configure a DirSource.
type DirOptions struct {
	// Dir is a Kafka broker's log directory (one of its log.dirs), holding <topic>-<partition>
	// directories. Required.
	Dir string
	// Topic is the topic read. Default "delivery_log".
	Topic string
	// FS is where the files are read. Default vfs.Default.
	FS vfs.FS
	// PollInterval is how often WaitForEnd looks for new data: a broker's writes cannot be
	// watched otherwise. Default 200ms.
	PollInterval time.Duration
}

// EnsureDefaults fills in the defaults of unset fields.
func (o *DirOptions) EnsureDefaults() *DirOptions {
	if o.Topic == "" {
		o.Topic = "delivery_log"
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.PollInterval == 0 {
		o.PollInterval = 200 * time.Millisecond
	}
	return o
}

// Validate reports every field that holds an impossible value.
func (o *DirOptions) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("Dir is required"))
	}
	if o.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("PollInterval is %v, want a positive duration", o.PollInterval))
	}
	return errors.Join(errs...)
}

// DirSource reads a topic from a Kafka broker's log directory in place, read-only. The broker may
// be running: every read lists the partition directory afresh, so segments the broker rolled or
// deleted are seen, a preallocated index's zero tail is ignored, and a batch still being written
// at the end of the active segment is treated as not yet there.
type DirSource struct {
	opts  DirOptions
	parts []*dirPartition
	mu    sync.Mutex
	done  bool
}

var _ Source = (*DirSource)(nil)

type dirPartition struct {
	src *DirSource
	id  int32
	dir string

	mu     sync.Mutex
	sealed map[int64]*sealedSegment // segments that are not the last: immutable
	last   *dirActive
}

// dirActive caches the partition's last segment, reopened when its size changes.
type dirActive struct {
	base  int64
	size  int64
	seg   *segment.Segment
	ref   *fileRef
	end   int64 // offset after its last whole batch
	maxTS int64
}

// OpenDir opens the topic's partitions in a broker's log directory. The partitions must be
// numbered from 0 without a gap.
func OpenDir(o DirOptions) (*DirSource, error) {
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("engine: invalid options: %w", err)
	}
	names, err := o.FS.List(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("engine: reading broker log directory: %w", err)
	}
	found := map[int32]bool{}
	prefix := o.Topic + "-"
	for _, name := range names {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			if n, err := strconv.ParseInt(rest, 10, 32); err == nil && n >= 0 {
				found[int32(n)] = true
			}
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("engine: %s holds no partition of topic %q (no %s<N> directories)", o.Dir, o.Topic, prefix)
	}
	s := &DirSource{opts: o}
	for i := int32(0); i < int32(len(found)); i++ {
		if !found[i] {
			return nil, fmt.Errorf("engine: %s has %d partition directories of %q but not %s%d: is this broker a replica of only some partitions?", o.Dir, len(found), o.Topic, prefix, i)
		}
		s.parts = append(s.parts, &dirPartition{src: s, id: i, dir: o.FS.PathJoin(o.Dir, fmt.Sprintf("%s%d", prefix, i)), sealed: map[int64]*sealedSegment{}})
	}
	return s, nil
}

// Topic is the topic's name.
func (s *DirSource) Topic() string { return s.opts.Topic }

// Partitions is the number of partition directories.
func (s *DirSource) Partitions(context.Context) (int32, error) {
	if s.isClosed() {
		return 0, ErrClosed
	}
	return int32(len(s.parts)), nil
}

func (s *DirSource) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

func (s *DirSource) partition(p int32) (*dirPartition, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	if p < 0 || int(p) >= len(s.parts) {
		return nil, fmt.Errorf("%w %d of %s (it has %d)", ErrUnknownPartition, p, s.opts.Topic, len(s.parts))
	}
	return s.parts[p], nil
}

// Bounds are the partition's log start offset (its first segment's base, or the broker's
// log-start-offset checkpoint when that is later) and end offset.
func (s *DirSource) Bounds(_ context.Context, p int32) (Bounds, error) {
	part, err := s.partition(p)
	if err != nil {
		return Bounds{}, err
	}
	v, release, err := part.view()
	if err != nil {
		return Bounds{}, err
	}
	defer release()
	b := Bounds{End: v.end}
	if len(v.segs) > 0 {
		b.Start = v.segs[0].Base
	}
	if cp, ok := s.logStartCheckpoint(p); ok && cp > b.Start {
		b.Start = min(cp, b.End)
	}
	return b, nil
}

// logStartCheckpoint reads the broker's log-start-offset-checkpoint file (version, count, then
// "topic partition offset" lines) for partition p.
func (s *DirSource) logStartCheckpoint(p int32) (int64, bool) {
	b, err := readFile(s.opts.FS, s.opts.FS.PathJoin(s.opts.Dir, "log-start-offset-checkpoint"))
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 0; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if line < 2 || len(f) != 3 || f[0] != s.opts.Topic || f[1] != strconv.Itoa(int(p)) {
			continue
		}
		if off, err := strconv.ParseInt(f[2], 10, 64); err == nil {
			return off, true
		}
	}
	return 0, false
}

// OffsetForTime answers ListOffsets by timestamp.
func (s *DirSource) OffsetForTime(ctx context.Context, p int32, ts int64) (int64, bool, error) {
	part, err := s.partition(p)
	if err != nil {
		return 0, false, err
	}
	v, release, err := part.view()
	if err != nil {
		return 0, false, err
	}
	defer release()
	return v.offsetForTime(ctx, ts)
}

// Scan calls fn for each batch from the one holding from up to the end offset.
func (s *DirSource) Scan(ctx context.Context, p int32, from int64, fn func(*segment.Batch) error) error {
	part, err := s.partition(p)
	if err != nil {
		return err
	}
	v, release, err := part.view()
	if err != nil {
		return err
	}
	defer release()
	return v.scan(ctx, from, fn)
}

// ReadBatches calls fn for each distinct batch holding one of the ascending offsets.
func (s *DirSource) ReadBatches(ctx context.Context, p int32, offsets []int64, fn func(*segment.Batch) error) error {
	part, err := s.partition(p)
	if err != nil {
		return err
	}
	v, release, err := part.view()
	if err != nil {
		return err
	}
	defer release()
	return v.readBatches(ctx, offsets, fn)
}

// WaitForEnd polls the partition until its end offset passes offset.
func (s *DirSource) WaitForEnd(ctx context.Context, p int32, offset int64) (int64, error) {
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	for {
		b, err := s.Bounds(ctx, p)
		if err != nil {
			return 0, err
		}
		if b.End > offset {
			return b.End, nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return b.End, ctx.Err()
		}
	}
}

// Close closes every open segment. It is idempotent.
func (s *DirSource) Close() error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil
	}
	s.done = true
	s.mu.Unlock()
	var errs []error
	for _, p := range s.parts {
		p.mu.Lock()
		for _, seg := range p.sealed {
			errs = append(errs, seg.ref.retire())
		}
		if p.last != nil {
			errs = append(errs, p.last.ref.retire())
		}
		p.sealed, p.last = nil, nil
		p.mu.Unlock()
	}
	return errors.Join(errs...)
}

// view lists the partition directory and returns its segments as they are now.
func (p *dirPartition) view() (*segments, func(), error) {
	fs := p.src.opts.FS
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		names, err := fs.List(p.dir)
		if err != nil {
			return nil, nil, err
		}
		var bases []int64
		for _, name := range names {
			if base, ext, ok := segment.ParseFileName(name); ok && ext == segment.LogExt {
				bases = append(bases, base)
			}
		}
		sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
		v, release, err := p.viewOf(bases)
		if err == nil {
			return v, release, nil
		}
		if !isNotExist(err) {
			return nil, nil, err
		}
		lastErr = err // a segment was deleted between the listing and the open: list again
	}
	return nil, nil, lastErr
}

func (p *dirPartition) viewOf(bases []int64) (*segments, func(), error) {
	fs := p.src.opts.FS
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sealed == nil {
		return nil, nil, ErrClosed
	}
	v := &segments{liveTail: true}
	var refs []*fileRef
	// unref gives the references back; called with mu (the error paths below hold it already:
	// taking it again there deadlocked Bounds when retention deleted a segment between the
	// listing and its open).
	unref := func() {
		for _, r := range refs {
			r.release()
		}
	}
	release := func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		unref()
	}
	keep := map[int64]bool{}
	for i, base := range bases {
		if i == len(bases)-1 {
			// The last segment is read as the live one. If it was cached as sealed (the broker
			// truncated its log into it), that copy goes: the segment grows again and will be
			// sealed anew by a roll.
			break
		}
		keep[base] = true
		s := p.sealed[base]
		if s == nil {
			if p.last != nil && p.last.base == base {
				// The broker rolled: the segment we knew as the last is now sealed. Its
				// indexes have their final entries now, so open it afresh.
				p.last.ref.retire()
				p.last = nil
			}
			seg, err := segment.OpenSegment(fs, p.dir, base)
			if err != nil {
				unref()
				return nil, nil, err
			}
			s = &sealedSegment{seg: seg, maxTS: sealedMaxTimestamp(seg), ref: &fileRef{c: seg}}
			p.sealed[base] = s
		}
		s.ref.refs++
		refs = append(refs, s.ref)
		v.segs = append(v.segs, s.seg)
		v.maxTS = append(v.maxTS, s.maxTS)
	}
	for base, s := range p.sealed {
		if !keep[base] { // deleted by the broker's retention
			s.ref.retire()
			delete(p.sealed, base)
		}
	}
	if len(bases) == 0 {
		return v, release, nil
	}
	last, err := p.lastSegment(bases[len(bases)-1])
	if err != nil {
		unref()
		return nil, nil, err
	}
	last.ref.refs++
	refs = append(refs, last.ref)
	v.segs = append(v.segs, last.seg)
	v.maxTS = append(v.maxTS, -1)
	v.end = last.end
	return v, release, nil
}

// lastSegment returns the partition's last segment, reopened if it grew, with the offset after
// its last whole batch. Called with mu.
func (p *dirPartition) lastSegment(base int64) (*dirActive, error) {
	fs := p.src.opts.FS
	st, err := fs.Stat(fs.PathJoin(p.dir, segment.FileName(base, segment.LogExt)))
	if err != nil {
		return nil, err
	}
	if p.last != nil && p.last.base == base && p.last.size == st.Size() {
		return p.last, nil
	}
	seg, err := segment.OpenSegment(fs, p.dir, base)
	if err != nil {
		return nil, err
	}
	a := &dirActive{base: base, size: seg.Size(), seg: seg, ref: &fileRef{c: seg}, end: base}
	// The end is after the last whole batch: scan from the last offset index entry.
	var start int64
	if x := seg.OffsetIndex(); x != nil && x.Len() > 0 {
		if _, pos := x.Entry(x.Len() - 1); pos < seg.Size() {
			start = pos
		}
	}
	sc := seg.Scanner(segment.ScanOptions{Start: start})
	for sc.Next() {
		a.end = sc.Batch().NextOffset()
	}
	if err := sc.Err(); err != nil && !segment.IsTornTail(err) {
		seg.Close()
		return nil, err
	}
	if p.last != nil {
		p.last.ref.retire()
	}
	p.last = a
	return a, nil
}

var _ io.Closer = (*segment.Segment)(nil)
