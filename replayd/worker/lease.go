package worker

import (
	"context"
	"errors"
	"sync"
	"time"
)

// errLeaseExpired is the cause of a lease context that ran out on this worker's own clock: no
// heartbeat succeeded in time, so another instance may hold the job by now.
var errLeaseExpired = errors.New("worker: lease expired on this worker's clock (no heartbeat succeeded in time)")

// lease is how long this worker may still act on its job, judged on its own monotonic clock.
//
// The job store's fencing stops a worker that lost its lease from writing, but it cannot stop a
// POST to the webhook: the webhook does not know fencing tokens. So the holder fences itself. The
// store records a heartbeat (or the lease) at some moment after this worker sent it, and another
// instance can take the job only LeaseTimeout after that moment. So the lease is surely ours
// until the moment the last successful renewal was *sent*, plus LeaseTimeout, less a safety margin
// for clock-rate differences and for the time between the check and the bytes leaving. Past it the
// lease context is done and delivery stops, whether or not a heartbeat is still hanging.
//
// time.Now readings carry the monotonic clock, so wall-clock steps do not move the deadline; a
// process stopped (SIGSTOP) past the deadline finds it passed when it runs again, and Err reads
// the clock itself, so no send slips through before the timer goroutine gets to run.
type lease struct {
	timeout, margin time.Duration
	now             func() time.Time

	mu     sync.Mutex
	until  time.Time
	timer  *time.Timer
	cancel context.CancelCauseFunc
	ctx    context.Context
}

// newLease starts a lease acquired by a request sent at sentAt. The returned context is done when
// the lease expires (cause errLeaseExpired) or parent is.
func newLease(parent context.Context, sentAt time.Time, timeout, margin time.Duration, now func() time.Time) (*lease, context.Context) {
	ctx, cancel := context.WithCancelCause(parent)
	l := &lease{timeout: timeout, margin: margin, now: now, cancel: cancel, ctx: ctx}
	l.until = sentAt.Add(timeout - margin)
	l.timer = time.AfterFunc(l.until.Sub(now()), l.check)
	return l, leaseContext{Context: ctx, l: l}
}

// renewed extends the lease after a renewal sent at sentAt succeeded. A renewal that comes back
// after the lease already expired here does not revive it: delivery has stopped, and the job
// will be taken over (by this instance or another) through the store.
func (l *lease) renewed(sentAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx.Err() != nil {
		return
	}
	if u := sentAt.Add(l.timeout - l.margin); u.After(l.until) {
		l.until = u
		l.timer.Reset(u.Sub(l.now()))
	}
}

// deadline is the moment the lease expires here.
func (l *lease) deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until
}

// check ends the lease if its deadline has passed (the timer may fire early after a Reset race).
func (l *lease) check() {
	l.mu.Lock()
	until := l.until
	l.mu.Unlock()
	if d := until.Sub(l.now()); d > 0 {
		l.timer.Reset(d)
		return
	}
	l.cancel(errLeaseExpired)
}

// lose ends the lease now: the store said another worker holds the job, or it was canceled.
func (l *lease) lose() { l.cancel(errLeaseLost) }

// stop releases the timer; the lease context is done afterwards.
func (l *lease) stop() {
	l.timer.Stop()
	l.cancel(context.Canceled)
}

// leaseContext is the lease's context. Err and Deadline read the lease itself, so every check of
// ctx.Err() before a send (the worker's and the delivery client's, before each attempt) compares
// the clock with the deadline rather than trusting that the timer has already fired.
type leaseContext struct {
	context.Context
	l *lease
}

func (c leaseContext) Deadline() (time.Time, bool) { return c.l.deadline(), true }

func (c leaseContext) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !c.l.now().Before(c.l.deadline()) {
		c.l.cancel(errLeaseExpired)
		return c.Context.Err()
	}
	return nil
}
