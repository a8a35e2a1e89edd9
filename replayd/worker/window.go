package worker

import (
	"context"
	"sync"
	"time"
)

// window is how many deliveries of one job may be in flight: it adapts to the webhook as TCP's
// congestion window does to a path. It starts at Options.InitialWindow (8) and grows by one per delivery that
// succeeded on its first attempt (doubling every round trip) up to the threshold, then by one per
// round trip, up to max; a delivery that needed a retry (a 429, a 5xx, a timeout, a broken
// connection) or failed halves it and sets the threshold there. A clean delivery whose answer
// took more than twice the fastest one seen (plus 10 ms) holds the window where it is, as TCP
// Vegas does: the webhook is queueing, and more in flight would only add to its latency. So a
// fast, healthy webhook soon has enough deliveries in flight to reach the rate limit whatever its
// latency, and one that struggles gets fewer.
//
// The events are handed out in log order, each with the next sequence number, and one is handed
// out only while it is fewer than MaxAhead(max) events ahead of the oldest event not yet settled
// (a slow delivery holds the others back, as a receive window does): so at most max are in flight
// and a delivery never runs more than MaxAhead(max)-1 events ahead of the oldest unsettled one.
// With max 1 (StrictOrder) each event is delivered before the next is sent.
type window struct {
	mu       sync.Mutex
	limit    float64 // deliveries allowed in flight now
	thresh   float64 // slow start ends here
	max      int
	ahead    int // MaxAhead(max)
	inFlight int
	changed  chan struct{} // closed when inFlight, limit or base changes while waiting > 0
	waiting  int           // acquires waiting on changed
	next     int64         // the sequence number of the next event handed out
	base     int64         // the oldest sequence number not settled
	settled  []bool        // settled[seq % ahead] for base <= seq < next
	fastest  time.Duration // the shortest answer seen; 0 before the first
}

// windowStart is the window of a new job by default (DefaultInitialWindow, where the why is):
// enough for a webhook a few milliseconds away to be busy at once, small enough not to hit a
// struggling one hard.
const windowStart = DefaultInitialWindow

// reorderFactor is how many times the window's max in flight an event may run ahead of the
// oldest unsettled one. With the bound at max itself, the window was full only while deliveries
// came back in the order they left: one answer a few milliseconds late held back every event
// behind it: at 20 ms with 512 in flight, 35,000 of 50,000 hand-outs waited on the oldest
// event rather than on the window (a replay at a raised limit, counted here); at 2× 1,000 did,
// at 4× none.
const reorderFactor = 4

// MaxAhead is the ordering bound of a window of maxInFlight: no delivery runs MaxAhead or more
// events (in log order) ahead of the oldest one not yet settled. 1 for a window of one (strict
// order), else reorderFactor × maxInFlight (2048 for the default 512).
func MaxAhead(maxInFlight int) int {
	if maxInFlight <= 1 {
		return 1
	}
	return reorderFactor * maxInFlight
}

// newWindow is a job's window of at most max in flight, starting at windowStart.
func newWindow(max int) *window { return newWindowFrom(max, windowStart) }

// newWindowFrom is a window of at most max in flight starting at start (Options.InitialWindow).
func newWindowFrom(most, start int) *window {
	ahead := MaxAhead(most)
	return &window{limit: float64(max(min(start, most), 1)), thresh: float64(most), max: most, ahead: ahead,
		changed: make(chan struct{}), settled: make([]bool, ahead)}
}

// acquire waits until a delivery may start, or ctx ends, and returns its sequence number and how
// many are in flight with it.
func (w *window) acquire(ctx context.Context) (seq int64, inFlight int, err error) {
	w.mu.Lock()
	for {
		if w.inFlight < int(w.limit) && w.next-w.base < int64(w.ahead) {
			w.inFlight++
			seq = w.next
			w.next++
			n := w.inFlight
			w.mu.Unlock()
			return seq, n, nil
		}
		ch := w.changed
		w.waiting++
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			w.mu.Lock()
			w.waiting--
			w.mu.Unlock()
			return 0, 0, ctx.Err()
		}
		w.mu.Lock()
		w.waiting--
	}
}

// release settles the delivery seq. clean says it succeeded at its first attempt, latency is
// how long its answer took: the window grows, or holds if the answer was slow; otherwise it
// halves. It returns the window's size after.
func (w *window) release(seq int64, clean bool, latency time.Duration) (size int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if clean && latency > 0 && (w.fastest == 0 || latency < w.fastest) {
		w.fastest = latency
	}
	switch {
	case clean && latency > 2*w.fastest+10*time.Millisecond:
		// queueing at the webhook: hold
	case !clean:
		w.thresh = max(w.limit/2, 1)
		w.limit = w.thresh
	case w.limit < w.thresh:
		w.limit++
	default:
		w.limit += 1 / w.limit
	}
	w.limit = min(w.limit, float64(w.max))
	w.settle(seq)
	return int(w.limit)
}

// giveBack settles seq, acquired but never used for a delivery, without judging the webhook.
func (w *window) giveBack(seq int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.settle(seq)
}

func (w *window) settle(seq int64) {
	w.inFlight--
	w.settled[seq%int64(w.ahead)] = true
	for w.base < w.next && w.settled[w.base%int64(w.ahead)] {
		w.settled[w.base%int64(w.ahead)] = false
		w.base++
	}
	if w.waiting > 0 { // else nobody is told: no channel to close and make again per delivery
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

// size is the current window, for metrics and tests.
func (w *window) size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int(w.limit)
}
