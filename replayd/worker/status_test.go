package worker_test

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/testwait"
	"github.com/replay/replay/replayd/worker"
	"github.com/replay/replay/segment"
)

// statusEvents are the replay_job_status events of job id among bodies.
func statusEvents(t *testing.T, bodies []string, id int64) (states []string) {
	for _, b := range bodies {
		if state, _, jobID := statusOf(t, b); jobID == strconv.FormatInt(id, 10) {
			states = append(states, state)
		}
	}
	return states
}

// leaseDying leases j as a worker about to die would: ONGOING, with a lease of 300 ms that no
// heartbeat renews.
func (w *world) leaseDying(t *testing.T, j *job.Job) *job.Job {
	t.Helper()
	dead, err := w.jobs.Lease(t.Context(), job.LeaseParams{Owner: "dead", Timeout: 300 * time.Millisecond})
	if err != nil || dead.ID != j.ID {
		t.Fatalf("lease: %+v, %v", dead, err)
	}
	if err := w.jobs.Transition(t.Context(), job.TransitionParams{ID: j.ID, FencingToken: dead.FencingToken, To: job.StateOngoing}); err != nil {
		t.Fatal(err)
	}
	return dead
}

// A worker that recorded a job's end and died before its status event was delivered leaves the
// event owed: once its lease expires another worker leases the finished job, delivers the event
// (and nothing else) and records it delivered.
func TestStatusEventOfAHolderThatDiedIsDelivered(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 300, 11)
	j := w.create(t, webhookA, t0, t0+3600_000)
	ctx := t.Context()
	dead := w.leaseDying(t, j)
	if err := w.jobs.Transition(ctx, job.TransitionParams{ID: j.ID, FencingToken: dead.FencingToken, To: job.StateIncomplete,
		Reason: "3 of 9 events were not delivered", StatusPending: true}); err != nil {
		t.Fatal(err)
	}
	ended := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.StatusEvent == job.StatusEventPending })
	// The holder is gone. A pool of another instance:
	w.pool(t, "b", nil)
	done := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.StatusEvent == job.StatusEventDelivered })
	if done.State != job.StateIncomplete || !done.FinishedAt.Equal(ended.FinishedAt) || done.Reason != ended.Reason || done.FencingToken != dead.FencingToken+1 {
		t.Fatalf("after the status event: %+v (was %+v)", done, ended)
	}
	got := w.sink.delivered()
	if len(got) != 1 || len(statusEvents(t, got, j.ID)) != 1 {
		t.Fatalf("the webhook got %d bodies %q; want only the job's status event", len(got), got)
	}
	if state, desc, _ := statusOf(t, got[0]); state != "Incomplete" || desc != ended.Reason {
		t.Fatalf("status event %s", got[0])
	}
}

// A status event that cannot be delivered yet (the webhook is down) is still owed after the
// process stops: the drained worker releases the finished job, and the next instance delivers
// the event once the webhook is back. Meanwhile the job says so (status_event pending).
func TestStatusEventSurvivesARestart(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 300, 12)
	s := &downSink{okCalls: make(chan struct{}, 1)}
	s.statusFails.Store(1 << 30)
	j := w.create(t, webhookA, t0, t0+3600_000)
	outage := func(o *worker.Options) {
		o.Deliverer = s
		o.OutageRetryMin, o.OutageRetryMax = 5*time.Millisecond, 20*time.Millisecond
	}
	p1 := w.pool(t, "first", outage)
	pending := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.State == job.StateCompleted })
	if pending.StatusEvent != job.StatusEventPending {
		t.Fatalf("finished job before its status event: %+v", pending)
	}
	before := len(s.delivered())
	if err := p1.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	released := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.FencingToken > pending.FencingToken })
	if released.StatusEvent != job.StatusEventPending || released.State != job.StateCompleted {
		t.Fatalf("after the drain: %+v", released)
	}
	if n := len(statusEvents(t, s.delivered(), j.ID)); n != 0 {
		t.Fatalf("%d status events delivered while the webhook refused them", n)
	}
	s.statusFails.Store(0)
	w.pool(t, "second", outage)
	done := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.StatusEvent == job.StatusEventDelivered })
	if done.LeaseOwner == pending.LeaseOwner {
		t.Fatalf("delivered by %q, the drained worker", done.LeaseOwner)
	}
	got := s.delivered()
	if states := statusEvents(t, got, j.ID); len(states) != 1 || states[0] != "Complete" {
		t.Fatalf("status events %v", states)
	}
	if len(got) != before+1 {
		t.Fatalf("the second instance delivered %d bodies; want the status event alone", len(got)-before)
	}
}

// A status event the webhook keeps refusing is given up after MaxOutage, and the job records it.
func TestStatusEventGivenUp(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 200, 13)
	s := &downSink{okCalls: make(chan struct{}, 1)}
	s.statusFails.Store(1 << 30)
	j := w.create(t, webhookA, t0, t0+3600_000)
	w.pool(t, "a", func(o *worker.Options) {
		o.Deliverer = s
		o.OutageRetryMin, o.OutageRetryMax, o.MaxOutage = 5*time.Millisecond, 20*time.Millisecond, 300*time.Millisecond
	})
	done := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.StatusEvent == job.StatusEventGivenUp })
	if done.State != job.StateCompleted || done.UnderLease() {
		t.Fatalf("given up: %+v", done)
	}
}

// windowRecord is a record of the window in log order, and whether it repeats an earlier one.
type windowRecord struct {
	offset int64
	id     string
	dup    bool
}

// windowRecords lists webhook's records in [from, to) in log order.
func (w *world) windowRecords(t *testing.T, webhook, from, to int64) []windowRecord {
	t.Helper()
	n, _ := w.log.Partitions(t.Context())
	key := []byte(strconv.FormatInt(webhook, 10))
	seen := map[string]bool{}
	var out []windowRecord
	var rr segment.RecordReader
	err := w.log.Scan(t.Context(), engine.PartitionFor(key, n), 0, func(b *segment.Batch) error {
		if err := rr.Reset(b); err != nil {
			return err
		}
		for rr.Next() {
			rec := rr.Record()
			if !bytes.Equal(rec.Key, key) || rec.Timestamp < from || rec.Timestamp >= to {
				continue
			}
			var id string
			for _, h := range rec.Headers {
				if string(h.Key) == "event-id" {
					id = string(h.Value)
				}
			}
			out = append(out, windowRecord{offset: rec.Offset, id: id, dup: seen[id]})
			seen[id] = true
		}
		return rr.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A worker that takes a job over resumes at the checkpoint and delivers again what the earlier
// holder had delivered above it: those deliveries are counted as redelivered, and every event of
// the window counts once in read, dropped and delivered, as if one worker had run the job.
func TestTakeoverCountsRedeliveries(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 3000, 14)
	from, to := t0, t0+3600_000
	recs := w.windowRecords(t, webhookA, from, to)
	want := w.want(webhookA, from, to)
	const settled, read, inFlight = 200, 260, 7 // the earlier holder's progress, in records
	if len(recs) < 2*read {
		t.Fatalf("only %d records in the window", len(recs))
	}
	// The earlier holder read recs[:read], settled recs[:settled] (the checkpoint), and delivered
	// every new event it read but the last inFlight, which were in flight when it died.
	var c job.Counters
	var newEvents, newBelow int64
	for i, r := range recs[:read] {
		c.Read++
		if r.dup {
			c.DuplicatesDropped++
			continue
		}
		newEvents++
		if i < settled {
			newBelow++
		}
	}
	c.Delivered = newEvents - inFlight
	j := w.create(t, webhookA, from, to)
	ctx := t.Context()
	dead := w.leaseDying(t, j)
	if err := w.jobs.Heartbeat(ctx, job.HeartbeatParams{ID: j.ID, FencingToken: dead.FencingToken,
		Progress: &job.Progress{Checkpoint: recs[settled].offset, Counters: c}}); err != nil {
		t.Fatal(err)
	}
	m := worker.NewMetrics(nil)
	w.pool(t, "b", func(o *worker.Options) { o.Metrics = m })
	done := w.finished(t, j.ID)
	if done.State != job.StateCompleted {
		t.Fatalf("job ended %s: %s", done.State, done.Reason)
	}
	var dups int64
	for _, r := range recs {
		if r.dup {
			dups++
		}
	}
	wantC := job.Counters{Read: int64(len(recs)), DuplicatesDropped: dups, Delivered: int64(len(want)), Redelivered: c.Delivered - newBelow}
	if done.Counters != wantC {
		t.Fatalf("counters after the takeover: %+v\nwant %+v", done.Counters, wantC)
	}
	if got := len(w.sink.delivered()) - 1; int64(got) != int64(len(want))-newBelow {
		t.Fatalf("the new holder delivered %d events; want the %d new events from the checkpoint on", got, int64(len(want))-newBelow)
	}
	testwait.For(t, 5*time.Second, "the redelivered metric", func() bool {
		return testutil.ToFloat64(m.EventsRedelivered) == float64(wantC.Redelivered)
	})
}
