package worker

import (
	"context"
	"testing"
	"time"

	"github.com/replay/replay/replayd/testwait"
)

// cleanRound fills w's window with deliveries and settles them all at once, each at the first
// try.
func cleanRound(t *testing.T, w *window) {
	t.Helper()
	n := w.size()
	var seqs []int64
	for range n {
		seq, _, err := w.acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	for _, seq := range seqs {
		w.release(seq, true, time.Millisecond)
	}
}

// TestWindowGrowsAndHalves: slow start doubles the window per round of clean deliveries, a
// delivery that needed a retry halves it and ends slow start, and it never passes max.
func TestWindowGrowsAndHalves(t *testing.T) {
	w := newWindow(64)
	if w.size() != windowStart {
		t.Fatalf("start %d, want %d", w.size(), windowStart)
	}
	cleanRound(t, w)
	if w.size() != 2*windowStart {
		t.Fatalf("after a clean round %d, want %d", w.size(), 2*windowStart)
	}
	cleanRound(t, w)
	cleanRound(t, w)
	if w.size() != 64 {
		t.Fatalf("after three clean rounds %d, want the max 64", w.size())
	}
	seq, _, _ := w.acquire(t.Context())
	w.release(seq, false, time.Millisecond)
	if w.size() != 32 {
		t.Fatalf("after a retried delivery %d, want 32", w.size())
	}
	cleanRound(t, w) // congestion avoidance: about one more per round
	if w.limit < 32.9 || w.limit > 33.1 {
		t.Fatalf("after a clean round past the threshold %.2f, want about 33", w.limit)
	}
	one := newWindow(1)
	for range 3 {
		seq, _, _ := one.acquire(t.Context())
		one.release(seq, true, time.Millisecond)
	}
	if one.size() != 1 {
		t.Fatalf("a window of max 1 grew to %d", one.size())
	}
}

// TestWindowAcquireWaits: a full window blocks until a delivery settles, or until ctx ends.
func TestWindowAcquireWaits(t *testing.T) {
	w := newWindow(1)
	first, _, err := w.acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { _, _, err := w.acquire(t.Context()); got <- err }()
	select {
	case err := <-got:
		t.Fatalf("acquire on a full window returned %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	w.release(first, true, time.Millisecond)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := w.acquire(ctx); err == nil {
		t.Fatal("acquire with a canceled context on a full window succeeded")
	}
}

// TestWindowHoldsBackBehindASlowDelivery: behind a slow delivery the others go on, each slot
// reused as it settles, until the next event would be MaxAhead events after the slow one; none
// is handed out that far ahead.
func TestWindowHoldsBackBehindASlowDelivery(t *testing.T) {
	w := newWindow(4)
	w.limit = 4
	slow, _, _ := w.acquire(t.Context())
	ahead := int64(MaxAhead(4))
	if ahead != 16 {
		t.Fatalf("MaxAhead(4) = %d, want 16", ahead)
	}
	for range ahead - 1 { // the ones after it come and go: the slow one holds only its slot
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		seq, _, err := w.acquire(ctx)
		cancel()
		if err != nil {
			t.Fatalf("seq %d behind the slow one: %v", w.next, err)
		}
		w.release(seq, true, time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if seq, _, err := w.acquire(ctx); err == nil {
		t.Fatalf("handed out seq %d, %d ahead of the unsettled seq %d with max 4", seq, seq-slow, slow)
	}
	w.release(slow, true, time.Millisecond)
	if seq, _, err := w.acquire(t.Context()); err != nil || seq != ahead {
		t.Fatalf("after the slow one settled: seq %d, %v", seq, err)
	}
	if MaxAhead(1) != 1 {
		t.Fatalf("MaxAhead(1) = %d: strict order is a window of one", MaxAhead(1))
	}
}

// TestWindowHoldsWhenTheWebhookQueues: clean answers much slower than the fastest one seen do
// not grow the window.
func TestWindowHoldsWhenTheWebhookQueues(t *testing.T) {
	w := newWindow(64)
	seq, _, _ := w.acquire(t.Context())
	w.release(seq, true, 20*time.Millisecond) // fastest 20ms: 9
	for range 20 {
		seq, _, _ := w.acquire(t.Context())
		w.release(seq, true, 200*time.Millisecond)
	}
	if w.size() != windowStart+1 {
		t.Fatalf("window %d after slow answers, want it held at %d", w.size(), windowStart+1)
	}
}

// TestWindowSignalsOnlyWhenWaitedOn: a settle with no acquire waiting makes no channel (one per
// delivery otherwise); with one waiting it wakes it. release returns the window's size.
func TestWindowSignalsOnlyWhenWaitedOn(t *testing.T) {
	w := newWindow(2)
	ch := w.changed
	seq, _, _ := w.acquire(t.Context())
	if n := w.release(seq, true, time.Millisecond); n != w.size() || n != 2 {
		t.Fatalf("release returned %d, size %d, want 2", n, w.size())
	}
	if w.changed != ch {
		t.Fatal("a settle nobody waited on made a new channel")
	}
	a, _, _ := w.acquire(t.Context())
	b, _, _ := w.acquire(t.Context())
	got := make(chan error, 1)
	go func() { _, _, err := w.acquire(t.Context()); got <- err }()
	testwait.For(t, 10*time.Second, "the third acquire to wait", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.waiting == 1
	})
	w.release(a, true, time.Millisecond)
	if err := testwait.Recv(t, got, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	w.release(b, true, time.Millisecond)
	if w.waiting != 0 {
		t.Fatalf("%d waiting after the acquire returned", w.waiting)
	}
}

// TestWindowFromAnInitialWindow: a window started larger still doubles per clean round, halves
// after a retried delivery, and is never above max nor below one.
func TestWindowFromAnInitialWindow(t *testing.T) {
	w := newWindowFrom(128, 32)
	if w.size() != 32 {
		t.Fatalf("start %d, want 32", w.size())
	}
	cleanRound(t, w)
	if w.size() != 64 {
		t.Fatalf("after a clean round %d, want 64", w.size())
	}
	seq, _, _ := w.acquire(t.Context())
	if n := w.release(seq, false, time.Millisecond); n != 32 {
		t.Fatalf("after a retried delivery %d, want 32", n)
	}
	if n := newWindowFrom(4, 100).size(); n != 4 {
		t.Fatalf("an initial window above max starts at %d, want 4", n)
	}
	if n := newWindowFrom(4, 0).size(); n != 1 {
		t.Fatalf("an initial window of 0 starts at %d, want 1", n)
	}
}
