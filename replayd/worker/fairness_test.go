package worker_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/testwait"
	"github.com/replay/replay/replayd/worker"
)

// stuckSink never answers the webhooks in stuck (until the test ends) and accepts the others.
type stuckSink struct {
	stuck   map[string]bool
	ok      *sink
	release chan struct{} // closed when the test ends: the hung deliveries fail
}

func (s *stuckSink) Deliver(ctx context.Context, t worker.Target, body []byte) (delivery.Result, error) {
	if s.stuck[t.WebhookID] {
		select {
		case <-ctx.Done():
		case <-s.release:
		}
		return delivery.Result{}, errors.New("hung webhook")
	}
	return s.ok.Deliver(ctx, t, body)
}

// One app whose webhooks hang cannot take every worker: with MaxJobsPerApp 2 of 3 workers,
// another app's job, queued after all of them, runs and completes while the first app's third
// job waits.
func TestOneAppCannotTakeEveryWorker(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 3000, 21)
	n, _ := w.log.Partitions(t.Context())
	create := func(app, webhook int64) *job.Job {
		j, err := w.jobs.Create(t.Context(), job.CreateParams{AppID: app, WebhookID: webhook,
			Partition: engine.PartitionFor([]byte(strconv.FormatInt(webhook, 10)), n), FromMs: t0, ToMs: t0 + 3600_000})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	a1, a2, a3 := create(1, 777), create(1, 778), create(1, 779)
	b := create(2, webhookB)
	s := &stuckSink{stuck: map[string]bool{"777": true, "778": true, "779": true}, ok: w.sink, release: make(chan struct{})}
	w.pool(t, "a", func(o *worker.Options) { o.Deliverer, o.Workers, o.MaxJobsPerApp = s, 3, 2 })
	t.Cleanup(func() { close(s.release) }) // before the pool's Stop, which waits for deliveries
	done := w.waitFor(t, b.ID, func(j *job.Job) bool { return j.State.Terminal() })
	if done.State != job.StateCompleted {
		t.Fatalf("app 2's job: %s %q", done.State, done.Reason)
	}
	held := 0
	for _, id := range []int64{a1.ID, a2.ID, a3.ID} {
		j, err := w.jobs.Get(t.Context(), job.GetParams{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		if j.State.Held() {
			held++
		}
	}
	if held != 2 {
		t.Fatalf("app 1 holds %d jobs, want its cap of 2", held)
	}
}

// A job paused while its webhook is down does not hold a worker: with one worker, another job
// runs and completes meanwhile; the paused one completes once its webhook is back.
func TestPausedJobDoesNotHoldAWorker(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 2000, 22)
	from, to := t0, t0+3600_000
	s := &downSink{okCalls: make(chan struct{}, 1)}
	s.down.Store(true)
	a := w.create(t, webhookA, from, to)
	w.pool(t, "a", func(o *worker.Options) {
		o.Deliverer, o.Workers, o.MaxInFlight = s, 1, 4
		o.OutageRetryMin, o.OutageRetryMax = 5*time.Millisecond, 20*time.Millisecond
	})
	testwait.For(t, 30*time.Second, "job A to pause", func() bool { return s.downCalls() >= 6 })
	b := w.create(t, webhookB, from, to)
	// B's webhook is the same sink: let B through while A's events stay refused.
	s.mu.Lock()
	s.only = strconv.FormatInt(webhookA, 10)
	s.mu.Unlock()
	s.down.Store(false)
	done := w.waitFor(t, b.ID, func(j *job.Job) bool { return j.State.Terminal() })
	if done.State != job.StateCompleted {
		t.Fatalf("job B while A is paused: %s %q", done.State, done.Reason)
	}
	if j, _ := w.jobs.Get(t.Context(), job.GetParams{ID: a.ID}); j.State != job.StateOngoing || j.Counters.Failed != 0 {
		t.Fatalf("job A after B: %s %+v; want still paused, nothing failed", j.State, j.Counters)
	}
	s.mu.Lock()
	s.only = ""
	s.mu.Unlock()
	if done := w.waitFor(t, a.ID, func(j *job.Job) bool { return j.State.Terminal() }); done.State != job.StateCompleted {
		t.Fatalf("job A once its webhook is back: %s %q", done.State, done.Reason)
	}
}
