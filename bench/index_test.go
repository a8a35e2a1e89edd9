package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/indextest"
)

// The index benchmarks share the data set of replay.go (160k events, 5k Zipf webhooks here).
//
//	go test -run '^$' -bench 'Index' -benchtime 3x ./bench/
//
// BenchmarkIndex/rebuild/scan and /index: records/s of decoding every record of every partition
// (partitions in parallel, GOMAXPROCS at once) vs building a fresh index from them; index/
// reports ratio_vs_scan and index/log bytes.
// BenchmarkIndex/lookup: Lookup latency percentiles over random webhooks and 30-minute windows.
// BenchmarkIndex/replay/share=X/{index,seed}: reading a hot webhook's events in a 30-minute window
// through the index vs the seed design (replayIndex, replaySeed).
func BenchmarkIndex(b *testing.B) {
	ctx := context.Background()
	d, err := makeIndexData(ctx, b.TempDir(), 160_000, 5000)
	if err != nil {
		b.Fatal(err)
	}
	defer d.src.Close()
	b.Logf("data: %s", d.describe())

	var scanRate float64
	b.Run("rebuild/scan", func(b *testing.B) {
		var n int64
		for b.Loop() {
			c, err := scanAll(ctx, d.src)
			if err != nil {
				b.Fatal(err)
			}
			n += c
		}
		scanRate = float64(n) / b.Elapsed().Seconds()
		b.ReportMetric(scanRate, "records/s")
		b.ReportMetric(float64(d.logBytes)*float64(b.N)/b.Elapsed().Seconds()/1e6, "logMB/s")
	})
	b.Run("rebuild/index", func(b *testing.B) {
		var total time.Duration
		var table int64
		for i := range b.N {
			el, t, err := rebuildOnce(ctx, d.src, filepath.Join(b.TempDir(), "ix"+strconv.Itoa(i)))
			if err != nil {
				b.Fatal(err)
			}
			total, table = total+el, t
		}
		rate := float64(d.records) * float64(b.N) / total.Seconds()
		b.ReportMetric(rate, "records/s")
		b.ReportMetric(float64(d.logBytes)*float64(b.N)/total.Seconds()/1e6, "logMB/s")
		if scanRate > 0 {
			b.ReportMetric(rate/scanRate, "ratio_vs_scan")
		}
		b.ReportMetric(100*float64(table)/float64(d.logBytes), "index_%_of_log")
	})

	ix, err := buildIndex(ctx, d.src, filepath.Join(b.TempDir(), "index"))
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	if err := ix.Compact(ctx); err != nil {
		b.Fatal(err)
	}
	from, to := replayWindowMs()

	b.Run("lookup", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(3, 3))
		zipf := rand.NewZipf(rng, 1.1, 1, 4999)
		var lat []time.Duration
		var offsets int
		for b.Loop() {
			key := indextest.Webhook(int(zipf.Uint64()))
			f := indexStart.UnixMilli() + rng.Int64N((90 * time.Minute).Milliseconds())
			start := time.Now()
			res, err := ix.Lookup(ctx, d.src, key, f, f+replayWindow.Milliseconds())
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
		for _, mode := range []string{"index", "seed"} {
			b.Run(fmt.Sprintf("replay/share=%s/%s", h.label, mode), func(b *testing.B) {
				var st replayStats
				for b.Loop() {
					var one replayStats
					var err error
					if mode == "index" {
						one, err = replayIndex(ctx, ix, d.src, p, h.key, from, to)
					} else {
						one, err = replaySeed(ctx, d.src, p, h.key, from, to)
					}
					if err != nil || one.events == 0 {
						b.Fatalf("%d events: %v", int(one.events), err)
					}
					st.add(one)
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
