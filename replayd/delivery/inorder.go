package delivery

import (
	"fmt"
	"sync"
)

// InOrder tracks a job's checkpoint when deliveries complete out of order (Concurrency > 1).
//
// The reader calls Begin for each of the job's events in log order as it hands them to a worker,
// and Advance when it has read past a stretch of the log holding none of them; workers call Done
// when an event is delivered, or failed permanently and that failure was recorded. Checkpoint is
// then the offset below which every event is settled: resuming a taken-over job there redelivers
// nothing that was lost and at most the in-flight window twice. It is safe for concurrent use.
type InOrder struct {
	mu       sync.Mutex
	read     int64   // every offset below read has been read (begun or skipped)
	inflight []int64 // begun offsets not yet popped, increasing; window starts at head
	done     []bool  // parallel to inflight
	head     int
}

// NewInOrder starts tracking at start: everything below it is already settled.
func NewInOrder(start int64) *InOrder { return &InOrder{read: start} }

// Begin records that the event at offset is handed out. Offsets must increase and not be below
// what was already read (or advanced past).
func (o *InOrder) Begin(offset int64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if offset < o.read {
		return fmt.Errorf("delivery: InOrder.Begin(%d) is below the read position %d: offsets must increase", offset, o.read)
	}
	o.inflight = append(o.inflight, offset)
	o.done = append(o.done, false)
	o.read = offset + 1
	return nil
}

// Advance records that every offset below next was read and every event among them begun, e.g.
// after a batch of other webhooks' records. It never moves backwards.
func (o *InOrder) Advance(next int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.read = max(o.read, next)
}

// Done records that the event at offset is settled and returns the new checkpoint. Offsets never
// begun, or already done, are an error.
func (o *InOrder) Done(offset int64) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := o.find(offset)
	if i < 0 {
		return o.checkpoint(), fmt.Errorf("delivery: InOrder.Done(%d): offset is not in flight", offset)
	}
	o.done[i] = true
	for o.head < len(o.inflight) && o.done[o.head] {
		o.head++
	}
	// Compact once the settled prefix dominates, so memory follows the window, not the job.
	if o.head > 64 && o.head*2 > len(o.inflight) {
		n := copy(o.inflight, o.inflight[o.head:])
		copy(o.done, o.done[o.head:])
		o.inflight, o.done, o.head = o.inflight[:n], o.done[:n], 0
	}
	return o.checkpoint(), nil
}

// find returns the index of offset among the unsettled window, or -1.
func (o *InOrder) find(offset int64) int {
	lo, hi := o.head, len(o.inflight)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if o.inflight[m] < offset {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(o.inflight) && o.inflight[lo] == offset && !o.done[lo] {
		return lo
	}
	return -1
}

// Checkpoint returns the offset below which every event is settled: the oldest unsettled event's
// offset, or the read position when nothing is unsettled.
func (o *InOrder) Checkpoint() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.checkpoint()
}

// InFlight returns how many begun events are not yet done.
func (o *InOrder) InFlight() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, d := range o.done[o.head:] {
		if !d {
			n++
		}
	}
	return n
}

func (o *InOrder) checkpoint() int64 {
	if o.head < len(o.inflight) {
		return o.inflight[o.head]
	}
	return o.read
}
