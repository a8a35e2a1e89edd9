package main

import (
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/replay/replay/replayd/dedup"
)

// dedupTraceLen lookups over dedupDistinct distinct identities.
const (
	dedupTraceLen = 2_000_000
	dedupDistinct = 1_000_000
)

var dedupTrace = sync.OnceValues(func() ([]uint64, int) {
	return makeDedupTrace(dedupTraceLen, dedupDistinct)
})

// makeDedupTrace builds a replay job's stream of dedup identities: n lookups, distinct new
// events (xxhash64 of an event-id header, as dedup.Key computes it) and the duplicates that
// producer retries and cross-datacenter replication add: mostly near repeats (within 100
// positions), a Zipf-distributed share of repeats of popular events, and uniform far repeats.
// It returns the trace and the number of duplicates in it (what an exact filter drops).
func makeDedupTrace(n, distinct int) ([]uint64, int) {
	r := rand.New(rand.NewPCG(42, 4242))
	zipf := rand.NewZipf(r, 1.1, 1, uint64(distinct-1))
	out := make([]uint64, 0, n)
	keys := make([]uint64, 0, distinct)
	var buf []byte
	pNew := float64(distinct) / float64(n)
	for len(out) < n {
		p := r.Float64()
		switch {
		case len(keys) == 0 || p < pNew && len(keys) < distinct:
			buf = strconv.AppendUint(append(buf[:0], "ev-"...), 1_900_000_000_000_000_000+uint64(len(keys))*7919, 10)
			k := dedup.Key(buf, nil, true)
			keys = append(keys, k)
			out = append(out, k)
		case p < pNew+(1-pNew)*0.7: // near: a retry a few positions later
			out = append(out, out[len(out)-1-r.IntN(min(100, len(out)))])
		case p < pNew+(1-pNew)*0.9: // popular events, Zipf-ish
			out = append(out, keys[int(zipf.Uint64())%len(keys)])
		default: // far: the other datacenter's copy, anywhere earlier
			out = append(out, keys[r.IntN(len(keys))])
		}
	}
	return out, n - len(keys)
}

// seenSet is the operation every contender implements: record h, report a duplicate.
type seenSet interface {
	Seen(h uint64) bool
	Len() int
}

type lruSet struct{ c *lru.Cache[uint64, struct{}] }

// Seen is the natural LRU dedup: a hit refreshes the entry, a miss adds it.
func (s lruSet) Seen(h uint64) bool {
	if _, ok := s.c.Get(h); ok {
		return true
	}
	s.c.Add(h, struct{}{})
	return false
}
func (s lruSet) Len() int { return s.c.Len() }

type simpleLRUSet struct {
	c *simplelru.LRU[uint64, struct{}]
}

func (s simpleLRUSet) Seen(h uint64) bool {
	if _, ok := s.c.Get(h); ok {
		return true
	}
	s.c.Add(h, struct{}{})
	return false
}
func (s simpleLRUSet) Len() int { return s.c.Len() }

type mapSet map[uint64]struct{}

func (m mapSet) Seen(h uint64) bool {
	if _, ok := m[h]; ok {
		return true
	}
	m[h] = struct{}{}
	return false
}
func (m mapSet) Len() int { return len(m) }

// BenchmarkDedup replays the same ~2M-lookup trace (~1M distinct identities) through the
// replayd dedup cache, hashicorp/golang-lru/v2 (the locked Cache and the bare simplelru) and an
// unbounded Go map (the exact reference), and reports ns/op per lookup (Seen), the heap held per entry
// after the trace (HeapAlloc delta after GC) and the duplicates each dropped.
//
// "fits": capacity 1<<20 ≥ the distinct count, so every bounded contender is exact.
// "evicting": capacity 1<<18, so a quarter of the identities fit; missed-dups counts the
// duplicates that would be delivered again (never a lost event).
//
//	go test -run '^$' -bench Dedup -benchtime 1x -count 3 ./bench/
func BenchmarkDedup(b *testing.B) {
	trace, exactDups := dedupTrace()
	type contender struct {
		name string
		make func(capacity int) seenSet
	}
	contenders := []contender{
		{"replayd-dedup", func(capacity int) seenSet {
			c, err := dedup.New(dedup.Options{Capacity: capacity})
			if err != nil {
				b.Fatal(err)
			}
			return c
		}},
		{"golang-lru", func(capacity int) seenSet {
			c, err := lru.New[uint64, struct{}](capacity)
			if err != nil {
				b.Fatal(err)
			}
			return lruSet{c}
		}},
		{"golang-lru-simplelru", func(capacity int) seenSet {
			c, err := simplelru.NewLRU[uint64, struct{}](capacity, nil)
			if err != nil {
				b.Fatal(err)
			}
			return simpleLRUSet{c}
		}},
		{"map-unbounded", func(int) seenSet { return mapSet{} }},
	}
	for _, sc := range []struct {
		name     string
		capacity int
	}{{"fits", 1 << 20}, {"evicting", 1 << 18}} {
		for _, ct := range contenders {
			if sc.name == "evicting" && ct.name == "map-unbounded" {
				continue
			}
			b.Run(sc.name+"/"+ct.name, func(b *testing.B) {
				var elapsed time.Duration
				var bytesPerEntry float64
				var dups int
				for range b.N {
					b.StopTimer()
					var before, after runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&before)
					b.StartTimer()
					start := time.Now()
					s := ct.make(sc.capacity)
					dups = 0
					for _, h := range trace {
						if s.Seen(h) {
							dups++
						}
					}
					elapsed += time.Since(start)
					b.StopTimer()
					runtime.GC()
					runtime.ReadMemStats(&after)
					bytesPerEntry = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(s.Len())
					runtime.KeepAlive(s)
					b.StartTimer()
				}
				if sc.name == "fits" && dups != exactDups {
					b.Fatalf("dropped %d duplicates, the exact count is %d", dups, exactDups)
				}
				// One op is one lookup (Seen), not one pass over the trace.
				b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*len(trace)), "ns/op")
				b.ReportMetric(bytesPerEntry, "bytes/entry")
				b.ReportMetric(float64(exactDups-dups), "missed-dups")
			})
		}
	}
}
