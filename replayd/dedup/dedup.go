// Package dedup is the bounded duplicate filter of a replay job: it remembers the identities
// (xxhash64) of the events a job has already delivered, so each unique event is POSTed once.
//
// # Identity
//
// An event's identity is Key: xxhash64 of its "event-id" header when the record has one (even an
// empty one), otherwise xxhash64 of the record value (the exact JSON body).
//
// # Memory and eviction
//
// A Cache holds at most Options.Capacity identities in a fixed amount of memory allocated by New
// (about 24 bytes per entry with the default load factor: an open-addressing table of uint64
// keys at load ≤ 1/2 plus a FIFO ring of uint64 keys in insertion order); it never grows. Reset
// empties it for another job, keeping that memory.
//
// While fewer than Capacity distinct identities have been recorded, Seen is exact: it reports
// true for an identity exactly when that identity was recorded before. Once the cache is full,
// recording a new identity evicts the oldest recorded one (FIFO by first insertion; a repeat does
// not refresh an entry). Precisely: an identity is remembered until Capacity other identities
// have been inserted after it, so a duplicate is always detected when fewer than Capacity
// distinct other identities were recorded between the copy that was recorded and the duplicate.
//
// The consequence of eviction is only ever a duplicate delivery, never a lost event: a duplicate
// whose earlier copy was evicted is reported as new (Seen returns false) and is delivered to the
// webhook again. The cache has no false positives of its own: Seen reports true only for an
// identity that is currently stored, i.e. one that was recorded and not yet evicted. The only way
// a distinct event can be dropped is a true 64-bit xxhash collision with an event currently in
// the cache: for a new event that probability is at most Len()/2^64 (≈ 5.7·10⁻¹⁴ at 2^20
// entries), so at most N·Capacity/2^64 over a job of N events (≈ 5.7·10⁻⁵ for 10⁹ events at the
// default capacity). Note also that an event-id header and a record value with the same bytes
// have the same identity; values are JSON bodies and event ids are opaque ids, so this is not a
// concern in practice.
//
// A Cache is not safe for concurrent use: a replay job owns one and calls it from one goroutine.
package dedup

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"

	"github.com/cespare/xxhash/v2"

	"github.com/replay/replay/segment"
)

// EventIDHeader is the record header whose value, when present, is the event's dedup identity.
const EventIDHeader = "event-id"

const (
	// DefaultCapacity is the default Options.Capacity: 1<<20 entries, 24 MiB.
	DefaultCapacity = 1 << 20
	// MaxCapacity is the largest Options.Capacity accepted (2^32 entries, ~100 GiB).
	MaxCapacity = 1 << 32
	// DefaultLoadFactor is the default Options.LoadFactor.
	DefaultLoadFactor = 0.5
	// MinLoadFactor and MaxLoadFactor bound Options.LoadFactor.
	MinLoadFactor = 0.1
	MaxLoadFactor = 0.9
)

// Options configures a Cache. The zero value is valid and means every default.
type Options struct {
	// Capacity is the number of identities the cache remembers before it evicts the oldest one.
	// Memory is fixed by it: 8·Capacity bytes of ring plus 8·Capacity/LoadFactor bytes of table.
	// 0 means DefaultCapacity (1<<20); it must be in [1, MaxCapacity].
	Capacity int
	// LoadFactor is the fill of the hash table when the cache is full, in
	// [MinLoadFactor, MaxLoadFactor]: lower is faster, higher uses less memory (bytes per entry
	// = 8 + 8/LoadFactor). 0 means DefaultLoadFactor (0.5: 24 bytes per entry).
	LoadFactor float64
}

// EnsureDefaults replaces the zero fields of o by their defaults.
func (o *Options) EnsureDefaults() {
	if o.Capacity == 0 {
		o.Capacity = DefaultCapacity
	}
	if o.LoadFactor == 0 {
		o.LoadFactor = DefaultLoadFactor
	}
}

// Validate reports every invalid field of o at once (joined with errors.Join), or nil. Zero
// fields are valid: they mean the default.
func (o *Options) Validate() error {
	var errs []error
	if o.Capacity < 0 || o.Capacity > MaxCapacity {
		errs = append(errs, fmt.Errorf("dedup: Capacity %d out of range [1, %d] (0 means %d)",
			o.Capacity, MaxCapacity, DefaultCapacity))
	}
	if o.LoadFactor != 0 && !(o.LoadFactor >= MinLoadFactor && o.LoadFactor <= MaxLoadFactor) {
		errs = append(errs, fmt.Errorf("dedup: LoadFactor %v out of range [%v, %v] (0 means %v)",
			o.LoadFactor, MinLoadFactor, MaxLoadFactor, DefaultLoadFactor))
	}
	return errors.Join(errs...)
}

// Key returns the dedup identity of a record: xxhash64 of eventID when hasEventID (the record
// has an "event-id" header; an empty header value is still an event id, and value is then
// ignored), otherwise xxhash64 of value, the record's exact value bytes.
func Key(eventID []byte, value []byte, hasEventID bool) uint64 {
	if hasEventID {
		return xxhash.Sum64(eventID)
	}
	return xxhash.Sum64(value)
}

// RecordKey is Key for a record's headers and value: the first header named EventIDHeader, if
// any, is the event id (a null or empty header value is an empty event id).
func RecordKey(headers []segment.Header, value []byte) uint64 {
	for i := range headers {
		if string(headers[i].Key) == EventIDHeader {
			return Key(headers[i].Value, value, true)
		}
	}
	return Key(nil, value, false)
}

// Cache is a bounded set of identities with FIFO eviction; see the package comment for its
// guarantees. It is not safe for concurrent use.
//
// The table uses linear probing with 0 as the empty slot (the identity 0 is held in a flag
// instead) and backward-shift deletion, so it has no tombstones and lookups never degrade with
// eviction. Slots are chosen from a per-cache random seed, so crafted event ids cannot aim at
// one probe chain.
type Cache struct {
	table   []uint64 // open addressing, 0 = empty
	ring    []uint64 // insertion order; ring[head] is the oldest once full
	seed    uint64
	size    uint64 // len(table)
	head    int    // next ring position to write (and, when full, the oldest entry)
	n       int    // entries held, including the identity 0
	hasZero bool   // identity 0 is held
	evicted uint64
}

// New returns an empty cache configured by o (defaults applied first).
func New(o Options) (*Cache, error) {
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	size := uint64(math.Ceil(float64(o.Capacity) / o.LoadFactor))
	if size <= uint64(o.Capacity) { // keep at least one empty slot: probes terminate
		size = uint64(o.Capacity) + 1
	}
	return &Cache{
		table: make([]uint64, size),
		ring:  make([]uint64, o.Capacity),
		seed:  rand.Uint64(),
		size:  size,
	}, nil
}

// home is h's preferred slot: a seeded multiplicative mix mapped onto [0, size) by
// multiply-high (no power-of-two table needed, so memory tracks Capacity exactly).
func (c *Cache) home(h uint64) uint64 {
	hi, _ := bits.Mul64((h^c.seed)*0x9e3779b97f4a7c15, c.size)
	return hi
}

// Seen records h and reports whether it was already present, i.e. whether the event is a
// duplicate to drop. When h is new and the cache is full, the oldest identity is evicted first.
func (c *Cache) Seen(h uint64) bool {
	if h == 0 {
		if c.hasZero {
			return true
		}
		c.evictIfFull()
		c.hasZero = true
		c.push(0)
		return false
	}
	t := c.table
	i := c.home(h)
	for {
		k := t[i]
		if k == h {
			return true
		}
		if k == 0 {
			break
		}
		if i++; i == c.size {
			i = 0
		}
	}
	if c.n == len(c.ring) {
		c.evictOldest()
		// Deletion may have opened a hole earlier on h's probe chain: probe again.
		i = c.home(h)
		for t[i] != 0 {
			if i++; i == c.size {
				i = 0
			}
		}
	}
	t[i] = h
	c.push(h)
	return false
}

// Reset empties the cache, keeping its memory, and picks a new seed: it is then as New made it,
// without the cost of fresh memory (a new table's pages are faulted in one by one as events
// land on them: about 1.5 µs an event over a job's first 10,000 at the default capacity). It
// clears only the slots it used when they are few.
func (c *Cache) Reset() {
	if c.n < len(c.table)/64 {
		// The ring holds every identity in the table (the oldest at head once full): zero
		// their slots, found as Contains finds them.
		for _, h := range c.ring[:c.n] {
			if h == 0 {
				continue
			}
			i := c.home(h)
			for c.table[i] != h {
				if i++; i == c.size {
					i = 0
				}
			}
			c.table[i] = 0
		}
	} else {
		clear(c.table)
	}
	clear(c.ring[:c.n])
	c.seed = rand.Uint64()
	c.head, c.n, c.hasZero, c.evicted = 0, 0, false, 0
}

// Contains reports whether h is present without recording it.
func (c *Cache) Contains(h uint64) bool {
	if h == 0 {
		return c.hasZero
	}
	for i := c.home(h); ; {
		switch c.table[i] {
		case h:
			return true
		case 0:
			return false
		}
		if i++; i == c.size {
			i = 0
		}
	}
}

// Len returns the number of identities held (at most Capacity).
func (c *Cache) Len() int { return c.n }

// Capacity returns the configured capacity.
func (c *Cache) Capacity() int { return len(c.ring) }

// Evictions returns how many identities were evicted to make room.
func (c *Cache) Evictions() uint64 { return c.evicted }

func (c *Cache) push(h uint64) {
	c.ring[c.head] = h
	if c.head++; c.head == len(c.ring) {
		c.head = 0
	}
	if c.n < len(c.ring) {
		c.n++
	}
}

func (c *Cache) evictIfFull() {
	if c.n == len(c.ring) {
		c.evictOldest()
	}
}

// evictOldest removes ring[head], the oldest identity, from the table. The caller overwrites
// ring[head] with the new identity through push, which keeps n at Capacity.
func (c *Cache) evictOldest() {
	c.evicted++
	old := c.ring[c.head]
	if old == 0 {
		c.hasZero = false
		return
	}
	t := c.table
	i := c.home(old)
	for t[i] != old {
		if i++; i == c.size {
			i = 0
		}
	}
	// Backward-shift deletion (Knuth 6.4 Algorithm R): move later members of the cluster whose
	// home is not in (i, j] into the hole, so every remaining key stays reachable from its home.
	j := i
	for {
		if j++; j == c.size {
			j = 0
		}
		k := t[j]
		if k == 0 {
			break
		}
		h := c.home(k)
		var stay bool // h lies cyclically in (i, j]
		if i <= j {
			stay = i < h && h <= j
		} else {
			stay = i < h || h <= j
		}
		if !stay {
			t[i] = k
			i = j
		}
	}
	t[i] = 0
}
