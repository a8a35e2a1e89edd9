package dedup

import (
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/replay/replay/segment"
)

// fifoModel is the specification of Cache: a set with FIFO eviction by first insertion.
type fifoModel struct {
	cap   int
	set   map[uint64]struct{}
	queue []uint64
	evict uint64
}

func newModel(capacity int) *fifoModel {
	return &fifoModel{cap: capacity, set: map[uint64]struct{}{}}
}

func (m *fifoModel) seen(h uint64) bool {
	if _, ok := m.set[h]; ok {
		return true
	}
	if len(m.queue) == m.cap {
		delete(m.set, m.queue[0])
		m.queue = m.queue[1:]
		m.evict++
	}
	m.set[h] = struct{}{}
	m.queue = append(m.queue, h)
	return false
}

// trace is a replay-like stream: new keys, near repeats (within 100 positions), far repeats
// (uniform over the past) and hot keys (a Zipf over the first keys), drawn from universe
// values when universe > 0 (to force collisions of small tables) or from all of uint64.
func trace(r *rand.Rand, n int, universe uint64) []uint64 {
	out := make([]uint64, 0, n)
	zipf := rand.NewZipf(r, 1.2, 1, 999)
	var hot []uint64
	for len(out) < n {
		p := r.IntN(100)
		switch {
		case p < 45 || len(out) == 0:
			var k uint64
			if universe > 0 {
				k = r.Uint64N(universe)
			} else {
				k = r.Uint64()
			}
			out = append(out, k)
			if len(hot) < 1000 {
				hot = append(hot, k)
			}
		case p < 80:
			back := 1 + r.IntN(min(100, len(out)))
			out = append(out, out[len(out)-back])
		case p < 92:
			out = append(out, out[r.IntN(len(out))])
		default:
			out = append(out, hot[int(zipf.Uint64())%len(hot)])
		}
	}
	return out
}

// checkInvariants verifies the table against the ring: every held key is in the table exactly
// once, reachable from its home slot without crossing an empty slot, and nothing else is.
func checkInvariants(t *testing.T, c *Cache) {
	t.Helper()
	held := map[uint64]bool{}
	for i := 0; i < c.n; i++ {
		held[c.ring[(c.head-c.n+i+len(c.ring))%len(c.ring)]] = true
	}
	if len(held) != c.n {
		t.Fatalf("ring holds %d distinct keys, n = %d", len(held), c.n)
	}
	if held[0] != c.hasZero {
		t.Fatalf("hasZero = %v, ring holds 0: %v", c.hasZero, held[0])
	}
	inTable := 0
	for pos, k := range c.table {
		if k == 0 {
			continue
		}
		inTable++
		if !held[k] {
			t.Fatalf("table slot %d holds %#x, not in the ring", pos, k)
		}
		for i := c.home(k); i != uint64(pos); i = (i + 1) % c.size {
			if c.table[i] == 0 {
				t.Fatalf("key %#x at slot %d unreachable from home %d: slot %d empty", k, pos, c.home(k), i)
			}
		}
	}
	if want := c.n - map[bool]int{true: 1}[c.hasZero]; inTable != want {
		t.Fatalf("table holds %d keys, want %d", inTable, want)
	}
}

func mustNew(t testing.TB, o Options) *Cache {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestExactWithinCapacity: while fewer than Capacity distinct keys were inserted, Seen agrees
// with a Go map exactly, and nothing is evicted.
func TestExactWithinCapacity(t *testing.T) {
	for _, lf := range []float64{0, 0.9} {
		r := rand.New(rand.NewPCG(1, uint64(lf*10)))
		tr := trace(r, 200_000, 0)
		distinct := map[uint64]struct{}{}
		for _, k := range tr {
			distinct[k] = struct{}{}
		}
		c := mustNew(t, Options{Capacity: len(distinct), LoadFactor: lf})
		oracle := map[uint64]struct{}{}
		dups := 0
		for i, k := range tr {
			_, want := oracle[k]
			oracle[k] = struct{}{}
			if got := c.Seen(k); got != want {
				t.Fatalf("lf %v: position %d key %#x: Seen = %v, oracle %v", lf, i, k, got, want)
			}
			if want {
				dups++
			}
		}
		if c.Len() != len(distinct) || c.Evictions() != 0 {
			t.Fatalf("Len %d Evictions %d, want %d and 0", c.Len(), c.Evictions(), len(distinct))
		}
		for k := range oracle {
			if !c.Contains(k) {
				t.Fatalf("key %#x forgotten within capacity", k)
			}
		}
		checkInvariants(t, c)
		if dups < len(tr)/3 {
			t.Fatalf("trace has only %d duplicates of %d", dups, len(tr))
		}
	}
}

// TestFIFOModel: under heavy eviction the cache behaves exactly as the FIFO specification:
// it remembers exactly the last Capacity keys that were inserted (Seen returned false), a
// repeat does not refresh a key, and Evictions counts the evicted keys. Small universes and
// capacities force long probe clusters, wraparound and deletion inside clusters.
func TestFIFOModel(t *testing.T) {
	cases := []struct {
		capacity int
		lf       float64
		universe uint64
		n        int
	}{
		{1, 0, 4, 2000},
		{2, 0.9, 5, 5000},
		{3, 0.9, 8, 20_000},
		{7, 0.5, 16, 50_000},
		{16, 0.9, 40, 100_000},
		{100, 0.9, 300, 200_000},
		{1000, 0.75, 0, 300_000},
		{4096, 0.5, 0, 300_000},
	}
	for _, tc := range cases {
		r := rand.New(rand.NewPCG(uint64(tc.capacity), tc.universe))
		c := mustNew(t, Options{Capacity: tc.capacity, LoadFactor: tc.lf})
		m := newModel(tc.capacity)
		ever := map[uint64]struct{}{}
		for i, k := range trace(r, tc.n, tc.universe) {
			got, want := c.Seen(k), m.seen(k)
			if got != want {
				t.Fatalf("%+v: position %d key %#x: Seen = %v, FIFO model %v", tc, i, k, got, want)
			}
			if got {
				if _, ok := ever[k]; !ok {
					t.Fatalf("%+v: false positive: %#x was never inserted", tc, k)
				}
			}
			ever[k] = struct{}{}
			if i%997 == 0 || tc.capacity < 20 && i%31 == 0 {
				checkInvariants(t, c)
			}
		}
		if c.Len() != len(m.queue) || c.Evictions() != m.evict {
			t.Fatalf("%+v: Len %d Evictions %d, model %d %d", tc, c.Len(), c.Evictions(), len(m.queue), m.evict)
		}
		for _, k := range m.queue {
			if !c.Contains(k) {
				t.Fatalf("%+v: one of the last Capacity inserted keys, %#x, is forgotten", tc, k)
			}
		}
		checkInvariants(t, c)
	}
}

// TestNoFalsePositivesAfterEviction: after heavy eviction, keys that were never inserted are
// never reported as seen, and every key reported seen was inserted (and not yet evicted).
func TestNoFalsePositivesAfterEviction(t *testing.T) {
	const capacity = 10_000
	r := rand.New(rand.NewPCG(7, 7))
	c := mustNew(t, Options{Capacity: capacity, LoadFactor: 0.9})
	ever := map[uint64]struct{}{}
	for _, k := range trace(r, 500_000, 0) {
		if c.Seen(k) {
			if _, ok := ever[k]; !ok {
				t.Fatalf("false positive %#x", k)
			}
		}
		ever[k] = struct{}{}
	}
	if c.Evictions() < 100_000 {
		t.Fatalf("only %d evictions: not heavy", c.Evictions())
	}
	for range 200_000 {
		k := r.Uint64()
		if _, ok := ever[k]; ok {
			continue
		}
		if c.Contains(k) {
			t.Fatalf("Contains(%#x) of a never-inserted key", k)
		}
		if c.Seen(k) {
			t.Fatalf("Seen(%#x) of a never-inserted key", k)
		}
		ever[k] = struct{}{}
	}
	checkInvariants(t, c)
}

// TestDistanceGuarantee: a repeat is detected whenever fewer than Capacity distinct other keys
// were recorded since its copy, however many hits happened in between.
func TestDistanceGuarantee(t *testing.T) {
	const capacity = 64
	c := mustNew(t, Options{Capacity: capacity})
	c.Seen(1)
	for i := uint64(2); i <= capacity; i++ { // capacity-1 distinct others, each repeated
		c.Seen(i)
		c.Seen(i)
		c.Seen(1)
	}
	if !c.Seen(1) || c.Evictions() != 0 {
		t.Fatalf("key forgotten after %d distinct others", capacity-1)
	}
	c.Seen(capacity + 1) // the Capacity-th other key: 1 is the oldest insertion and goes
	if c.Contains(1) || c.Evictions() != 1 {
		t.Fatalf("FIFO: oldest key 1 still held (Evictions %d)", c.Evictions())
	}
	if c.Seen(1) { // delivered again: a duplicate, never a loss
		t.Fatal("evicted key reported as seen")
	}
}

// TestZeroAndMax: the identities 0 (the table's empty marker) and MaxUint64 behave as any other.
func TestZeroAndMax(t *testing.T) {
	c := mustNew(t, Options{Capacity: 3})
	for _, k := range []uint64{0, math.MaxUint64} {
		if c.Contains(k) || c.Seen(k) {
			t.Fatalf("%#x: seen in an empty cache", k)
		}
		if !c.Seen(k) || !c.Contains(k) {
			t.Fatalf("%#x: not seen after insertion", k)
		}
	}
	if c.Len() != 2 {
		t.Fatalf("Len %d, want 2", c.Len())
	}
	checkInvariants(t, c)
	c.Seen(5)
	c.Seen(6) // evicts 0, the oldest
	if c.Contains(0) || !c.Contains(math.MaxUint64) || c.Evictions() != 1 {
		t.Fatalf("after one eviction: Contains(0) %v Contains(max) %v Evictions %d",
			c.Contains(0), c.Contains(math.MaxUint64), c.Evictions())
	}
	checkInvariants(t, c)
	c.Seen(7) // evicts MaxUint64
	if c.Contains(math.MaxUint64) || c.Seen(math.MaxUint64) {
		t.Fatal("MaxUint64 not evicted in FIFO order")
	}
	if c.Seen(0) || !c.Seen(0) {
		t.Fatal("0 not reinserted")
	}
	checkInvariants(t, c)
}

func TestOptions(t *testing.T) {
	var o Options
	if err := o.Validate(); err != nil {
		t.Fatalf("zero Options: %v", err)
	}
	o.EnsureDefaults()
	if o.Capacity != DefaultCapacity || o.LoadFactor != DefaultLoadFactor {
		t.Fatalf("defaults %+v", o)
	}
	c := mustNew(t, Options{})
	if c.Capacity() != 1<<20 || c.Len() != 0 || c.Evictions() != 0 {
		t.Fatalf("default cache: Capacity %d Len %d", c.Capacity(), c.Len())
	}

	bad := Options{Capacity: -1, LoadFactor: math.NaN()}
	err := bad.Validate()
	if err == nil || !strings.Contains(err.Error(), "Capacity -1") || !strings.Contains(err.Error(), "LoadFactor NaN") {
		t.Fatalf("Validate must report both problems, got %v", err)
	}
	if _, err := New(bad); err == nil {
		t.Fatal("New accepted invalid options")
	}
	for _, o := range []Options{
		{Capacity: MaxCapacity + 1},
		{LoadFactor: 0.05},
		{LoadFactor: 1},
		{LoadFactor: -0.5},
		{LoadFactor: math.Inf(1)},
	} {
		if o.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", o)
		}
	}
	for _, o := range []Options{{Capacity: 1}, {Capacity: MaxCapacity}, {LoadFactor: MinLoadFactor}, {LoadFactor: MaxLoadFactor}} {
		if err := o.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", o, err)
		}
	}
}

func TestKey(t *testing.T) {
	value := []byte(`{"for_user_id":"2244994945","tweet_create_events":[{"id_str":"1"}]}`)
	id := []byte("ev-123")
	if got, want := Key(id, value, true), xxhash.Sum64(id); got != want {
		t.Fatalf("event-id present: %#x, want xxhash(event-id) %#x", got, want)
	}
	if got, want := Key(id, value, false), xxhash.Sum64(value); got != want {
		t.Fatalf("no event-id: %#x, want xxhash(value) %#x", got, want)
	}
	if Key(nil, value, false) != Key([]byte("other"), value, false) {
		t.Fatal("eventID must be ignored without the header")
	}
	if Key(id, value, true) != Key(id, []byte("another body"), true) {
		t.Fatal("the event-id wins over the value")
	}
	empty := Key([]byte{}, value, true)
	if empty != xxhash.Sum64(nil) || empty == Key(nil, value, false) {
		t.Fatal("an empty event-id header is still an event id")
	}

	hdrs := []segment.Header{{Key: []byte("trace"), Value: []byte("x")}, {Key: []byte(EventIDHeader), Value: id}, {Key: []byte(EventIDHeader), Value: []byte("second")}}
	if RecordKey(hdrs, value) != Key(id, value, true) {
		t.Fatal("RecordKey: the first event-id header wins")
	}
	if RecordKey(hdrs[:1], value) != Key(nil, value, false) {
		t.Fatal("RecordKey without event-id: the value")
	}
	if RecordKey([]segment.Header{{Key: []byte(EventIDHeader)}}, value) != empty {
		t.Fatal("RecordKey: a null event-id header is an empty event id")
	}
	if RecordKey([]segment.Header{{Key: []byte("Event-Id"), Value: id}}, value) != Key(nil, value, false) {
		t.Fatal("RecordKey: header names are case-sensitive")
	}
}

// TestMemoryPerEntry measures the heap held by a full default cache (1<<20 entries): at most
// 32 bytes per entry (24 expected), and Seen allocates nothing.
func TestMemoryPerEntry(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := mustNew(t, Options{})
	r := rand.New(rand.NewPCG(3, 3))
	for c.Len() < c.Capacity() {
		c.Seen(r.Uint64())
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEntry := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(c.Len())
	t.Logf("%.2f bytes/entry at %d entries", perEntry, c.Len())
	if perEntry > 32 {
		t.Fatalf("%.2f bytes/entry at %d entries, want ≤ 32", perEntry, c.Len())
	}
	if a := testing.AllocsPerRun(1000, func() { c.Seen(r.Uint64()) }); a != 0 {
		t.Fatalf("Seen allocates %v times", a)
	}
	runtime.KeepAlive(c)
}

// TestReset: a reset cache is empty (every slot and ring entry zero, whichever way it cleared:
// a few identities, or full and evicting) and then behaves as a new one, exact within capacity.
func TestReset(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for _, n := range []int{0, 1, 10, 5000, 30000} {
		c := mustNew(t, Options{Capacity: 10000})
		var before []uint64
		for range n {
			h := r.Uint64()
			before = append(before, h)
			c.Seen(h)
		}
		c.Seen(0)
		c.Reset()
		if c.Len() != 0 || c.Evictions() != 0 || c.hasZero {
			t.Fatalf("after %d: Len %d, evictions %d, zero held %v", n, c.Len(), c.Evictions(), c.hasZero)
		}
		for i, k := range c.table {
			if k != 0 {
				t.Fatalf("after %d: table[%d] = %x", n, i, k)
			}
		}
		for i, k := range c.ring {
			if k != 0 {
				t.Fatalf("after %d: ring[%d] = %x", n, i, k)
			}
		}
		for _, h := range before {
			if c.Contains(h) {
				t.Fatalf("after %d: %x still held", n, h)
			}
		}
		for i, h := range before[:min(len(before), 10000)] {
			if c.Seen(h) {
				t.Fatalf("after %d: %x (the %d-th) seen before it was recorded", n, h, i)
			}
		}
		for _, h := range before[:min(len(before), 10000)] {
			if !c.Seen(h) {
				t.Fatalf("after %d: %x not seen again", n, h)
			}
		}
	}
}
