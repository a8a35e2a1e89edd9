package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/index/indextest"
	"github.com/replay/replay/segment"
)

// The replay and build benchmarks share one data set: an embedded log of 2 partitions, ~1 KB
// events (snappy, batches cut at the engine's default 16 KiB) over indexSpan with timestamps jittered by ±2 min, Zipf
// webhooks, 3% duplicates, plus five hot webhooks in partition 0 holding about 50%, 10%, 1%, 0.1% and
// 0.01% of that partition. Everything reads it in place as a broker's segments (engine.DirSource).
const (
	indexJitter = 2 * time.Minute
	indexSpan   = 2 * time.Hour
	// replayWindow is the replayed window, starting replayOffset into the data.
	replayWindow = 30 * time.Minute
	replayOffset = 45 * time.Minute
)

var indexStart = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

type indexData struct {
	dir      string
	src      *engine.DirSource
	logBytes int64
	records  int64
	batches  int64
	made     time.Duration
	hot      []hotWebhook
}

type hotWebhook struct {
	label string
	key   []byte
	share float64 // measured share of partition 0's records
}

// makeIndexData writes the data set into dir and opens it as a DirSource; Close the source.
func makeIndexData(ctx context.Context, dir string, events, webhooks int) (*indexData, error) {
	t0 := time.Now()
	l, err := engine.Open(engine.Options{Dir: dir, Partitions: 2, Sync: engine.SyncNever, SegmentBytes: 32 << 20, Retention: -1})
	if err != nil {
		return nil, err
	}
	// Hot webhook keys that land in partition 0; shares are of all events, and partition 0 holds
	// about half of them.
	var hot []indextest.Hot
	labels := []string{"50%", "10%", "1%", "0.1%", "0.01%"}
	shares := []float64{0.50, 0.10, 0.01, 0.001, 0.0001}
	for i := uint64(0); len(hot) < len(shares); i++ {
		k := strconv.AppendUint(nil, 9000000000000000000+i, 10)
		if engine.PartitionFor(k, 2) == 0 {
			// At least 20 events, so that the smallest share still has some in the replayed window
			// of a small (quick or test) data set; the description reports the measured shares.
			hot = append(hot, indextest.Hot{Key: k, Share: max(shares[len(hot)]/2, 20/float64(events))})
		}
	}
	_, err = indextest.Generate(ctx, l, indextest.Spec{
		Events: events, Webhooks: webhooks, Hot: hot, DupRate: 0.03, Start: indexStart,
		Span: indexSpan, Jitter: indexJitter, ValueSize: 1024, Chunk: 256, Seed: 11,
	})
	if err != nil {
		l.Close()
		return nil, err
	}
	if err := l.Close(); err != nil {
		return nil, err
	}
	src, err := engine.OpenDir(engine.DirOptions{Dir: dir})
	if err != nil {
		return nil, err
	}
	d := &indexData{dir: dir, src: src}
	if d.logBytes, err = filesBytes(dir, ".log"); err != nil {
		src.Close()
		return nil, err
	}
	// Measure the hot webhooks' shares of partition 0.
	counts := map[string]int{}
	var p0 int
	var rr segment.RecordReader
	for p := int32(0); p < 2; p++ {
		err := src.Scan(ctx, p, 0, func(bt *segment.Batch) error {
			if err := rr.Reset(bt); err != nil {
				return err
			}
			d.batches++
			for rr.Next() {
				d.records++
				if p == 0 {
					p0++
					counts[string(rr.Record().Key)]++
				}
			}
			return rr.Err()
		})
		if err != nil {
			src.Close()
			return nil, err
		}
	}
	for i, h := range hot {
		d.hot = append(d.hot, hotWebhook{label: labels[i], key: h.Key, share: float64(counts[string(h.Key)]) / float64(p0)})
	}
	d.made = time.Since(t0)
	return d, nil
}

func (d *indexData) describe() string {
	var shares []string
	for _, h := range d.hot {
		shares = append(shares, fmt.Sprintf("%s (measured %.3f%%)", h.label, 100*h.share))
	}
	return fmt.Sprintf("%d records in 2 partitions, %.1f MB of snappy segments (made in %v); hot webhooks' shares of partition 0: %s",
		d.records, float64(d.logBytes)/1e6, d.made.Round(time.Millisecond), strings.Join(shares, ", "))
}

// sharedIndexData makes the data set once per suite.
func (c *Config) indexData(ctx context.Context) (*indexData, error) {
	if c.idx != nil {
		return c.idx, nil
	}
	dir := filepath.Join(c.TempDir, "indexdata")
	d, err := makeIndexData(ctx, dir, c.IndexEvents, c.IndexWebhooks)
	if err != nil {
		return nil, fmt.Errorf("making the index data set: %w", err)
	}
	c.Log.Info("index data set", "data", d.describe())
	c.idx = d
	c.cleanup = append(c.cleanup, func() { d.src.Close() })
	return d, nil
}

func filesBytes(dir, suffix string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && strings.HasSuffix(path, suffix) {
			info, err := e.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// buildIndex builds a fresh index of src in dir.
func buildIndex(ctx context.Context, src engine.Source, dir string) (*index.Index, error) {
	ix, err := index.Open(index.Options{Dir: dir, Retention: -1})
	if err != nil {
		return nil, err
	}
	if err := ix.Build(ctx, src, index.BuildOptions{}); err != nil {
		ix.Close()
		return nil, err
	}
	return ix, nil
}

// replayStats is what one replay read did.
type replayStats struct {
	bytes, events, batches float64
	first, total           time.Duration
}

func (s *replayStats) add(o replayStats) {
	s.bytes += o.bytes
	s.events += o.events
	s.batches += o.batches
	s.first += o.first
	s.total += o.total
}

// replayIndex is a replay's read through the index: ReadPartition, which reads the batches the
// lookup lists while it goes on (the first batches before the last buckets are looked up),
// decoded by an engine.Decoder on GOMAXPROCS goroutines as the worker's reads are, and filters
// them by key and timestamp.
func replayIndex(ctx context.Context, ix *index.Index, src engine.Source, p int32, key []byte, from, to int64) (replayStats, error) {
	start := time.Now()
	var st replayStats
	_, err := ix.ReadPartition(ctx, src, p, key, from, to, func(bt *segment.Batch, rr *segment.RecordReader) error {
		st.bytes += float64(bt.Size())
		st.batches++
		if rr == nil {
			return nil // a control batch
		}
		return filterRecords(rr, key, from, to, start, &st)
	})
	st.total = time.Since(start)
	return st, err
}

// replaySeed is the seed design's read: OffsetForTime(from) (Kafka's offsetsForTimes), then Scan
// the partition, filtering by key and timestamp, until the first batch whose base timestamp is at
// least to + 2×jitter: the earliest point where a scan may stop and still be complete when
// timestamps are out of order by at most ±jitter. That bound favours the seed: without it, the
// scan reads to the partition's end.
func replaySeed(ctx context.Context, src engine.Source, p int32, key []byte, from, to int64) (replayStats, error) {
	start := time.Now()
	var st replayStats
	off, found, err := src.OffsetForTime(ctx, p, from)
	if err != nil || !found {
		return st, err
	}
	stopAt := to + 2*indexJitter.Milliseconds()
	var rr segment.RecordReader
	err = src.Scan(ctx, p, off, func(bt *segment.Batch) error {
		if bt.BaseTimestamp >= stopAt {
			return engine.ErrStop
		}
		st.bytes += float64(bt.Size())
		st.batches++
		if bt.IsControl() {
			return nil
		}
		if err := rr.Reset(bt); err != nil { // on this goroutine: the seed decodes on one
			return err
		}
		return filterRecords(&rr, key, from, to, start, &st)
	})
	st.total = time.Since(start)
	return st, err
}

// filterRecords counts the records of key in [from, to) of the batch rr is reset on, noting the
// time of the first.
func filterRecords(rr *segment.RecordReader, key []byte, from, to int64, start time.Time, st *replayStats) error {
	for rr.Next() {
		r := rr.Record()
		if r.Timestamp >= from && r.Timestamp < to && bytes.Equal(r.Key, key) {
			if st.events == 0 {
				st.first = time.Since(start)
			}
			st.events++
		}
	}
	return rr.Err()
}

// replayWindowMs is the replayed window [from, to) in ms.
func replayWindowMs() (int64, int64) {
	from := indexStart.Add(replayOffset).UnixMilli()
	return from, from + replayWindow.Milliseconds()
}

// runReplay is benchmark 1: seek and replay, index vs seed, for the five hot webhooks.
func runReplay(ctx context.Context, c *Config) (*Report, error) {
	rep := &Report{Name: "replay", Title: "1. Seek and replay: index vs the seed's offsetsForTimes + scan"}
	d, err := c.indexData(ctx)
	if err != nil {
		return rep, err
	}
	ix, err := buildIndex(ctx, d.src, filepath.Join(c.TempDir, "replay-index"))
	if err != nil {
		return rep, err
	}
	defer ix.Close()
	if err := ix.Compact(ctx); err != nil {
		return rep, err
	}
	from, to := replayWindowMs()
	rep.Setup = fmt.Sprintf("Data: %s. Each sample replays one hot webhook's %v window "+
		"(%s + %v): **index** = `ReadPartition` (`index.ReadStream`, the worker's read path: the lookup streamed into "+
		"reads of exactly its batches, by offset or, for dense chunks after the first, by a scan of their range, decoded "+
		"on GOMAXPROCS goroutines by `engine.Decoder`) + key/time filter; "+
		"**seed** = `OffsetForTime(from)` (offsetsForTimes) + `Scan` of the partition, decoded on its goroutine, with the same filter, stopping at the "+
		"first batch whose base timestamp is ≥ to + 2×jitter (the earliest stop that is still complete with ±%v jitter; "+
		"the bound favours the seed, which would otherwise read to the partition's end). Both must deliver the same "+
		"events (checked every sample). Variants alternate within a run; segments are in the page cache, so bytes read "+
		"are the cost that would hit a disk or a broker.",
		d.describe(), replayWindow, indexStart.Add(replayOffset).Format("15:04"), replayWindow, indexJitter)
	type variant struct {
		name string
		read func(p int32, key []byte) (replayStats, error)
	}
	variants := []variant{
		{"index", func(p int32, key []byte) (replayStats, error) { return replayIndex(ctx, ix, d.src, p, key, from, to) }},
		{"seed", func(p int32, key []byte) (replayStats, error) { return replaySeed(ctx, d.src, p, key, from, to) }},
	}
	for _, h := range d.hot {
		cse := "share=" + h.label
		p := engine.PartitionFor(h.key, 2)
		for run := 0; run < c.Runs; run++ {
			var events [2]float64
			for i := range variants {
				v := variants[(i+run)%2] // alternate which goes first
				st, err := v.read(p, h.key)
				if err != nil {
					return rep, fmt.Errorf("%s %s: %w", cse, v.name, err)
				}
				events[(i+run)%2] = st.events
				rep.add(cse, v.name, "time to first event", "ms", false, ms(st.first))
				rep.add(cse, v.name, "total time", "ms", false, ms(st.total))
				rep.add(cse, v.name, "bytes read / delivered event", "B", false, st.bytes/max(st.events, 1))
				rep.add(cse, v.name, "MB read", "MB", false, st.bytes/1e6)
				rep.add(cse, v.name, "batches read", "", false, st.batches)
				rep.add(cse, v.name, "events delivered", "", true, st.events)
			}
			if events[0] != events[1] || events[0] == 0 {
				return rep, fmt.Errorf("%s: index read %v events, seed %v", cse, events[0], events[1])
			}
		}
		rep.compare(cse, "index", "seed", "time to first event", "total time", "bytes read / delivered event")
	}
	const tc = "share=0.1%"
	readX := rep.ratio(tc, "bytes read / delivered event", "index", "seed")
	timeX := rep.ratio(tc, "total time", "index", "seed")
	first := rep.med(tc, "index", "time to first event")
	rep.target(readX >= 50, "0.1% webhook: ≥ 50× less read than the scan baseline", "%.0f× less read", readX)
	rep.target(timeX >= 20, "0.1% webhook: ≥ 20× faster than the scan baseline", "%.0f× faster (%.2f ms vs %.1f ms)", timeX,
		rep.med(tc, "index", "total time"), rep.med(tc, "seed", "total time"))
	rep.target(first < 50 && first > 0, "0.1% webhook: time to first event < 50 ms", "%.2f ms", first)
	// Why the read ratio is what it is: a batch holds records of many webhooks.
	perBatch := float64(d.records) / float64(d.batches)
	for _, h := range d.hot {
		if h.label != "0.1%" {
			continue
		}
		cse := "share=" + h.label
		ev, nb := rep.med(cse, "index", "events delivered"), rep.med(cse, "index", "batches read")
		rep.Notes = append(rep.Notes, fmt.Sprintf("Read ratio, explained: a batch holds %.0f records on average (16 KiB "+
			"of ~1 KB events, of all webhooks). At the %s share (measured %.3f%%) the index reads %.0f batches for %.0f "+
			"events (%.2f of the webhook's events per batch read), so its bytes per event are about one batch's, while "+
			"the seed's are a record's ÷ the share: the ratio is bounded by about 1 ÷ (share × records per batch) = "+
			"%.0f×. More than that needs smaller batches (`engine.Options.MaxBatchBytes`, or a producer's batch.size), "+
			"not a better index.", perBatch, h.label, 100*h.share, nb, ev, ev/max(nb, 1), 1/(h.share*perBatch)))
	}
	rep.Notes = append(rep.Notes, "Index path, how it reads (ARCHITECTURE.md, \"Index\"): the lookup hands its answer "+
		"over in ascending chunks as they become final (after a bucket, the offsets below the log's first record at the "+
		"next bucket's start), so the first batch is read after one seek and one `OffsetForTime`, not after the whole "+
		"lookup (before: 9.4 ms to the first event at 50%, of which 8.7 ms the lookup, mostly sorting 42k offsets and "+
		"re-encoding merge operands); later chunks are read while the lookup goes on, by offset or, when dense, by a "+
		"scan of their range (targeted reads cost 0.9 µs a wanted batch of neighbours against a scan's 0.7 µs a batch). "+
		"At every share both paths decode the same kind of batches and snappy dominates their CPU (72–79% of either path's "+
		"at 50%, where the index reads only 5% fewer batches): the seed decodes on its one goroutine, the index path on "+
		"GOMAXPROCS (`engine.Decoder`: the first batch inline, the rest on workers and the reading goroutine, handed over "+
		"in log order), which is what it gains at 50% (with GOMAXPROCS 1 they tie there, as before).")
	if err := plotReplay(c, rep, d); err != nil {
		return rep, err
	}
	return rep, nil
}

// closeAll runs the suite's cleanups (data sets kept open between benchmarks).
func (c *Config) closeAll() {
	for i := len(c.cleanup) - 1; i >= 0; i-- {
		c.cleanup[i]()
	}
	c.cleanup = nil
	c.idx = nil
	_ = os.RemoveAll(filepath.Join(c.TempDir, "indexdata"))
}
