package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/indextest"
	"github.com/replay/replay/segment"
)

// segmentFiles are the .log files of a partition directory, ascending by base offset.
func segmentFiles(t testing.TB, pdir string) []int64 {
	t.Helper()
	names, err := os.ReadDir(pdir)
	if err != nil {
		t.Fatal(err)
	}
	var bases []int64
	for _, n := range names {
		if base, ext, ok := segment.ParseFileName(n.Name()); ok && ext == segment.LogExt {
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)
	return bases
}

// batchBounds are the byte positions and base offsets of the whole batches of a .log file.
func batchBounds(t testing.TB, path string) (pos, base []int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	sc := segment.NewScanner(f, path, st.Size(), segment.ScanOptions{})
	for sc.Next() {
		pos = append(pos, sc.Batch().Pos)
		base = append(base, sc.Batch().BaseOffset)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scanning %s: %v", path, err)
	}
	return pos, base
}

// removeSegment deletes a segment's files (and a broker's producer snapshot at its base).
func removeSegment(t testing.TB, pdir string, base int64) {
	t.Helper()
	for _, ext := range []string{segment.LogExt, segment.IndexExt, segment.TimeIndexExt, ".snapshot"} {
		if err := os.Remove(filepath.Join(pdir, segment.FileName(base, ext))); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
}

// summaries are partition p's bucket summaries (bucket → largest offset), read from Pebble.
func summaries(t testing.TB, ix *Index, p int32) map[uint32]int64 {
	t.Helper()
	it, err := ix.db.NewIter(&pebble.IterOptions{LowerBound: appendPartKey(nil, prefixSummary, p), UpperBound: partitionEnd(prefixSummary, p)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	out := map[uint32]int64{}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			t.Fatal(err)
		}
		x, _ := binary.Uvarint(v)
		out[binary.BigEndian.Uint32(it.Key()[5:])] = int64(x)
	}
	return out
}

func allEntries(t testing.TB, ix *Index) []Entry {
	t.Helper()
	var out []Entry
	if err := ix.Entries(-1, func(e Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameAsRebuild builds a fresh index of src and requires ix to hold exactly its entries,
// summaries and checkpoints: what a truncation left plus what was indexed after it is what a
// rebuild from scratch indexes.
func sameAsRebuild(t *testing.T, ix *Index, src engine.Source, dir string) {
	t.Helper()
	fresh := openIndex(t, Options{Dir: dir, Retention: -1})
	build(t, fresh, src)
	got, want := allEntries(t, ix), allEntries(t, fresh)
	if len(got) != len(want) {
		t.Fatalf("index has %d entries, a rebuild %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Partition != w.Partition || g.Bucket != w.Bucket || g.Webhook != w.Webhook || !slices.Equal(g.Offsets, w.Offsets) {
			t.Fatalf("entry %d: index has %+v, a rebuild %+v", i, g, w)
		}
	}
	n, err := src.Partitions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < n; p++ {
		gs, ws := summaries(t, ix, p), summaries(t, fresh, p)
		if fmt.Sprint(gs) != fmt.Sprint(ws) {
			t.Fatalf("partition %d: summaries %v, a rebuild's %v", p, gs, ws)
		}
		gc, _, err1 := ix.Checkpoint(p)
		wc, _, err2 := fresh.Checkpoint(p)
		if err := errors.Join(err1, err2); err != nil || gc != wc {
			t.Fatalf("partition %d: checkpoint %d, a rebuild's %d (%v)", p, gc, wc, err)
		}
	}
}

// lookupsExact checks, for every webhook of truth and windows aligned to buckets (where the index
// is exact), that Lookup returns exactly the batches a brute-force scan finds, none at or past the
// log end.
func lookupsExact(t *testing.T, ix *Index, src engine.Source, start time.Time, span time.Duration) {
	t.Helper()
	ctx := context.Background()
	truth, err := indextest.TruthAll(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	w := ix.Options().BucketWidth
	windows := [][2]time.Time{{start.Add(-10 * time.Minute), start.Add(span + 10*time.Minute)}}
	for from := start.Truncate(w); from.Before(start.Add(span)); from = from.Add(17 * w) {
		windows = append(windows, [2]time.Time{from, from.Add(9 * w)})
	}
	n := 0
	for key, occ := range truth {
		for _, win := range windows {
			from, to := win[0].UnixMilli(), win[1].UnixMilli()
			res, err := ix.Lookup(ctx, src, []byte(key), from, to)
			if err != nil {
				t.Fatal(err)
			}
			exp := indextest.Batches(occ, from, to)
			if !slices.Equal(res.Offsets, exp) && !(len(exp) == 0 && len(res.Offsets) == 0) {
				t.Fatalf("webhook %s [%v, %v): lookup %v, brute force %v", key, win[0], win[1], res.Offsets, exp)
			}
			n++
		}
	}
	t.Logf("%d lookups exact", n)
}

// TestIndexTruncatedLog: the embedded log loses a tail the index had indexed (the last segment of
// partition 0 gone and a torn batch in the middle of the one before, which recovery truncates). The
// index answers for the shorter log before the builder runs (Lookup never past the end, Verify
// names the truncation), the builder drops the part above the end, and different records appended
// at the reused offsets are indexed as a rebuild would.
func TestIndexTruncatedLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	l := openLog(t, logDir, 2, nil)
	spec := baseSpec()
	spec.Events = 6000
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	var logMu sync.Mutex
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"), CommitRecords: 500, Retention: -1,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logged}, nil))})
	build(t, ix, l)
	verifyClean(t, ix, l)
	before, err := l.Bounds(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := l.Bounds(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	pdir := filepath.Join(logDir, "delivery_log-0")
	bases := segmentFiles(t, pdir)
	if len(bases) < 3 {
		t.Fatalf("partition 0 has %d segments; the test wants at least 3", len(bases))
	}
	removeSegment(t, pdir, bases[len(bases)-1])
	victim := filepath.Join(pdir, segment.FileName(bases[len(bases)-2], segment.LogExt))
	pos, offs := batchBounds(t, victim)
	k := len(pos) / 2
	// A torn batch: its first 30 bytes.
	if err := os.Truncate(victim, pos[k]+30); err != nil {
		t.Fatal(err)
	}
	end := offs[k]
	l = openLog(t, logDir, 2, nil)
	defer func() { l.Close() }()
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	if b, err := l.Bounds(ctx, 0); err != nil || b.End != end {
		t.Fatalf("recovered partition 0: %+v, %v; want end %d (was %d)", b, err, end, before.End)
	}
	cp, _, err := ix.Checkpoint(0)
	if err != nil || cp != before.End {
		t.Fatalf("checkpoint %d, %v; want %d", cp, err, before.End)
	}

	// Before the builder notices: Verify names the truncation and the entries past the end;
	// lookups return nothing at or past the end and do not trust the checkpoint.
	var kinds []string
	rep, err := ix.Verify(ctx, l, nil, func(m Mismatch) {
		if m.Partition != 0 {
			t.Errorf("mismatch in an untouched partition: %v", m)
		}
		if m.Kind == "truncated" {
			if m.Offset != before.End || m.End != end || !strings.Contains(m.String(), fmt.Sprintf("checkpoint %d is past the log end %d", before.End, end)) {
				t.Errorf("truncated mismatch %+v: %s", m, m)
			}
		}
		kinds = append(kinds, m.Kind)
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mismatches == 0 || kinds[0] != "truncated" || !slices.Contains(kinds, "dangling") || slices.Contains(kinds, "missing") || slices.Contains(kinds, "extra") {
		t.Fatalf("verify of the truncated log: %+v, kinds %v", rep, slices.Compact(slices.Clone(kinds)))
	}
	truth, err := indextest.TruthAll(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	from, to := spec.Start.Add(-10*time.Minute).UnixMilli(), spec.Start.Add(spec.Span+10*time.Minute).UnixMilli()
	lookedUp := 0
	for i := 0; i < spec.Webhooks; i++ {
		key := indextest.Webhook(i)
		if engine.PartitionFor(key, 2) != 0 {
			continue
		}
		res, err := ix.Lookup(ctx, l, key, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if res.Indexed != end || res.End != end {
			t.Fatalf("webhook %s: indexed %d, end %d; want both %d", key, res.Indexed, res.End, end)
		}
		if exp := indextest.Batches(truth[string(key)], from, to); !slices.Equal(res.Offsets, exp) && len(exp)+len(res.Offsets) > 0 {
			t.Fatalf("webhook %s after the truncation: lookup %v, brute force %v", key, res.Offsets, exp)
		}
		lookedUp++
	}
	if lookedUp < 50 {
		t.Fatalf("only %d webhooks of partition 0 looked up", lookedUp)
	}

	// The builder notices, drops the part above the end, moves the checkpoint back.
	summBefore := summaries(t, ix, 0)
	build(t, ix, l)
	if cp, _, err := ix.Checkpoint(0); err != nil || cp != end {
		t.Fatalf("checkpoint after the build: %d, %v; want %d", cp, err, end)
	}
	if cp, _, err := ix.Checkpoint(1); err != nil || cp != other.End {
		t.Fatalf("partition 1's checkpoint moved: %d, %v; want %d", cp, err, other.End)
	}
	verifyClean(t, ix, l)
	logMu.Lock()
	msg := logged.String()
	logMu.Unlock()
	if !strings.Contains(msg, "truncated below the checkpoint") || !strings.Contains(msg, fmt.Sprintf("checkpoint=%d log_end=%d", before.End, end)) {
		t.Fatalf("no log line of the truncation: %s", msg)
	}
	// Only buckets whose summary reached the end changed; the others are as they were.
	summAfter := summaries(t, ix, 0)
	changed := 0
	for b, hi := range summBefore {
		if hi < end {
			if summAfter[b] != hi {
				t.Fatalf("bucket %d (summary %d < end %d) changed to %d", b, hi, end, summAfter[b])
			}
			continue
		}
		changed++
		if a, ok := summAfter[b]; ok && a >= end {
			t.Fatalf("bucket %d: summary %d still at or past the end %d", b, a, end)
		}
	}
	if changed == 0 || changed == len(summBefore) {
		t.Fatalf("%d of %d buckets reached the end: the test wants some of each", changed, len(summBefore))
	}

	// Different records at the same offsets, with timestamps in the truncated buckets and later.
	spec2 := baseSpec()
	spec2.Events, spec2.Seed, spec2.ControlEvery = 4000, 99, 0
	spec2.Start, spec2.Span = spec.Start.Add(spec.Span/2), spec.Span
	spec2.Hot = []indextest.Hot{{Key: []byte("777000777000"), Share: 0.1}}
	if _, err := indextest.Generate(ctx, l, spec2); err != nil {
		t.Fatal(err)
	}
	if b, err := l.Bounds(ctx, 0); err != nil || b.End <= before.End {
		t.Fatalf("partition 0 after the new appends: %+v, %v; the test wants it past the old end %d", b, err, before.End)
	}
	build(t, ix, l)
	verifyClean(t, ix, l)
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	sameAsRebuild(t, ix, l, filepath.Join(dir, "rebuild"))
	lookupsExact(t, ix, l, spec.Start, spec.Span+spec.Span/2)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestIndexTruncatedWhileFollowing: a following builder reads the embedded log's directory in
// place (as replayd serve does) while the log loses its tail and gets other records at the same
// offsets; retention runs all along. The builder notices on its own, and the index ends up as a
// rebuild of the new log.
func TestIndexTruncatedWhileFollowing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	l := openLog(t, logDir, 1, nil)
	spec := baseSpec()
	spec.Events = 3000
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	src, err := engine.OpenDir(engine.DirOptions{Dir: logDir, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"), CommitRecords: 300, CommitInterval: 50 * time.Millisecond, Retention: -1})
	bctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- ix.Build(bctx, src, BuildOptions{Follow: true, RetentionInterval: 5 * time.Millisecond})
	}()
	defer func() {
		stop()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("following build: %v", err)
		}
	}()
	waitCheckpoint := func(want int64) {
		t.Helper()
		for {
			cp, _, err := ix.Checkpoint(0)
			if err != nil {
				t.Fatal(err)
			}
			if cp == want {
				return
			}
			select {
			case err := <-done:
				t.Fatalf("the builder stopped: %v", err)
			case <-ctx.Done():
				t.Fatalf("checkpoint %d, want %d: %v", cp, want, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	b0, err := l.Bounds(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitCheckpoint(b0.End)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Cut the last segment at a batch boundary in its middle (the active segment of a log that
	// lost its unsynced tail).
	pdir := filepath.Join(logDir, "delivery_log-0")
	bases := segmentFiles(t, pdir)
	victim := filepath.Join(pdir, segment.FileName(bases[len(bases)-1], segment.LogExt))
	pos, offs := batchBounds(t, victim)
	if len(pos) < 4 {
		t.Fatalf("the active segment has %d batches; the test wants at least 4", len(pos))
	}
	k := len(pos) / 2
	if err := os.Truncate(victim, pos[k]); err != nil {
		t.Fatal(err)
	}
	end := offs[k]
	waitCheckpoint(end)
	l = openLog(t, logDir, 1, nil)
	defer func() { l.Close() }()
	spec2 := baseSpec()
	spec2.Events, spec2.Seed = 1500, 5
	spec2.Start = spec.Start.Add(spec.Span - 20*time.Minute)
	if _, err := indextest.Generate(ctx, l, spec2); err != nil {
		t.Fatal(err)
	}
	b1, err := l.Bounds(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b1.End <= b0.End {
		t.Fatalf("end %d after the new appends; the test wants it past the old end %d", b1.End, b0.End)
	}
	waitCheckpoint(b1.End)
	verifyClean(t, ix, src)
	sameAsRebuild(t, ix, src, filepath.Join(dir, "rebuild"))
	lookupsExact(t, ix, src, spec.Start, spec.Span+20*time.Minute)
}

// TestTruncatePartition: the unit of the drop, on an index whose buckets hold late (out of order)
// offsets: only the buckets whose summary reaches the end are rewritten, and the result is what
// indexing the log's prefix below the end gives.
func TestTruncatePartition(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openLog(t, filepath.Join(dir, "log"), 1, nil)
	defer l.Close()
	spec := baseSpec()
	spec.Events, spec.Jitter = 3000, 10*time.Minute
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"), Retention: -1})
	build(t, ix, l)
	b, err := l.Bounds(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A batch boundary in the middle of the log.
	var batches []int64
	if err := l.Scan(ctx, 0, 0, func(bt *segment.Batch) error { batches = append(batches, bt.BaseOffset); return nil }); err != nil {
		t.Fatal(err)
	}
	end := batches[len(batches)/2]
	summ := summaries(t, ix, 0)
	reach := 0
	for _, hi := range summ {
		if hi >= end {
			reach++
		}
	}
	st, err := ix.TruncatePartition(0, end)
	if err != nil {
		t.Fatal(err)
	}
	if st.From != b.End || st.To != end || st.Buckets != reach || st.Entries == 0 || st.Deleted == 0 || st.Offsets < st.Entries {
		t.Fatalf("truncate stats %+v; want from %d to %d over %d buckets", st, b.End, end, reach)
	}
	if err := ix.Check(); err != nil {
		t.Fatal(err)
	}
	// The truth: an index of the prefix alone, built with the builder stopping at end.
	prefix := openIndex(t, Options{Dir: filepath.Join(dir, "prefix"), Retention: -1})
	if err := prefix.Build(ctx, endAt{l, end}, BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	got, want := allEntries(t, ix), allEntries(t, prefix)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after truncating to %d: %d entries, an index of the prefix %d", end, len(got), len(want))
	}
	if g, w := summaries(t, ix, 0), summaries(t, prefix, 0); fmt.Sprint(g) != fmt.Sprint(w) {
		t.Fatalf("summaries %v, the prefix's %v", g, w)
	}
	// Idempotent, and never upwards.
	if st, err := ix.TruncatePartition(0, end); err != nil || st.Buckets != 0 || st.From != end {
		t.Fatalf("second truncate: %+v, %v", st, err)
	}
	if st, err := ix.TruncatePartition(0, b.End); err != nil || st.Buckets != 0 {
		t.Fatalf("truncate above the checkpoint: %+v, %v", st, err)
	}
	if cp, _, _ := ix.Checkpoint(0); cp != end {
		t.Fatalf("checkpoint %d, want %d", cp, end)
	}
	if _, err := ix.TruncatePartition(0, -1); err == nil {
		t.Fatal("truncate to a negative offset: no error")
	}
	ro := openIndex(t, Options{Dir: filepath.Join(dir, "prefix-ro"), Retention: -1})
	ro.Close()
	rox := openIndex(t, Options{Dir: filepath.Join(dir, "prefix-ro"), ReadOnly: true})
	if _, err := rox.TruncatePartition(0, 0); err == nil {
		t.Fatal("truncate of a read-only index: no error")
	}
}

// endAt is a source whose partitions end at end: a log's prefix.
type endAt struct {
	engine.Source
	end int64
}

func (s endAt) Bounds(ctx context.Context, p int32) (engine.Bounds, error) {
	b, err := s.Source.Bounds(ctx, p)
	b.End = min(b.End, s.end)
	return b, err
}

func (s endAt) Scan(ctx context.Context, p int32, from int64, fn func(*segment.Batch) error) error {
	return s.Source.Scan(ctx, p, from, func(b *segment.Batch) error {
		if b.BaseOffset >= s.end {
			return engine.ErrStop
		}
		return fn(b)
	})
}

// TestIndexTruncatedAndRefilled: the log loses its tail and gets more new records than it lost
// before the builder looks again, so its end is never seen below the checkpoint. The builder
// still notices (the log's batch at its last indexed offset is not the one it indexed), indexes
// the partition again, and the index is what a rebuild gives. A log that only grew is not
// re-indexed.
func TestIndexTruncatedAndRefilled(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	l := openLog(t, logDir, 1, nil)
	spec := baseSpec()
	spec.Events = 2000
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	var logMu sync.Mutex
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"), CommitRecords: 400, Retention: -1,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logged}, nil))})
	build(t, ix, l)
	// More records: the builder checks the last batch it indexed and goes on, nothing re-indexed.
	spec.Events, spec.Seed, spec.Start = 300, 8, spec.Start.Add(spec.Span)
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	var progress []Progress
	if err := ix.Build(ctx, l, BuildOptions{Progress: func(p Progress) { progress = append(progress, p) }}); err != nil {
		t.Fatal(err)
	}
	before, err := l.Bounds(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(progress) == 0 || progress[0].From >= before.End || progress[len(progress)-1].Records != 300 {
		t.Fatalf("appending 300 records: progress %+v; want only them indexed", progress)
	}
	verifyClean(t, ix, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	pdir := filepath.Join(logDir, "delivery_log-0")
	bases := segmentFiles(t, pdir)
	if len(bases) < 2 {
		t.Fatalf("%d segments; the test wants at least 2", len(bases))
	}
	removeSegment(t, pdir, bases[len(bases)-1])
	victim := filepath.Join(pdir, segment.FileName(bases[len(bases)-2], segment.LogExt))
	pos, offs := batchBounds(t, victim)
	k := len(pos) / 2
	if err := os.Truncate(victim, pos[k]+7); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, logDir, 1, nil)
	defer func() { l.Close() }()
	if b, err := l.Bounds(ctx, 0); err != nil || b.End != offs[k] {
		t.Fatalf("recovered: %+v, %v; want end %d", b, err, offs[k])
	}
	spec2 := baseSpec()
	spec2.Events, spec2.Seed, spec2.ControlEvery = 1500, 42, 0
	if _, err := indextest.Generate(ctx, l, spec2); err != nil {
		t.Fatal(err)
	}
	after, err := l.Bounds(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if after.End <= before.End {
		t.Fatalf("end %d after the refill; the test wants it past the checkpoint %d", after.End, before.End)
	}
	build(t, ix, l)
	logMu.Lock()
	msg := logged.String()
	logMu.Unlock()
	if !strings.Contains(msg, "truncated and rewritten") {
		t.Fatalf("no log line of the rewritten log: %s", msg)
	}
	verifyClean(t, ix, l)
	sameAsRebuild(t, ix, l, filepath.Join(dir, "rebuild"))
	lookupsExact(t, ix, l, spec.Start.Add(-spec.Span), 2*spec.Span)
}
