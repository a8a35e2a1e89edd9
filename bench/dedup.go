package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/replay/replay/replayd/dedup"
)

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

// dedupContender makes one contender's set for a capacity.
type dedupContender struct {
	name string
	make func(capacity int) (seenSet, error)
}

var dedupContenders = []dedupContender{
	{"replayd-dedup", func(capacity int) (seenSet, error) { return dedup.New(dedup.Options{Capacity: capacity}) }},
	{"golang-lru", func(capacity int) (seenSet, error) {
		c, err := lru.New[uint64, struct{}](capacity)
		return lruSet{c}, err
	}},
	{"golang-lru-simplelru", func(capacity int) (seenSet, error) {
		c, err := simplelru.NewLRU[uint64, struct{}](capacity, nil)
		return simpleLRUSet{c}, err
	}},
	{"map-unbounded", func(int) (seenSet, error) { return mapSet{}, nil }},
}

// dedupRun is one pass of a trace through a fresh set.
type dedupRun struct {
	elapsed       time.Duration // construction included
	bytesPerEntry float64       // heap held after the trace (after GC) ÷ entries
	dups          int
}

// runDedupTrace makes a fresh set and feeds it the trace, timing that; the heap is measured
// around it, outside the timing.
func runDedupTrace(ct dedupContender, capacity int, trace []uint64) (dedupRun, error) {
	var r dedupRun
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	s, err := ct.make(capacity)
	if err != nil {
		return r, err
	}
	for _, h := range trace {
		if s.Seen(h) {
			r.dups++
		}
	}
	r.elapsed = time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	r.bytesPerEntry = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(s.Len())
	runtime.KeepAlive(s)
	return r, nil
}

// runDedup is benchmark 4: ns/op and bytes/entry at 1M entries vs golang-lru and a Go map.
func runDedup(ctx context.Context, c *Config) (*Report, error) {
	rep := &Report{Name: "dedup", Title: "4. Dedup cache: replayd/dedup vs hashicorp/golang-lru/v2 vs a Go map"}
	trace, exact := makeDedupTrace(c.DedupTrace, c.DedupDistinct)
	rep.Setup = fmt.Sprintf("A replay job's identity stream: %d lookups over %d distinct xxhash64 identities (%d duplicates: "+
		"70%% near retries within 100 positions, 20%% Zipf-popular, 10%% uniform far repeats). Each contender gets a fresh "+
		"set with capacity %d (≥ the distinct count, so every bounded contender is exact: each must drop exactly %d "+
		"duplicates) and the whole trace; one op = one `Seen` (lookup + insert on a miss), construction included. "+
		"bytes/entry = live heap after the trace (after GC) minus before, ÷ entries held. golang-lru's `Cache` is the "+
		"locked LRU; `simplelru` the bare one; the map is unbounded (the exact reference). Contenders rotate within a run.",
		len(trace), c.DedupDistinct, exact, c.DedupCapacity, exact)
	const cse = ""
	for run := 0; run < c.Runs; run++ {
		for i := range dedupContenders {
			ct := dedupContenders[(i+run)%len(dedupContenders)]
			r, err := runDedupTrace(ct, c.DedupCapacity, trace)
			if err != nil {
				return rep, fmt.Errorf("%s: %w", ct.name, err)
			}
			if r.dups != exact {
				return rep, fmt.Errorf("%s dropped %d duplicates, the exact count is %d", ct.name, r.dups, exact)
			}
			rep.add(cse, ct.name, "ns/op", "ns", false, float64(r.elapsed.Nanoseconds())/float64(len(trace)))
			rep.add(cse, ct.name, "bytes/entry", "B", false, r.bytesPerEntry)
		}
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	for _, base := range []string{"golang-lru", "golang-lru-simplelru", "map-unbounded"} {
		rep.compare(cse, "replayd-dedup", base, "ns/op", "bytes/entry")
	}
	bpe := rep.med(cse, "replayd-dedup", "bytes/entry")
	at := fmt.Sprintf("%d", c.DedupDistinct)
	if c.DedupDistinct == 1_000_000 {
		at = "1M"
	}
	rep.target(bpe <= 32, "dedup ≤ 32 bytes/entry at 1M entries", "%.1f bytes/entry at %s entries (capacity %d)", bpe, at, c.DedupCapacity)
	x := rep.ratio(cse, "ns/op", "replayd-dedup", "golang-lru")
	rep.target(x > 1, "dedup faster than golang-lru", "%.1f ns/op vs %.1f ns/op (%.1f×)", rep.med(cse, "replayd-dedup", "ns/op"), rep.med(cse, "golang-lru", "ns/op"), x)
	return rep, nil
}
