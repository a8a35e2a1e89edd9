package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/replay/replay/segment"
)

// metaFile records what a data directory holds, so that a log is never reopened with another
// partition count (which would send keys to other partitions than before).
const metaFile = "replay-log.json"

type logMeta struct {
	Version    int    `json:"version"`
	Topic      string `json:"topic"`
	Partitions int32  `json:"partitions"`
}

// Record is a record to append.
type Record struct {
	Key       []byte // the webhook id; routes the record to its partition
	Value     []byte
	Headers   []segment.Header
	Timestamp int64 // CreateTime in ms; 0 means the log's clock at append
}

// Appended says where an appended record went.
type Appended struct {
	Partition int32
	Offset    int64
}

// Log is the embedded storage engine: a topic's partitions in Kafka's directory layout under one
// data directory, appended to by this process and read through the Source interface. Appends to
// one partition are serialised; reads run concurrently with them and see only whole, durable
// batches.
type Log struct {
	opts   Options
	parts  []*partition
	lock   io.Closer
	closed atomic.Bool
	rr     atomic.Uint32 // round robin for records without a key
	pool   sync.Pool     // *encoder
}

type encoder struct {
	bld segment.Builder
	buf []byte
}

var _ Source = (*Log)(nil)

// waitLock takes the lock file, retrying for up to timeout while another process holds it. A
// file lock held by another process gives no signal when it is let go: the wait is a retry
// every 50ms, which ends early when ctx does.
func waitLock(ctx context.Context, fs FS, path string, timeout time.Duration) (io.Closer, error) {
	lock, err := fs.Lock(path)
	if err == nil || timeout <= 0 {
		return lock, err
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	retry := time.NewTicker(50 * time.Millisecond)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, err
		case <-deadline.C:
			return nil, err
		case <-retry.C:
			if lock, err = fs.Lock(path); err == nil {
				return lock, nil
			}
		}
	}
}

// Open opens the log in opts.Dir, creating it if needed, and recovers every partition: a torn
// or corrupt tail of an active segment is truncated (logged), missing or unusable index files
// are rebuilt, and old segments past retention are deleted.
func Open(opts Options) (*Log, error) { return OpenContext(context.Background(), opts) }

// OpenContext is Open, except that waiting for the log's lock (up to LockTimeout) ends early,
// with ctx's error, when ctx is done.
func OpenContext(ctx context.Context, opts Options) (*Log, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("engine: invalid options: %w", err)
	}
	fs := opts.FS
	if err := fs.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	lock, err := waitLock(ctx, fs, fs.PathJoin(opts.Dir, ".lock"), opts.LockTimeout)
	if ctx.Err() != nil && err != nil {
		return nil, fmt.Errorf("engine: waiting for the lock of %s: %w", opts.Dir, ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("engine: %s is in use by another process (waited %v): %w", opts.Dir, max(opts.LockTimeout, 0), err)
	}
	l := &Log{opts: opts, lock: lock}
	if err := l.open(); err != nil {
		for _, p := range l.parts {
			p.close()
		}
		lock.Close()
		return nil, err
	}
	if _, err := l.EnforceRetention(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Log) open() error {
	fs, opts := l.opts.FS, &l.opts
	metaPath := fs.PathJoin(opts.Dir, metaFile)
	var meta logMeta
	if b, err := readFile(fs, metaPath); err == nil {
		if err := json.Unmarshal(b, &meta); err != nil {
			return fmt.Errorf("engine: %s: %w", metaPath, err)
		}
		if meta.Topic != opts.Topic {
			return fmt.Errorf("engine: %s holds topic %q, not %q", opts.Dir, meta.Topic, opts.Topic)
		}
		if opts.Partitions != 0 && opts.Partitions != meta.Partitions {
			return fmt.Errorf("engine: %s was created with %d partitions; opening it with %d would send webhooks to other partitions than their events are in", opts.Dir, meta.Partitions, opts.Partitions)
		}
	} else if errors.Is(err, os.ErrNotExist) {
		meta = logMeta{Version: 1, Topic: opts.Topic, Partitions: opts.Partitions}
		if meta.Partitions == 0 {
			meta.Partitions = 8
		}
		b, _ := json.Marshal(meta)
		if err := WriteFileAtomic(fs, metaPath, b); err != nil {
			return err
		}
	} else {
		return err
	}
	opts.Partitions = meta.Partitions
	for i := int32(0); i < meta.Partitions; i++ {
		p, err := openPartition(l, i)
		if err != nil {
			return err
		}
		l.parts = append(l.parts, p)
	}
	return nil
}

// Options are the options the log runs with, defaults filled in.
func (l *Log) Options() Options { return l.opts }

// Topic is the topic's name.
func (l *Log) Topic() string { return l.opts.Topic }

// Partitions is the partition count.
func (l *Log) Partitions(context.Context) (int32, error) {
	if l.closed.Load() {
		return 0, ErrClosed
	}
	return int32(len(l.parts)), nil
}

func (l *Log) partition(p int32) (*partition, error) {
	if l.closed.Load() {
		return nil, ErrClosed
	}
	if p < 0 || int(p) >= len(l.parts) {
		return nil, fmt.Errorf("%w %d of %s (it has %d)", ErrUnknownPartition, p, l.opts.Topic, len(l.parts))
	}
	return l.parts[p], nil
}

// Append routes each record to its key's partition (Kafka's default partitioner), writes them as
// batches in the log's codec, and returns where each went, in the order given. Under SyncAlways
// the records are durable when it returns. If it fails, records routed to other partitions may
// have been appended: retrying may store them twice, as with any Kafka producer.
func (l *Log) Append(ctx context.Context, recs []Record) ([]Appended, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if l.closed.Load() {
		return nil, ErrClosed
	}
	n := int32(len(l.parts))
	out := make([]Appended, len(recs))
	byPart := make(map[int32][]int, 1)
	for i := range recs {
		var p int32
		if recs[i].Key == nil {
			p = int32(l.rr.Add(1) % uint32(n))
		} else {
			p = PartitionFor(recs[i].Key, n)
		}
		byPart[p] = append(byPart[p], i)
		out[i].Partition = p
	}
	now := l.opts.Now().UnixMilli()
	enc, _ := l.pool.Get().(*encoder)
	if enc == nil {
		enc = &encoder{}
	}
	defer l.pool.Put(enc)
	for p, idx := range byPart {
		enc.buf = enc.buf[:0]
		enc.bld.Reset()
		for _, i := range idx {
			r := &recs[i]
			ts := r.Timestamp
			if ts == 0 {
				ts = now
			}
			enc.bld.Add(&segment.Record{Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: ts})
			if enc.bld.Size() >= l.opts.MaxBatchBytes {
				if err := l.cut(enc); err != nil {
					return nil, err
				}
			}
		}
		if enc.bld.Len() > 0 {
			if err := l.cut(enc); err != nil {
				return nil, err
			}
		}
		base, err := l.parts[p].append(enc.buf)
		if err != nil {
			return nil, err
		}
		for k, i := range idx {
			out[i].Offset = base + int64(k)
		}
	}
	return out, nil
}

// cut encodes the records in the builder as one more batch.
func (l *Log) cut(enc *encoder) error {
	var err error
	enc.buf, err = enc.bld.Build(enc.buf, segment.BatchOptions{Codec: l.opts.Codec})
	enc.bld.Reset()
	return err
}

// AppendBatches appends already encoded magic-2 batches to partition p as they are, giving them
// the partition's next offsets (their base offsets are rewritten; the CRC does not cover them).
// It returns the offset of the first record. Mirrors and tests use it to keep batch boundaries.
func (l *Log) AppendBatches(ctx context.Context, p int32, raw []byte) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	part, err := l.partition(p)
	if err != nil {
		return 0, err
	}
	return part.append(raw)
}

// Bounds are the partition's log start and end offsets.
func (l *Log) Bounds(_ context.Context, p int32) (Bounds, error) {
	part, err := l.partition(p)
	if err != nil {
		return Bounds{}, err
	}
	return part.bounds(), nil
}

// OffsetForTime answers ListOffsets by timestamp.
func (l *Log) OffsetForTime(ctx context.Context, p int32, ts int64) (int64, bool, error) {
	part, err := l.partition(p)
	if err != nil {
		return 0, false, err
	}
	v, release := part.view()
	defer release()
	return v.offsetForTime(ctx, ts)
}

// Scan calls fn for each batch from the one holding from up to the end offset.
func (l *Log) Scan(ctx context.Context, p int32, from int64, fn func(*segment.Batch) error) error {
	part, err := l.partition(p)
	if err != nil {
		return err
	}
	v, release := part.view()
	defer release()
	return v.scan(ctx, from, fn)
}

// ReadBatches calls fn for each distinct batch holding one of the ascending offsets.
func (l *Log) ReadBatches(ctx context.Context, p int32, offsets []int64, fn func(*segment.Batch) error) error {
	part, err := l.partition(p)
	if err != nil {
		return err
	}
	v, release := part.view()
	defer release()
	return v.readBatches(ctx, offsets, fn)
}

// WaitForEnd blocks until the partition's end offset passes offset.
func (l *Log) WaitForEnd(ctx context.Context, p int32, offset int64) (int64, error) {
	part, err := l.partition(p)
	if err != nil {
		return 0, err
	}
	return part.waitForEnd(ctx, offset)
}

// EnforceRetention deletes, in every partition, the oldest segments whose largest timestamp is
// older than the retention period, never the active segment, and returns how many it deleted.
func (l *Log) EnforceRetention() (int, error) {
	if l.opts.Retention < 0 {
		return 0, nil
	}
	cutoff := l.opts.Now().Add(-l.opts.Retention).UnixMilli()
	total := 0
	var errs []error
	for _, p := range l.parts {
		n, err := p.deleteOlderThan(cutoff)
		total += n
		errs = append(errs, err)
	}
	return total, errors.Join(errs...)
}

// Check verifies the log on disk: every segment's batches, records and indexes
// (segment.CheckSegment), that each partition's segments follow each other without a gap, and
// that the partition's end is where its last segment ends. Run it on a log nobody is appending to.
func (l *Log) Check() error {
	if l.closed.Load() {
		return ErrClosed
	}
	var errs []error
	for _, p := range l.parts {
		errs = append(errs, p.check())
	}
	return errors.Join(errs...)
}

// Close syncs and closes every partition. It is idempotent; the log's methods return ErrClosed
// afterwards.
func (l *Log) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, p := range l.parts {
		errs = append(errs, p.close())
	}
	errs = append(errs, l.lock.Close())
	return errors.Join(errs...)
}

func readFile(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// WriteFileAtomic writes a small file so that a crash leaves either the old or the new content:
// a temporary file, fsynced, renamed over the old one, and the directory fsynced.
func WriteFileAtomic(fs vfs.FS, path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(fs, fs.PathDir(path))
}

// SyncDir fsyncs a directory, making the names created, renamed or removed in it durable.
func SyncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}
