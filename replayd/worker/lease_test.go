package worker

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestLeaseExpiresOnItsOwnClock: without a renewal the lease context is done, with cause
// errLeaseExpired, at sent + timeout - margin; not before.
func TestLeaseExpiresOnItsOwnClock(t *testing.T) {
	sent := time.Now()
	l, ctx := newLease(t.Context(), sent, 300*time.Millisecond, 100*time.Millisecond, time.Now)
	defer l.stop()
	if err := ctx.Err(); err != nil {
		t.Fatalf("a fresh lease is done: %v", err)
	}
	if dl, ok := ctx.Deadline(); !ok || !dl.Equal(sent.Add(200*time.Millisecond)) {
		t.Fatalf("deadline %v %v, want sent+200ms", dl, ok)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the lease never expired")
	}
	if got := time.Since(sent); got < 200*time.Millisecond {
		t.Fatalf("expired after %v, before its deadline", got)
	}
	if !errors.Is(context.Cause(ctx), errLeaseExpired) || ctx.Err() == nil {
		t.Fatalf("cause %v, err %v", context.Cause(ctx), ctx.Err())
	}
}

// TestLeaseRenewalsKeepItAndLateOnesDoNotReviveIt: renewals sent in time move the deadline; a
// renewal that succeeds after the lease expired here changes nothing.
func TestLeaseRenewalsKeepItAndLateOnesDoNotReviveIt(t *testing.T) {
	start := time.Now()
	l, ctx := newLease(t.Context(), start, 200*time.Millisecond, 50*time.Millisecond, time.Now)
	defer l.stop()
	tick := time.NewTicker(40 * time.Millisecond)
	for range 10 { // 400ms of renewals, over twice the lease
		<-tick.C
		l.renewed(time.Now())
		if err := ctx.Err(); err != nil {
			t.Fatalf("renewed lease is done after %v: %v", time.Since(start), err)
		}
	}
	tick.Stop()
	<-ctx.Done()
	before := l.deadline()
	l.renewed(time.Now())
	if ctx.Err() == nil || !l.deadline().Equal(before) {
		t.Fatalf("a late renewal revived the lease: err %v, deadline %v → %v", ctx.Err(), before, l.deadline())
	}
}

// TestLeaseErrReadsTheClock: a process stopped past its deadline (SIGSTOP) runs again before its
// timer goroutine does; Err must already say the lease is gone. The clock here jumps instead.
func TestLeaseErrReadsTheClock(t *testing.T) {
	base := time.Now()
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	l, ctx := newLease(t.Context(), base, time.Hour, time.Minute, now)
	defer l.stop()
	if ctx.Err() != nil {
		t.Fatal("done at once")
	}
	skew.Store(int64(2 * time.Hour)) // the timer is an hour away in real time
	if ctx.Err() == nil {
		t.Fatal("Err is nil past the deadline")
	}
	if !errors.Is(context.Cause(ctx), errLeaseExpired) {
		t.Fatalf("cause %v", context.Cause(ctx))
	}
	select {
	case <-ctx.Done():
	default:
		t.Fatal("Err saw the expiry but Done is open")
	}
}

// TestLeaseParentAndStop: the lease ends with its parent, and stop ends it.
func TestLeaseParentAndStop(t *testing.T) {
	parent, cancel := context.WithCancel(t.Context())
	l, ctx := newLease(parent, time.Now(), time.Hour, time.Minute, time.Now)
	cancel()
	<-ctx.Done()
	l.stop()
	l2, ctx2 := newLease(t.Context(), time.Now(), time.Hour, time.Minute, time.Now)
	l2.stop()
	if ctx2.Err() == nil || errors.Is(context.Cause(ctx2), errLeaseExpired) {
		t.Fatalf("stopped lease: err %v cause %v", ctx2.Err(), context.Cause(ctx2))
	}
}
