package main

import (
	"sync"
	"testing"
)

var dedupTrace = sync.OnceValues(func() ([]uint64, int) { return makeDedupTrace(2_000_000, 1_000_000) })

// BenchmarkDedup replays the same ~2M-lookup trace (~1M distinct identities) through the
// replayd dedup cache, hashicorp/golang-lru/v2 (the locked Cache and the bare simplelru) and an
// unbounded Go map (the exact reference), and reports ns/op per lookup (Seen), the heap held per
// entry after the trace (HeapAlloc delta after GC) and the duplicates each dropped (dedup.go).
//
// "fits": capacity 1<<20 ≥ the distinct count, so every bounded contender is exact.
// "evicting": capacity 1<<18, so a quarter of the identities fit; missed-dups counts the
// duplicates that would be delivered again (never a lost event).
//
//	go test -run '^$' -bench Dedup -benchtime 1x -count 3 ./bench/
func BenchmarkDedup(b *testing.B) {
	trace, exactDups := dedupTrace()
	for _, sc := range []struct {
		name     string
		capacity int
	}{{"fits", 1 << 20}, {"evicting", 1 << 18}} {
		for _, ct := range dedupContenders {
			if sc.name == "evicting" && ct.name == "map-unbounded" {
				continue
			}
			b.Run(sc.name+"/"+ct.name, func(b *testing.B) {
				var total float64
				var r dedupRun
				for range b.N {
					var err error
					if r, err = runDedupTrace(ct, sc.capacity, trace); err != nil {
						b.Fatal(err)
					}
					total += float64(r.elapsed.Nanoseconds())
				}
				if sc.name == "fits" && r.dups != exactDups {
					b.Fatalf("dropped %d duplicates, the exact count is %d", r.dups, exactDups)
				}
				// One op is one lookup (Seen), not one pass over the trace.
				b.ReportMetric(total/float64(b.N*len(trace)), "ns/op")
				b.ReportMetric(r.bytesPerEntry, "bytes/entry")
				b.ReportMetric(float64(exactDups-r.dups), "missed-dups")
			})
		}
	}
}
