package index

import (
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/indextest"
	"github.com/replay/replay/segment"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func openLog(t testing.TB, dir string, parts int32, now func() time.Time) *engine.Log {
	t.Helper()
	l, err := engine.Open(engine.Options{
		Dir: dir, Partitions: parts, SegmentBytes: 256 << 10, MaxBatchBytes: 16 << 10,
		Retention: -1, Sync: engine.SyncNever, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func openIndex(t testing.TB, o Options) *Index {
	t.Helper()
	ix, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

func baseSpec() indextest.Spec {
	return indextest.Spec{
		Events: 12000, Webhooks: 400, DupRate: 0.05, Start: t0, Span: 2 * time.Hour,
		Jitter: 3 * time.Minute, ValueSize: 600, ControlEvery: 25, Seed: 7,
	}
}

func build(t testing.TB, ix *Index, src engine.Source) {
	t.Helper()
	if err := ix.Build(t.Context(), src, BuildOptions{}); err != nil {
		t.Fatal(err)
	}
}

func verifyClean(t testing.TB, ix *Index, src engine.Source) VerifyReport {
	t.Helper()
	if err := ix.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	n := 0
	rep, err := ix.Verify(t.Context(), src, nil, func(m Mismatch) {
		if n++; n <= 10 {
			t.Errorf("verify: %v", m)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mismatches != 0 {
		t.Fatalf("verify: %d mismatches", rep.Mismatches)
	}
	return rep
}

// checkQueries asserts that random lookups return every batch the brute-force truth has, and
// logs how much more they return.
func checkQueries(t *testing.T, ix *Index, src engine.Source, truth map[string][]indextest.Occurrence, start time.Time, span time.Duration, queries int, seed uint64) {
	t.Helper()
	ctx := t.Context()
	keys := make([]string, 0, len(truth))
	for k := range truth {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	rng := rand.New(rand.NewPCG(seed, 1))
	var want, got, empty int
	for q := 0; q < queries; q++ {
		key := keys[rng.IntN(len(keys))]
		from := start.UnixMilli() - int64(5*time.Minute/time.Millisecond) + rng.Int64N(span.Milliseconds())
		to := from + 1 + rng.Int64N(int64(40*time.Minute/time.Millisecond))
		res, err := ix.Lookup(ctx, src, []byte(key), from, to)
		if err != nil {
			t.Fatal(err)
		}
		occ := truth[key]
		if len(occ) > 0 && res.Partition != occ[0].Partition {
			t.Fatalf("webhook %s: partition %d, its records are in %d", key, res.Partition, occ[0].Partition)
		}
		exp := indextest.Batches(occ, from, to)
		for _, o := range exp {
			if _, ok := slices.BinarySearch(res.Offsets, o); !ok {
				t.Fatalf("webhook %s [%d, %d): lookup missed batch %d (got %v, want ⊇ %v)", key, from, to, o, res.Offsets, exp)
			}
		}
		if !slices.IsSorted(res.Offsets) || len(slices.Compact(slices.Clone(res.Offsets))) != len(res.Offsets) {
			t.Fatalf("offsets not ascending and distinct: %v", res.Offsets)
		}
		if len(exp) == 0 {
			empty++
		}
		want += len(exp)
		got += len(res.Offsets)
	}
	t.Logf("%d lookups (%d with no events): %d batches needed, %d returned: superset factor %.3f", queries, empty, want, got, float64(got)/float64(max(want, 1)))
}

func TestIndexLookupSuperset(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	l := openLog(t, filepath.Join(dir, "log"), 4, nil)
	defer l.Close()
	spec := baseSpec()
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 4; p++ {
		if segs, _ := filepath.Glob(filepath.Join(dir, "log", "delivery_log-"+string(rune('0'+p)), "*.log")); len(segs) < 2 {
			t.Fatalf("partition %d has %d segments; the test wants several", p, len(segs))
		}
	}
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"), CommitRecords: 1000})
	build(t, ix, l)
	rep := verifyClean(t, ix, l)
	t.Logf("verify: %+v", rep)
	truth, err := indextest.TruthAll(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	checkQueries(t, ix, l, truth, spec.Start, spec.Span, 400, 1)
	// A lookup of a fully built index scans nothing.
	res, err := ix.Lookup(ctx, l, indextest.Webhook(0), spec.Start.UnixMilli(), spec.Start.Add(spec.Span).UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	if res.ScannedBatches != 0 || res.Seeks != int(spec.Span/time.Minute) || len(res.Offsets) == 0 {
		t.Fatalf("lookup of the busiest webhook: %+v", res)
	}
	// The exact truth for one query, against Truth (a single scan of the partition).
	exp, err := indextest.Truth(ctx, l, res.Partition, indextest.Webhook(0), spec.Start.UnixMilli(), spec.Start.Add(spec.Span).UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(exp, indextest.Batches(truth[string(indextest.Webhook(0))], spec.Start.UnixMilli(), spec.Start.Add(spec.Span).UnixMilli())) {
		t.Fatal("Truth and TruthAll disagree")
	}
	// Empty and reversed windows.
	if res, err := ix.Lookup(ctx, l, indextest.Webhook(0), 10, 10); err != nil || len(res.Offsets) != 0 {
		t.Fatalf("empty window: %+v, %v", res, err)
	}
}

func TestIndexNeverStale(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	l := openLog(t, filepath.Join(dir, "log"), 2, nil)
	defer l.Close()
	spec := baseSpec()
	spec.Events = 3000
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index")})
	build(t, ix, l)
	lag, err := ix.Lag(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	for _, pl := range lag {
		if pl.Lag != 0 {
			t.Fatalf("lag after build: %+v", pl)
		}
	}
	// Events appended after the builder stopped, one of a webhook the index never saw, with a
	// timestamp earlier than events already indexed.
	key := []byte("4242424242")
	ts := t0.Add(30 * time.Minute).UnixMilli()
	app, err := l.Append(ctx, []engine.Record{{Key: indextest.Webhook(1), Value: []byte("{}"), Timestamp: ts}, {Key: key, Value: []byte("{}"), Timestamp: ts}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := ix.Lookup(ctx, l, key, ts, ts+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Offsets) != 1 || res.Offsets[0] > app[1].Offset || res.ScannedBatches == 0 || res.Indexed >= res.End {
		t.Fatalf("lookup after an append the builder has not seen: %+v (appended at %+v)", res, app[1])
	}
	res1, err := ix.Lookup(ctx, l, indextest.Webhook(1), ts, ts+1)
	if err != nil || !containsBatchOf(t, l, app[0], res1.Offsets) {
		t.Fatalf("webhook 1: %+v, %v", res1, err)
	}
	lag, err = ix.Lag(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, pl := range lag {
		total += pl.Lag
	}
	if total != 2 {
		t.Fatalf("lag %d, want 2: %+v", total, lag)
	}
	build(t, ix, l)
	res2, err := ix.Lookup(ctx, l, key, ts, ts+1)
	if err != nil || !slices.Equal(res2.Offsets, res.Offsets) || res2.ScannedBatches != 0 {
		t.Fatalf("after catching up: %+v, %v", res2, err)
	}
	verifyClean(t, ix, l)
}

func containsBatchOf(t *testing.T, src engine.Source, a engine.Appended, offs []int64) bool {
	found := false
	err := src.ReadBatches(t.Context(), a.Partition, offs, func(b *segment.Batch) error {
		if b.BaseOffset <= a.Offset && a.Offset <= b.LastOffset() {
			found = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// A following builder picks up appends; the test waits on its progress reports.
func TestIndexFollow(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	dir := t.TempDir()
	l := openLog(t, filepath.Join(dir, "log"), 2, nil)
	defer l.Close()
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"), CommitInterval: 10 * time.Millisecond})
	progress := make(chan Progress, 1024)
	done := make(chan error, 1)
	go func() {
		done <- ix.Build(ctx, l, BuildOptions{Follow: true, RetentionInterval: -1, Progress: func(p Progress) {
			select {
			case progress <- p:
			default:
			}
		}})
	}()
	key := []byte("77")
	p := engine.PartitionFor(key, 2)
	for round := 0; round < 3; round++ {
		app, err := l.Append(ctx, []engine.Record{{Key: key, Value: []byte("{}"), Timestamp: t0.UnixMilli() + int64(round)}})
		if err != nil {
			t.Fatal(err)
		}
		for pr := range progress {
			if pr.Partition == p && pr.Checkpoint > app[0].Offset {
				break
			}
		}
		res, err := ix.Lookup(ctx, l, key, t0.UnixMilli(), t0.UnixMilli()+10)
		if err != nil || len(res.Offsets) != round+1 || res.ScannedBatches != 0 {
			t.Fatalf("round %d: %+v, %v", round, res, err)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Build returned %v, want context.Canceled", err)
	}
	verifyClean(t, ix, l)
}

func TestIndexRetention(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	now := t0
	clock := func() time.Time { return now }
	l := openLog(t, filepath.Join(dir, "log"), 2, clock)
	defer l.Close()
	spec := baseSpec()
	spec.Events = 6000
	spec.Span = 4 * time.Hour
	spec.Jitter = time.Minute
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"), Retention: 3 * time.Hour, Now: clock})
	build(t, ix, l)
	countBelow := func(ts int64) (n, all int) {
		ix.Entries(-1, func(e Entry) error {
			all++
			if ix.BucketTime(e.Bucket) < ts {
				n++
			}
			return nil
		})
		return
	}
	// Time retention: an hour and a half of entries are past 3h when the clock says 4.5h.
	now = t0.Add(4*time.Hour + 30*time.Minute)
	before, all := countBelow(now.Add(-3 * time.Hour).UnixMilli())
	if before == 0 {
		t.Fatal("no entries old enough to drop")
	}
	dropped, err := ix.EnforceRetention(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	after, all2 := countBelow(now.Add(-3 * time.Hour).UnixMilli())
	if dropped == 0 || after != 0 || all2 != all-before {
		t.Fatalf("retention dropped %d buckets; entries older than the window %d → %d, all %d → %d", dropped, before, after, all, all2)
	}
	rep := verifyClean(t, ix, l)
	truth, err := indextest.TruthAll(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	checkQueries(t, ix, l, truth, now.Add(-3*time.Hour), 90*time.Minute, 100, 2)

	// Log-start retention: the log deletes its old segments; the index drops the oldest buckets
	// whose batches are all gone.
	idx2 := openIndex(t, Options{Dir: filepath.Join(dir, "index2"), Retention: -1, Now: clock})
	build(t, idx2, l)
	lnow := t0.Add(3 * time.Hour)
	l.Close()
	l2, err := engine.Open(engine.Options{Dir: filepath.Join(dir, "log"), Retention: time.Hour, Now: func() time.Time { return lnow }})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	var starts []int64
	for p := int32(0); p < 2; p++ {
		b, _ := l2.Bounds(ctx, p)
		if b.Start == 0 {
			t.Fatalf("partition %d: the log deleted nothing", p)
		}
		starts = append(starts, b.Start)
	}
	dropped, err = idx2.EnforceRetention(ctx, l2)
	if err != nil || dropped == 0 {
		t.Fatalf("log-start retention dropped %d, %v", dropped, err)
	}
	// What stays below the log start is only in buckets that also hold live batches.
	var stale, entries int
	idx2.Entries(-1, func(e Entry) error {
		entries++
		if e.Offsets[len(e.Offsets)-1] < starts[e.Partition] {
			stale++
		}
		return nil
	})
	rep = verifyClean(t, idx2, l2)
	t.Logf("after log-start retention: %d entries, %d entirely below the log start, %d expired offsets (in buckets that straddle the start)", entries, stale, rep.Expired)
	if stale > entries/20 {
		t.Fatalf("%d of %d entries still point only below the log start", stale, entries)
	}
}

func TestIndexOptions(t *testing.T) {
	o := Options{BucketWidth: time.Millisecond, CommitRecords: -1, CommitInterval: -1}
	err := o.Validate()
	for _, want := range []string{"Dir", "BucketWidth", "CommitRecords", "CommitInterval"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want it to name %s", err, want)
		}
	}
	dir := t.TempDir()
	ix, err := Open(Options{Dir: dir, BucketWidth: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := ix.Checkpoint(0); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if _, err := Open(Options{Dir: dir, BucketWidth: time.Minute}); err == nil {
		t.Fatal("opened a 5-minute index with 1-minute buckets")
	}
	ix = openIndex(t, Options{Dir: dir})
	if ix.Options().BucketWidth != 5*time.Minute {
		t.Fatalf("bucket width %v, want the stored 5m", ix.Options().BucketWidth)
	}
	if _, err := Open(Options{Dir: t.TempDir() + "/none", ReadOnly: true}); err == nil {
		t.Fatal("opened a missing index read-only")
	}
	// Corruption is a distinct error.
	if err := ix.db.Set([]byte("zz"), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := ix.Check(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Check with a foreign key: %v", err)
	}
	ix.db.Delete([]byte("zz"), nil)
	ix.db.Set(entryKey(nil, 0, 1, 2), []byte{5, 1}, nil)
	if err := ix.Check(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Check with a bad run: %v", err)
	}
	ix.db.Set(entryKey(nil, 0, 1, 2), appendRun(nil, []int64{3, 9}), nil)
	if err := ix.Check(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "checkpoint") {
		t.Fatalf("Check with an entry past the checkpoint: %v", err)
	}
}

// TestWebhookIDFast: WebhookID's eight-digits-at-a-time path gives the id the digit-by-digit loop
// does, for every length and for a non-digit anywhere (each byte value around the digits').
func TestWebhookIDFast(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 21; n++ {
		for range 2000 {
			key := make([]byte, n)
			for i := range key {
				key[i] = byte('0' + rng.IntN(10))
			}
			if n > 0 && rng.IntN(2) == 0 {
				key[rng.IntN(n)] = []byte{0, '/', ':', '0' + 0x80, 0xff, 0xfa, 0x39 + 0x10, 0x29, ' ', 'a'}[rng.IntN(10)]
			}
			want := webhookIDChecked(key)
			if got := WebhookID(key); got != want {
				t.Fatalf("WebhookID(%q) = %d, want %d", key, got, want)
			}
			v, err := strconv.ParseUint(string(key), 10, 64)
			if err != nil || n > 20 { // longer keys are hashed, leading zeros or not
				v = xxhash.Sum64(key)
			}
			if v != want {
				t.Fatalf("webhookIDChecked(%q) = %d, want %d", key, want, v)
			}
		}
	}
}

func TestIndexWebhookIDAndRuns(t *testing.T) {
	for key, want := range map[string]uint64{"0": 0, "1095098195724595200": 1095098195724595200, "18446744073709551615": 1<<64 - 1} {
		if got := WebhookID([]byte(key)); got != want {
			t.Errorf("WebhookID(%q) = %d, want %d", key, got, want)
		}
	}
	for _, key := range []string{"", "18446744073709551616", "12a", "-1", "app-1"} {
		if WebhookID([]byte(key)) == 0 {
			t.Errorf("WebhookID(%q) = 0", key)
		}
	}
	// The merge operator concatenates runs and folds ascending ones into one.
	m, _ := merger.Merge(entryKey(nil, 0, 0, 0), appendRun(nil, []int64{10, 12}))
	m.MergeNewer(appendRun(nil, []int64{20, 1000}))
	m.MergeOlder(appendRun(nil, []int64{3}))
	v, _, err := m.Finish(true)
	if err != nil {
		t.Fatal(err)
	}
	if want := appendRun(nil, []int64{3, 10, 12, 20, 1000}); string(v) != string(want) {
		t.Fatalf("merged %x, want one run %x", v, want)
	}
	m, _ = merger.Merge(summaryKey(nil, 0, 0), []byte{7})
	m.MergeNewer([]byte{3})
	m.MergeOlder([]byte{9})
	if v, _, _ := m.Finish(true); len(v) != 1 || v[0] != 9 {
		t.Fatalf("summary merged to %x, want 09", v)
	}
	// One operand, what a read of a compacted key merges, is returned as it is (not decoded and
	// re-encoded: two runs stay two runs).
	two := append(appendRun(nil, []int64{3, 4}), appendRun(nil, []int64{7})...)
	m, _ = merger.Merge(entryKey(nil, 0, 0, 0), two)
	if v, _, err := m.Finish(true); err != nil || string(v) != string(two) {
		t.Fatalf("one operand merged to %x, %v; want %x", v, err, two)
	}
}

func TestIndexLayoutSwitch(t *testing.T) {
	data := t.TempDir()
	live, named, err := LiveDir(data)
	if err != nil || named || live != filepath.Join(data, DefaultDir) {
		t.Fatalf("LiveDir with no pointer: %s %v %v", live, named, err)
	}
	for i := 0; i < 2; i++ {
		ix := openIndex(t, Options{Dir: filepath.Join(data, RebuildDir)})
		ix.Close()
		newLive, err := Switch(data)
		if err != nil {
			t.Fatal(err)
		}
		got, named, err := LiveDir(data)
		if err != nil || !named || got != newLive {
			t.Fatalf("after switch %d: LiveDir %s %v %v, want %s", i, got, named, err, newLive)
		}
		if _, err := os.Stat(live); i > 0 && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("old index %s not removed: %v", live, err)
		}
		live = newLive
		ix = openIndex(t, Options{Dir: live, ReadOnly: true})
		ix.Close()
	}
	os.WriteFile(filepath.Join(data, PointerFile), []byte("../elsewhere\n"), 0o644)
	if _, _, err := LiveDir(data); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("pointer out of the data dir: %v", err)
	}
}

// The index's size against the log's, for ~1 KB events: a measured number, logged.
func TestIndexSizeRatio(t *testing.T) {
	ctx := t.Context()
	for _, c := range []struct {
		name     string
		webhooks int
		span     time.Duration
	}{
		{"10k webhooks, 2.5k events/min", 10000, 12 * time.Minute},
		{"1k webhooks, 2.5k events/min", 1000, 12 * time.Minute},
		{"10k webhooks, 250 events/min", 10000, 2 * time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, filepath.Join(dir, "log"), 4, nil)
			defer l.Close()
			spec := baseSpec()
			spec.Events, spec.Webhooks, spec.Span, spec.ValueSize, spec.ControlEvery = 30000, c.webhooks, c.span, 1024, 0
			if _, err := indextest.Generate(ctx, l, spec); err != nil {
				t.Fatal(err)
			}
			ix := openIndex(t, Options{Dir: filepath.Join(dir, "index")})
			build(t, ix, l)
			if err := ix.Compact(ctx); err != nil {
				t.Fatal(err)
			}
			st, err := ix.Stats()
			if err != nil {
				t.Fatal(err)
			}
			logBytes := DirBytes(t, filepath.Join(dir, "log"), ".log")
			ixBytes := st.TableBytes
			t.Logf("log %d bytes (.log files), index %d bytes of tables (%d on disk with WAL and manifest), %d entries holding %d offsets: index/log = %.2f%%",
				logBytes, ixBytes, st.DiskBytes, st.Entries, st.Offsets, 100*float64(ixBytes)/float64(logBytes))
		})
	}
}

// DirBytes sums the sizes of the files under dir whose names end in suffix.
func DirBytes(t testing.TB, dir, suffix string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, suffix) {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
