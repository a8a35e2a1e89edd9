package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/replay/replay/replayd/delivery"
)

// An outage is a job's webhook being down: a delivery failed with an error worth retrying (a 5xx
// or 429, a timeout, a refused or reset connection) after the delivery client's own attempts.
// The job pauses instead of failing: no new event is handed out, one delivery (the prober) is
// retried with backoff from Options.OutageRetryMin to OutageRetryMax, the others in flight wait,
// the heartbeat goes on (the lease is held and the checkpoint stays the settled prefix); when a
// delivery succeeds again everything resumes where it stopped. A paused job does not hold a
// worker: the pool starts a stand-in that leases other jobs meanwhile (Pool.jobPaused). An outage longer than
// Options.MaxOutage (default 1 hour) ends the job INCOMPLETE, saying since when the webhook was
// down. A drain during an outage releases the job with the waiting events undelivered and
// unsettled: the next holder starts with them.
type outage struct {
	mu    sync.Mutex
	since time.Time     // zero while the webhook is up
	up    chan struct{} // closed while the webhook is up; a fresh one for each outage
}

func newOutage() *outage {
	o := &outage{up: make(chan struct{})}
	close(o.up)
	return o
}

// begin marks the webhook down unless it already is. It returns when the outage started, the
// channel closed when it ends, and whether this call started it.
func (o *outage) begin(now time.Time) (since time.Time, up <-chan struct{}, started bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		o.since, o.up, started = now, make(chan struct{}), true
	}
	return o.since, o.up, started
}

// end marks the webhook up; ended says whether it was down, for how long.
func (o *outage) end(now time.Time) (down time.Duration, ended bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return 0, false
	}
	down = now.Sub(o.since)
	o.since = time.Time{}
	close(o.up)
	return down, true
}

// upCh is closed while the webhook is up.
func (o *outage) upCh() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.up
}

// OutageError is a delivery given up because the webhook stayed down longer than MaxOutage.
type OutageError struct {
	Since time.Time
	Max   time.Duration
	Last  error // the last delivery error
}

func (e *OutageError) Error() string {
	return fmt.Sprintf("the webhook was down from %s for longer than %v (last: %v)", e.Since.UTC().Format(time.RFC3339), e.Max, e.Last)
}

func (e *OutageError) Unwrap() error { return e.Last }

// ride retries the delivery of e, which failed with err worth retrying, through the outage: as
// the prober with backoff, or waiting for another delivery to find the webhook back. It returns
// the final result: delivered, a failure not worth retrying, an *OutageError after MaxOutage,
// errDrain, errHalted or the lease's end.
func (s *senders) ride(ctx context.Context, e send, res delivery.Result, err error) (delivery.Result, error) {
	r := s.r
	o, m := &r.pool.opts, r.pool.opts.Metrics
	wait := o.OutageRetryMin
	prober := false
	for {
		if g := s.gaveUp.Load(); g != nil {
			return res, g
		}
		since, up, started := s.outage.begin(time.Now())
		if started {
			prober = true
			m.WebhookOutages.Inc()
			r.pool.jobPaused()
			r.log.Warn("webhook down: the job pauses until it answers again", "err", err, "max_outage", o.MaxOutage)
		}
		if g := s.gaveUp.Load(); g != nil {
			return res, g
		}
		left := time.Until(since.Add(o.MaxOutage))
		if left <= 0 {
			// Given up: every delivery waiting here and every event not handed out yet fails
			// with this, without calling the webhook again (senders.failed).
			g := &OutageError{Since: since, Max: o.MaxOutage, Last: err}
			if s.gaveUp.CompareAndSwap(nil, g) {
				close(s.gaveUpCh)
			} else {
				g = s.gaveUp.Load()
			}
			s.endOutage()
			return res, g
		}
		var timer *time.Timer
		if prober {
			timer = time.NewTimer(min(wait, left))
			wait = min(2*wait, o.OutageRetryMax)
		} else {
			timer = time.NewTimer(left)
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return res, ctx.Err()
		case <-s.drain:
			timer.Stop()
			return res, errDrain
		case <-r.halt:
			timer.Stop()
			return res, errHalted
		case <-up:
			timer.Stop()
		case <-s.gaveUpCh:
			timer.Stop()
			return res, s.gaveUp.Load()
		case <-timer.C:
			if !prober {
				continue // MaxOutage: judged at the top
			}
		}
		if ferr := s.failed(); ferr != nil {
			return res, ferr // another delivery gave up: so does this one
		}
		res, err = o.Deliverer.Deliver(ctx, s.targetOf(e), e.body)
		if err == nil {
			if down, ended := s.outage.end(time.Now()); ended {
				r.pool.jobResumed()
				r.log.Info("webhook back: the job resumes", "down", down.Round(time.Millisecond))
			}
			return res, nil
		}
		if ctx.Err() != nil || !delivery.IsRetryable(err) {
			return res, err
		}
	}
}

// endOutage ends an outage the job did not see the end of (it gave up, drained or lost its
// lease), for the paused-jobs gauge.
func (s *senders) endOutage() {
	if _, ended := s.outage.end(time.Now()); ended {
		s.r.pool.jobResumed()
	}
}
