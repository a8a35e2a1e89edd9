package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/replayd/dedup"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/segment"
)

var (
	errDrain     = errors.New("worker: draining")
	errLeaseLost = errors.New("worker: lease lost")
)

// run is one job being executed by one worker.
type run struct {
	pool  *Pool
	job   *job.Job
	owner string
	log   *slog.Logger

	mu       sync.Mutex
	progress job.Progress
}

func (r *run) snapshot() *job.Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.progress
	return &p
}

func (r *run) update(f func(p *job.Progress)) {
	r.mu.Lock()
	f(&r.progress)
	r.mu.Unlock()
}

// execute runs the job until it is finished, its lease is lost, or the pool drains (ctx done).
func (r *run) execute(ctx context.Context) {
	o, j := &r.pool.opts, r.job
	m := o.Metrics
	if m != nil {
		m.JobsRunning.Inc()
		defer m.JobsRunning.Dec()
		if j.FencingToken > 1 {
			m.Takeovers.Inc()
		}
	}
	r.progress = job.Progress{Checkpoint: j.Checkpoint, Counters: j.Counters, FirstUndeliveredMs: j.FirstUndeliveredMs}
	// jobCtx ends when the lease is lost; ctx (the pool's) ends when draining, which is only
	// looked at between events so that a delivery in flight finishes.
	jobCtx, loseLease := context.WithCancel(context.WithoutCancel(ctx))
	defer loseLease()
	if j.State == job.StateStarted {
		err := o.Jobs.Transition(jobCtx, job.TransitionParams{ID: j.ID, FencingToken: j.FencingToken, To: job.StateOngoing})
		if err != nil {
			r.log.Warn("could not start job", "err", err)
			return
		}
	}
	r.log.Info("job leased", "from_ms", j.FromMs, "to_ms", j.ToMs, "checkpoint", j.Checkpoint, "fencing_token", j.FencingToken)

	hbDone := make(chan struct{})
	hbStop := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(o.HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-hbStop:
				return
			case <-t.C:
			}
			err := o.Jobs.Heartbeat(jobCtx, job.HeartbeatParams{ID: j.ID, FencingToken: j.FencingToken, Progress: r.snapshot()})
			if errors.Is(err, job.ErrLeaseLost) || errors.Is(err, job.ErrInvalidTransition) {
				r.log.Warn("lease lost: stopping the job", "err", err)
				loseLease()
				return
			} else if err != nil {
				r.log.Warn("heartbeat failed", "err", err)
			}
		}
	}()
	outcome, reason, err := r.deliver(ctx, jobCtx)
	close(hbStop)
	<-hbDone

	final := r.snapshot()
	switch {
	case errors.Is(err, errLeaseLost) || jobCtx.Err() != nil:
		r.log.Warn("job abandoned: another worker holds it now, or it was canceled")
		return
	case errors.Is(err, errDrain):
		rerr := o.Jobs.Release(jobCtx, job.ReleaseParams{ID: j.ID, FencingToken: j.FencingToken, Progress: final})
		r.log.Info("job released for another worker", "checkpoint", final.Checkpoint, "err", rerr)
		return
	case err != nil && engine.IsRetryable(err):
		// The log or the index is unreachable for now: hand the job back to be tried again.
		rerr := o.Jobs.Release(jobCtx, job.ReleaseParams{ID: j.ID, FencingToken: j.FencingToken, Progress: final})
		r.log.Warn("job released after a transient error", "err", err, "release_err", rerr)
		return
	case err != nil:
		outcome, reason = job.StateIncomplete, fmt.Sprintf("the events could not be read: %v", err)
	}
	r.finish(jobCtx, outcome, reason)
}

// deliver streams the job's events to its webhook. It returns the state the job should end in
// and why.
func (r *run) deliver(drain, ctx context.Context) (job.State, string, error) {
	o, j := &r.pool.opts, r.job
	m := o.Metrics
	target, err := o.Targets(ctx, j.WebhookID)
	if err != nil {
		return job.StateIncomplete, fmt.Sprintf("the webhook cannot be delivered to: %v", err), nil
	}
	key := []byte(strconv.FormatInt(j.WebhookID, 10))
	offsets, err := o.Locator.Locate(ctx, j.Partition, key, j.FromMs, j.ToMs)
	if err != nil {
		return 0, "", fmt.Errorf("locating events: %w", err)
	}
	resumeAt := j.Checkpoint // events below were delivered by an earlier holder
	seen := o.NewDeduper()
	var rr segment.RecordReader
	// Deliveries run on up to Concurrency goroutines; the checkpoint is the offset below which
	// every event is settled, however they complete. With Concurrency 1 (the default) each
	// delivery ends before the next starts: the webhook gets the events in log order.
	settled := delivery.NewInOrder(max(resumeAt, 0))
	// A slot is taken before an event is handed out and given back by its sender once the
	// outcome is recorded, so that no event is sent after a failure with Concurrency 1. The
	// senders are long-lived: a goroutine per event would grow a fresh stack through the HTTP
	// client every time.
	slots := make(chan struct{}, o.Concurrency)
	work := make(chan send, o.Concurrency)
	var senders sync.WaitGroup
	var failMu sync.Mutex
	var failErr error
	var failOffset int64
	failed := func() error { failMu.Lock(); defer failMu.Unlock(); return failErr }
	moveCheckpoint := func() {
		cp := settled.Checkpoint()
		r.update(func(p *job.Progress) { p.Checkpoint = max(p.Checkpoint, cp) })
	}
	settle := func(offset int64) {
		if _, err := settled.Done(offset); err != nil {
			r.log.Error("checkpoint tracking", "err", err)
		}
		moveCheckpoint()
	}
	deliverOne := func(e send) {
		start := time.Now()
		_, err := o.Deliverer.Deliver(ctx, target, e.body)
		if m != nil {
			m.DeliveryLatency.Observe(time.Since(start).Seconds())
		}
		if err == nil {
			r.update(func(p *job.Progress) { p.Counters.Delivered++ })
			settle(e.offset)
			if m != nil {
				m.EventsDelivered.Inc()
			}
			return
		}
		if ctx.Err() != nil {
			return // the lease is lost: nothing more is recorded
		}
		failMu.Lock()
		if failErr == nil || e.offset < failOffset {
			failErr, failOffset = err, e.offset
		}
		failMu.Unlock()
		r.update(func(p *job.Progress) {
			p.Counters.Failed++
			if p.FirstUndeliveredMs == nil || e.ts < *p.FirstUndeliveredMs {
				p.FirstUndeliveredMs = &e.ts
			}
		})
		if m != nil {
			m.EventsFailed.Inc()
		}
	}
	for range o.Concurrency {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for e := range work {
				deliverOne(e)
				<-slots
			}
		}()
	}
	err = o.Source.ReadBatches(ctx, j.Partition, offsets, func(b *segment.Batch) error {
		if b.IsControl() {
			return nil
		}
		if err := rr.Reset(b); err != nil {
			return err
		}
		for rr.Next() {
			rec := rr.Record()
			if rec.Timestamp < j.FromMs || rec.Timestamp >= j.ToMs || !bytes.Equal(rec.Key, key) {
				continue
			}
			h := dedup.RecordKey(rec.Headers, rec.Value)
			if rec.Offset < resumeAt {
				seen.Seen(h) // delivered before the takeover: remember it, send nothing
				continue
			}
			if drain.Err() != nil {
				return errDrain
			}
			if ctx.Err() != nil {
				return errLeaseLost
			}
			r.update(func(p *job.Progress) { p.Counters.Read++ })
			if m != nil {
				m.EventsRead.Inc()
			}
			if seen.Seen(h) {
				r.update(func(p *job.Progress) { p.Counters.DuplicatesDropped++ })
				if m != nil {
					m.EventsDeduplicated.Inc()
				}
				if failed() == nil { // the checkpoint never passes an undelivered event
					settled.Advance(rec.Offset + 1)
					moveCheckpoint()
				}
				continue
			}
			select { // a free delivery slot
			case slots <- struct{}{}:
			case <-ctx.Done():
				return errLeaseLost
			}
			if failed() != nil {
				// The webhook gave up on an earlier event: count what is not delivered.
				<-slots
				r.update(func(p *job.Progress) { p.Counters.Failed++ })
				if m != nil {
					m.EventsFailed.Inc()
				}
				continue
			}
			if err := settled.Begin(rec.Offset); err != nil {
				<-slots
				return err
			}
			// The reader's buffers move on: the sender gets its own copy of the body.
			work <- send{offset: rec.Offset, ts: rec.Timestamp, body: bytes.Clone(rec.Value)}
		}
		return rr.Err()
	})
	close(work)
	senders.Wait() // a drain or a failure still lets the deliveries in flight finish
	if err != nil {
		return 0, "", err
	}
	if ctx.Err() != nil {
		return 0, "", errLeaseLost
	}
	if failErr != nil {
		p := r.snapshot()
		return job.StateIncomplete, fmt.Sprintf("%d of %d events were not delivered, from %s (offset %d) on: %v",
			p.Counters.Failed, p.Counters.Read-p.Counters.DuplicatesDropped, time.UnixMilli(*p.FirstUndeliveredMs).UTC().Format(time.RFC3339Nano), failOffset, failErr), nil
	}
	// Everything in the window is delivered: the checkpoint moves past the window's batches.
	return job.StateCompleted, "Job completed successfully", nil
}

// send is one event handed to a sender.
type send struct {
	offset, ts int64
	body       []byte
}

// statusEvent is the replay_job_status event POSTed to the webhook when a job ends.
type statusEvent struct {
	Status struct {
		WebhookID   string `json:"webhook_id"`
		State       string `json:"job_state"`
		Description string `json:"job_state_description"`
		JobID       string `json:"job_id"`
	} `json:"replay_job_status"`
}

// finish records the final state, then delivers the replay_job_status event: a developer who
// receives it and asks for the job sees it finished, with its final counts. A status event that
// cannot be delivered is logged; the job's state already says what happened to its events.
func (r *run) finish(ctx context.Context, state job.State, reason string) {
	o, j := &r.pool.opts, r.job
	err := o.Jobs.Transition(ctx, job.TransitionParams{ID: j.ID, FencingToken: j.FencingToken, To: state, Reason: reason, Progress: r.snapshot()})
	if err != nil {
		r.log.Warn("could not record the job's end", "state", state, "err", err)
		return
	}
	if o.Metrics != nil {
		o.Metrics.JobsFinished.WithLabelValues(state.String()).Inc()
	}
	p := r.snapshot()
	r.log.Info("job finished", "state", state, "read", p.Counters.Read, "delivered", p.Counters.Delivered,
		"duplicates", p.Counters.DuplicatesDropped, "failed", p.Counters.Failed, "reason", reason)

	var ev statusEvent
	ev.Status.WebhookID = strconv.FormatInt(j.WebhookID, 10)
	ev.Status.JobID = strconv.FormatInt(j.ID, 10)
	ev.Status.State = "Complete"
	if state != job.StateCompleted {
		ev.Status.State = "Incomplete"
	}
	ev.Status.Description = reason
	body, _ := json.Marshal(ev)
	target, err := o.Targets(ctx, j.WebhookID)
	if err == nil {
		_, err = o.Deliverer.Deliver(ctx, target, body)
	}
	if err != nil {
		r.log.Warn("replay_job_status event not delivered", "err", err)
	}
}
