package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/index/indextest"
	"github.com/replay/replay/segment"
)

// The index benchmarks share one data set: an embedded log of 2 partitions, 160k ~1 KB events
// (snappy, batches cut at 64 KiB) over 2 hours with timestamps jittered by ±2 min, 5k Zipf
// webhooks, 3% duplicates, plus four hot webhooks in partition 0 holding about 10%, 1%, 0.1% and
// 0.01% of that partition. Everything reads it in place as a broker's segments (engine.DirSource).
//
//	go test -run '^$' -bench 'Index' -benchtime 3x ./bench/
//
// BenchmarkIndex/rebuild/scan and /index: records/s of decoding every record of every partition
// (partitions in parallel, GOMAXPROCS at once) vs building a fresh index from them; index/
// reports ratio_vs_scan and index/log bytes.
// BenchmarkIndex/lookup: Lookup latency percentiles over random webhooks and 30-minute windows.
// BenchmarkIndex/replay/share=X/{index,seed}: reading a hot webhook's events in a 30-minute window:
// Lookup + ReadBatches + decode + filter, vs the seed design, OffsetForTime(from) then Scan of the
// partition filtering by key and timestamp, stopping at the first batch whose base timestamp is
// at least to + 2×jitter (the documented bound that makes the scan complete when timestamps are
// out of order by at most ±jitter; an unbounded seed scan would read to the partition's end).
const (
	benchIndexEvents = 160_000
	benchIndexJitter = 2 * time.Minute
)

var benchIndexStart = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

type indexBenchData struct {
	dir      string
	src      *engine.DirSource
	logBytes int64
	records  int64
	hot      []benchHot
}

type benchHot struct {
	label string
	key   []byte
	share float64 // measured share of partition 0's records
}

func makeIndexBenchData(b *testing.B) *indexBenchData {
	ctx := context.Background()
	dir := b.TempDir()
	l, err := engine.Open(engine.Options{Dir: dir, Partitions: 2, Sync: engine.SyncNever, SegmentBytes: 32 << 20, Retention: -1})
	if err != nil {
		b.Fatal(err)
	}
	// Hot webhook keys that land in partition 0; shares are of all events, and partition 0 holds
	// about half of them.
	var hot []indextest.Hot
	labels := []string{"10%", "1%", "0.1%", "0.01%"}
	shares := []float64{0.10, 0.01, 0.001, 0.0001}
	for i := uint64(0); len(hot) < len(shares); i++ {
		k := strconv.AppendUint(nil, 9000000000000000000+i, 10)
		if engine.PartitionFor(k, 2) == 0 {
			hot = append(hot, indextest.Hot{Key: k, Share: shares[len(hot)] / 2})
		}
	}
	_, err = indextest.Generate(ctx, l, indextest.Spec{
		Events: benchIndexEvents, Webhooks: 5000, Hot: hot, DupRate: 0.03, Start: benchIndexStart,
		Span: 2 * time.Hour, Jitter: benchIndexJitter, ValueSize: 1024, Chunk: 256, Seed: 11,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	src, err := engine.OpenDir(engine.DirOptions{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { src.Close() })
	d := &indexBenchData{dir: dir, src: src, logBytes: filesBytes(b, dir, ".log")}
	// Measure the hot webhooks' shares of partition 0.
	counts := map[string]int{}
	var p0 int
	var rr segment.RecordReader
	for p := int32(0); p < 2; p++ {
		err := src.Scan(ctx, p, 0, func(bt *segment.Batch) error {
			if err := rr.Reset(bt); err != nil {
				return err
			}
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
			b.Fatal(err)
		}
	}
	for i, h := range hot {
		d.hot = append(d.hot, benchHot{label: labels[i], key: h.Key, share: float64(counts[string(h.Key)]) / float64(p0)})
	}
	return d
}

func filesBytes(b testing.TB, dir, suffix string) int64 {
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
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func buildBenchIndex(b *testing.B, d *indexBenchData, dir string) *index.Index {
	ix, err := index.Open(index.Options{Dir: dir, Retention: -1})
	if err != nil {
		b.Fatal(err)
	}
	if err := ix.Build(context.Background(), d.src, index.BuildOptions{}); err != nil {
		b.Fatal(err)
	}
	return ix
}

func BenchmarkIndex(b *testing.B) {
	ctx := context.Background()
	t0 := time.Now()
	d := makeIndexBenchData(b)
	var shares []string
	for _, h := range d.hot {
		shares = append(shares, fmt.Sprintf("%s (measured %.3f%%)", h.label, 100*h.share))
	}
	b.Logf("data: %d records, %.1f MB of segments, made in %v; hot webhooks' shares of partition 0: %s",
		d.records, float64(d.logBytes)/1e6, time.Since(t0).Round(time.Millisecond), strings.Join(shares, ", "))

	var scanRate float64
	b.Run("rebuild/scan", func(b *testing.B) {
		var n int64
		for b.Loop() {
			n += scanAll(b, d.src)
		}
		scanRate = float64(n) / b.Elapsed().Seconds()
		b.ReportMetric(scanRate, "records/s")
		b.ReportMetric(float64(d.logBytes)*float64(b.N)/b.Elapsed().Seconds()/1e6, "logMB/s")
	})
	b.Run("rebuild/index", func(b *testing.B) {
		var ratio float64
		for i := 0; b.Loop(); i++ {
			dir := filepath.Join(b.TempDir(), "ix"+strconv.Itoa(i))
			ix := buildBenchIndex(b, d, dir)
			b.StopTimer()
			if err := ix.Compact(ctx); err != nil {
				b.Fatal(err)
			}
			st, err := ix.Stats()
			if err != nil {
				b.Fatal(err)
			}
			ratio = float64(st.TableBytes) / float64(d.logBytes)
			ix.Close()
			os.RemoveAll(dir)
			b.StartTimer()
		}
		rate := float64(d.records) * float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rate, "records/s")
		b.ReportMetric(float64(d.logBytes)*float64(b.N)/b.Elapsed().Seconds()/1e6, "logMB/s")
		if scanRate > 0 {
			b.ReportMetric(rate/scanRate, "ratio_vs_scan")
		}
		b.ReportMetric(100*ratio, "index_%_of_log")
	})

	ix := buildBenchIndex(b, d, filepath.Join(b.TempDir(), "index"))
	defer ix.Close()
	if err := ix.Compact(ctx); err != nil {
		b.Fatal(err)
	}
	window := 30 * time.Minute
	from := benchIndexStart.Add(45 * time.Minute).UnixMilli()
	to := from + window.Milliseconds()

	b.Run("lookup", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(3, 3))
		zipf := rand.NewZipf(rng, 1.1, 1, 4999)
		var lat []time.Duration
		var offsets int
		for b.Loop() {
			key := indextest.Webhook(int(zipf.Uint64()))
			f := benchIndexStart.UnixMilli() + rng.Int64N((90 * time.Minute).Milliseconds())
			start := time.Now()
			res, err := ix.Lookup(ctx, d.src, key, f, f+window.Milliseconds())
			lat = append(lat, time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
			offsets += len(res.Offsets)
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_µs")
		b.ReportMetric(float64(offsets)/float64(b.N), "batches/lookup")
	})

	for _, h := range d.hot {
		p := engine.PartitionFor(h.key, 2)
		// Both reads must deliver the same events.
		if a, c := replayIndex(b, ix, d.src, p, h.key, from, to), replaySeed(b, d.src, p, h.key, from, to); a.events != c.events || a.events == 0 {
			b.Fatalf("share %s: index read %v events, seed %v", h.label, a.events, c.events)
		}
		for _, mode := range []string{"index", "seed"} {
			b.Run(fmt.Sprintf("replay/share=%s/%s", h.label, mode), func(b *testing.B) {
				var st replayStats
				for b.Loop() {
					if mode == "index" {
						st.add(replayIndex(b, ix, d.src, p, h.key, from, to))
					} else {
						st.add(replaySeed(b, d.src, p, h.key, from, to))
					}
				}
				n := float64(b.N)
				b.ReportMetric(st.bytes/n/1e6, "MB_read/op")
				b.ReportMetric(st.bytes/max(st.events, 1), "bytes_read/event")
				b.ReportMetric(st.events/n, "events/op")
				b.ReportMetric(float64(st.first.Microseconds())/n, "first_event_µs")
			})
		}
	}
}

// scanAll decodes every record of every partition, partitions in parallel, and returns the count.
func scanAll(b *testing.B, src engine.Source) int64 {
	n, err := src.Partitions(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var total int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for p := int32(0); p < n; p++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var rr segment.RecordReader
			var c int64
			var sink int
			err := src.Scan(context.Background(), p, 0, func(bt *segment.Batch) error {
				if err := rr.Reset(bt); err != nil {
					return err
				}
				for rr.Next() {
					r := rr.Record()
					c++
					sink += len(r.Key) + int(r.Timestamp&1)
				}
				return rr.Err()
			})
			if err != nil {
				b.Error(err)
			}
			mu.Lock()
			total += c + int64(sink&0)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return total
}

type replayStats struct {
	bytes, events float64
	first         time.Duration
}

func (s *replayStats) add(o replayStats) {
	s.bytes += o.bytes
	s.events += o.events
	s.first += o.first
}

// replayIndex is a replay's read through the index: Lookup, then ReadBatches of exactly those
// batches, decoding and filtering by key and timestamp.
func replayIndex(b *testing.B, ix *index.Index, src engine.Source, p int32, key []byte, from, to int64) replayStats {
	ctx := context.Background()
	start := time.Now()
	var st replayStats
	res, err := ix.LookupPartition(ctx, src, p, key, from, to)
	if err != nil {
		b.Fatal(err)
	}
	var rr segment.RecordReader
	err = src.ReadBatches(ctx, p, res.Offsets, func(bt *segment.Batch) error {
		st.bytes += float64(bt.Size())
		if err := rr.Reset(bt); err != nil {
			return err
		}
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
	})
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// replaySeed is the seed design's read: OffsetForTime(from), then Scan the partition, filtering by
// key and timestamp, until the first batch whose base timestamp is at least to + 2×jitter.
func replaySeed(b *testing.B, src engine.Source, p int32, key []byte, from, to int64) replayStats {
	ctx := context.Background()
	start := time.Now()
	var st replayStats
	off, found, err := src.OffsetForTime(ctx, p, from)
	if err != nil {
		b.Fatal(err)
	}
	if !found {
		return st
	}
	stopAt := to + 2*benchIndexJitter.Milliseconds()
	var rr segment.RecordReader
	err = src.Scan(ctx, p, off, func(bt *segment.Batch) error {
		if bt.BaseTimestamp >= stopAt {
			return engine.ErrStop
		}
		st.bytes += float64(bt.Size())
		if err := rr.Reset(bt); err != nil {
			return err
		}
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
	})
	if err != nil {
		b.Fatal(err)
	}
	return st
}
