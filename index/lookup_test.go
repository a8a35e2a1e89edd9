package index

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/indextest"
	"github.com/replay/replay/segment"
)

// modelLookup is what a lookup must answer, computed the long way: the offsets of every entry of
// the webhook in the window's buckets, plus the batches of the unindexed suffix holding one of
// its records in the window (brute force), those below the log start dropped, ascending and
// distinct.
func modelLookup(t *testing.T, ix *Index, src engine.Source, p int32, key []byte, from, to int64) []int64 {
	t.Helper()
	ctx := t.Context()
	cp, _, err := ix.Checkpoint(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := src.Bounds(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	if from < to {
		wh, lo, hi := WebhookID(key), ix.Bucket(from), ix.Bucket(to-1)
		if err := ix.Entries(p, func(e Entry) error {
			if e.Webhook == wh && e.Bucket >= lo && e.Bucket <= hi {
				out = append(out, e.Offsets...)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		all, err := indextest.Truth(ctx, src, p, key, from, to)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range all {
			if o >= cp {
				out = append(out, o)
			}
		}
	}
	out = slices.DeleteFunc(out, func(o int64) bool { return o < b.Start })
	slices.Sort(out)
	return slices.Compact(out)
}

// TestLookupStream: a streaming lookup hands over, chunk by chunk, exactly what LookupPartition
// answers, which is exactly the model's (entries of the window's buckets, the unindexed suffix
// scanned), over timestamps out of order by several buckets (so that buckets' offsets interleave
// and a chunk handed over early could be followed by a lower offset), duplicates, control
// batches, a hot webhook in most batches and an unindexed suffix; and ReadPartition reads exactly
// those batches, once each, in order, hopping or scanning.
func TestLookupStream(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	l := openLog(t, filepath.Join(dir, "log"), 2, nil)
	defer l.Close()
	hot := []byte("1095098195724595200") // indextest.Webhook(0): also a Zipf webhook
	spec := baseSpec()
	spec.Jitter = 7 * time.Minute
	spec.Hot = []indextest.Hot{{Key: []byte("4242424242"), Share: 0.4}}
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"), CommitRecords: 1000})
	build(t, ix, l)
	// More traffic after the build: the unindexed suffix, whose timestamps reach back into the
	// indexed part's.
	more := spec
	more.Events, more.Seed, more.Start = 3000, 8, spec.Start.Add(spec.Span-20*time.Minute)
	if _, err := indextest.Generate(ctx, l, more); err != nil {
		t.Fatal(err)
	}
	keys := [][]byte{hot, spec.Hot[0].Key, indextest.Webhook(1), indextest.Webhook(7), indextest.Webhook(49), indextest.Webhook(300), []byte("no-such-webhook")}
	rng := rand.New(rand.NewPCG(5, 5))
	var streamed, scanned, suffix int
	for q := 0; q < 120; q++ {
		key := keys[q%len(keys)]
		p := engine.PartitionFor(key, 2)
		from := spec.Start.UnixMilli() - 10*60_000 + rng.Int64N((spec.Span + 20*time.Minute).Milliseconds())
		to := from + rng.Int64N(50*60_000)
		if q%10 == 0 {
			from, to = spec.Start.UnixMilli()-60_000, spec.Start.Add(spec.Span+time.Hour).UnixMilli()
		}
		want := modelLookup(t, ix, l, p, key, from, to)
		res, err := ix.LookupPartition(ctx, l, p, key, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Offsets, want) && !(len(res.Offsets) == 0 && len(want) == 0) {
			t.Fatalf("q%d %s [%d, %d): LookupPartition %d offsets, the model %d\n got %v\nwant %v", q, key, from, to, len(res.Offsets), len(want), res.Offsets, want)
		}
		var chunks [][]int64
		sres, err := ix.LookupStream(ctx, l, p, key, from, to, func(offs []int64) error {
			if len(offs) == 0 {
				t.Fatal("an empty chunk")
			}
			chunks = append(chunks, offs)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		cat := slices.Concat(chunks...)
		if !slices.Equal(cat, want) || !slices.Equal(sres.Offsets, want) {
			t.Fatalf("q%d %s [%d, %d): streamed %d chunks of %d offsets (result %d), the model %d\n got %v\nwant %v", q, key, from, to, len(chunks), len(cat), len(sres.Offsets), len(want), cat, want)
		}
		if sres.Indexed != res.Indexed || sres.End != res.End || sres.Seeks != res.Seeks || sres.ScannedBatches != res.ScannedBatches {
			t.Fatalf("q%d: stream result %+v, lookup %+v", q, sres, res)
		}
		if len(chunks) > 1 {
			streamed++
		}
		if res.ScannedBatches > 0 && res.Indexed < res.End {
			suffix++
		}
		// ReadPartition reads exactly the answer's batches, in order, once each.
		var read []int64
		rres, err := ix.ReadPartition(ctx, l, p, key, from, to, func(b *segment.Batch, rr *segment.RecordReader) error {
			read = append(read, b.BaseOffset)
			if rr == nil {
				return nil // a control batch
			}
			// Decoded on another goroutine, maybe: its records are this batch's.
			for rr.Next() {
				if o := rr.Record().Offset; o < b.BaseOffset || o > b.LastOffset() {
					return fmt.Errorf("batch %d: record at %d", b.BaseOffset, o)
				}
			}
			return rr.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(read, want) && !(len(read) == 0 && len(want) == 0) {
			t.Fatalf("q%d %s: ReadPartition read %d batches, want %d\n got %v\nwant %v", q, key, len(read), len(want), read, want)
		}
		if !slices.Equal(rres.Offsets, res.Offsets) {
			t.Fatalf("q%d: ReadPartition's result differs from LookupPartition's", q)
		}
		for _, c := range chunks[min(1, len(chunks)):] {
			if dense(c) {
				scanned++
			}
		}
		// Never a miss: every batch with one of the webhook's records in the window is there.
		truth, err := indextest.Truth(ctx, l, p, key, from, to)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range truth {
			if _, ok := slices.BinarySearch(want, o); !ok {
				t.Fatalf("q%d %s: batch %d missing", q, key, o)
			}
		}
	}
	t.Logf("120 lookups: %d streamed in several chunks, %d with a dense chunk scanned, %d with an unindexed suffix", streamed, scanned, suffix)
	if streamed < 20 || scanned == 0 || suffix == 0 {
		t.Fatalf("the test does not exercise what it should: %d streamed, %d scanned, %d with a suffix", streamed, scanned, suffix)
	}
}

// TestReadPartitionStop: fn's ErrStop ends the read without an error, and nothing is read after
// it; fn's other errors are returned.
func TestReadPartitionStop(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	l := openLog(t, filepath.Join(dir, "log"), 1, nil)
	defer l.Close()
	spec := baseSpec()
	spec.Hot = []indextest.Hot{{Key: []byte("4242424242"), Share: 0.5}}
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"), CommitRecords: 1000})
	build(t, ix, l)
	from, to := spec.Start.UnixMilli(), spec.Start.Add(spec.Span).UnixMilli()
	for _, stopAt := range []int{1, 50, 400} {
		n := 0
		_, err := ix.ReadPartition(ctx, l, 0, spec.Hot[0].Key, from, to, func(*segment.Batch, *segment.RecordReader) error {
			if n++; n == stopAt {
				return engine.ErrStop
			}
			if n > stopAt {
				t.Fatalf("read batch %d after ErrStop at %d", n, stopAt)
			}
			return nil
		})
		if err != nil || n != stopAt {
			t.Fatalf("stop at %d: read %d, %v", stopAt, n, err)
		}
	}
	boom := errors.New("boom")
	if _, err := ix.ReadPartition(ctx, l, 0, spec.Hot[0].Key, from, to, func(*segment.Batch, *segment.RecordReader) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("fn's error: %v", err)
	}
}

// TestBuildCorruptBatch: a batch that does not decode (a flipped byte: its CRC fails) ends the
// build with a corruption error after the batches before it were aggregated in order, committed
// up to a checkpoint at or below it, and nothing at or past it indexed; the same on every run
// (the batches are decoded on several goroutines and aggregated in log order).
func TestBuildCorruptBatch(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	l := openLog(t, filepath.Join(dir, "log"), 1, nil)
	spec := baseSpec()
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	var batches []segment.Batch
	if err := l.Scan(ctx, 0, 0, func(b *segment.Batch) error {
		c := *b
		c.Raw = nil
		batches = append(batches, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	bad := batches[len(batches)*2/3]
	f, err := os.OpenFile(bad.File, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	pos := bad.Pos + segment.BatchHeaderSize + 10
	if _, err := f.ReadAt(one[:], pos); err != nil {
		t.Fatal(err)
	}
	one[0] ^= 0xff
	if _, err := f.WriteAt(one[:], pos); err != nil {
		t.Fatal(err)
	}
	f.Close()
	src, err := engine.OpenDir(engine.DirOptions{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for run := range 3 {
		ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"+strconv.Itoa(run)), CommitRecords: 500})
		err := ix.Build(ctx, src, BuildOptions{})
		if !segment.IsCorruption(err) {
			t.Fatalf("run %d: build over a corrupt batch: %v", run, err)
		}
		cp, ok, err := ix.Checkpoint(0)
		if err != nil || !ok || cp > bad.BaseOffset || cp < bad.BaseOffset-2000 {
			t.Fatalf("run %d: checkpoint %d (%v, %v), the corrupt batch at %d", run, cp, ok, err, bad.BaseOffset)
		}
		if err := ix.Check(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLookupBelowLogStart: batches below the log's start (deleted since they were indexed: here
// a broker's log-start-offset checkpoint past them) are not listed, streamed or collected.
func TestLookupBelowLogStart(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	l := openLog(t, filepath.Join(dir, "log"), 1, nil)
	spec := baseSpec()
	spec.Hot = []indextest.Hot{{Key: []byte("4242424242"), Share: 0.3}}
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"), CommitRecords: 1000})
	build(t, ix, l)
	from, to := spec.Start.UnixMilli(), spec.Start.Add(spec.Span).UnixMilli()
	all, err := ix.LookupPartition(ctx, l, 0, spec.Hot[0].Key, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	start := all.Offsets[len(all.Offsets)/2]
	if err := os.WriteFile(filepath.Join(dir, "log", "log-start-offset-checkpoint"), []byte("0\n1\ndelivery_log 0 "+strconv.FormatInt(start, 10)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := engine.OpenDir(engine.DirOptions{Dir: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if b, err := src.Bounds(ctx, 0); err != nil || b.Start != start {
		t.Fatalf("bounds %+v, %v; want the start at %d", b, err, start)
	}
	want := all.Offsets[len(all.Offsets)/2:]
	res, err := ix.LookupPartition(ctx, src, 0, spec.Hot[0].Key, from, to)
	if err != nil || !slices.Equal(res.Offsets, want) {
		t.Fatalf("LookupPartition: %d offsets from %v (%v); want the %d from %d", len(res.Offsets), res.Offsets[:min(3, len(res.Offsets))], err, len(want), start)
	}
	var streamed []int64
	if _, err := ix.LookupStream(ctx, src, 0, spec.Hot[0].Key, from, to, func(o []int64) error {
		streamed = append(streamed, o...)
		return nil
	}); err != nil || !slices.Equal(streamed, want) {
		t.Fatalf("LookupStream: %d offsets (%v); want the %d from %d", len(streamed), err, len(want), start)
	}
}
