package worker_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/testwait"
	"github.com/replay/replay/replayd/worker"
)

// downSink is a webhook that can be taken down: while down it answers 503 (what the delivery
// client returns after its own attempts); statusFails makes the first replay_job_status events
// fail the same way.
type downSink struct {
	down        atomic.Bool
	statusFails atomic.Int32
	mu          sync.Mutex
	bodies      []string
	callsDown   int // Deliver calls while down
	okCalls     chan struct{}
	only        string // when set, only this webhook is down (while down is false)
}

func (s *downSink) Deliver(ctx context.Context, t worker.Target, body []byte) (delivery.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down.Load() || (s.only != "" && t.WebhookID == s.only) {
		s.callsDown++
		return delivery.Result{Attempts: 6, Status: 503}, &delivery.StatusError{Code: 503}
	}
	if strings.Contains(string(body), "replay_job_status") && s.statusFails.Add(-1) >= 0 {
		return delivery.Result{Attempts: 6, Status: 503}, &delivery.StatusError{Code: 503}
	}
	s.bodies = append(s.bodies, string(body))
	select {
	case s.okCalls <- struct{}{}:
	default:
	}
	return delivery.Result{Attempts: 1, Status: 200}, nil
}

func (s *downSink) delivered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.bodies)
}

func (s *downSink) downCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callsDown
}

// A webhook that goes down mid-replay pauses the job instead of failing it: while it is down one
// delivery probes it with backoff and nothing new is handed out; when it is back the job resumes
// where it stopped and completes with every event delivered once and none failed. The status
// event, refused twice, is retried until delivered.
func TestReplayPausesWhileTheWebhookIsDown(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 3000, 11)
	from, to := t0, t0+3600_000
	want := w.want(webhookA, from, to)
	s := &downSink{okCalls: make(chan struct{}, 1)}
	s.statusFails.Store(2)
	j := w.create(t, webhookA, from, to)
	w.pool(t, "a", func(o *worker.Options) {
		o.Deliverer, o.MaxInFlight = s, 8
		o.OutageRetryMin, o.OutageRetryMax = 5*time.Millisecond, 20*time.Millisecond
	})
	testwait.For(t, 30*time.Second, "the first deliveries", func() bool { return len(s.delivered()) >= 100 })
	s.down.Store(true)
	testwait.For(t, 30*time.Second, "the paused job to probe its webhook a few times", func() bool { return s.downCalls() >= 8+5 })
	paused, err := w.jobs.Get(t.Context(), job.GetParams{ID: j.ID})
	if err != nil {
		t.Fatal(err)
	}
	if paused.State != job.StateOngoing || paused.Counters.Failed != 0 {
		t.Fatalf("job during the outage: %s %+v; want ONGOING with nothing failed", paused.State, paused.Counters)
	}
	n := len(s.delivered())
	s.down.Store(false)
	done := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.State.Terminal() })
	if done.State != job.StateCompleted || done.Counters.Failed != 0 || done.Counters.Delivered != int64(len(want)) {
		t.Fatalf("job after the outage: %s %q %+v; want COMPLETED, %d delivered", done.State, done.Reason, done.Counters, len(want))
	}
	testwait.For(t, 30*time.Second, "the status event, refused twice", func() bool {
		got := s.delivered()
		return len(got) > 0 && strings.Contains(got[len(got)-1], `"job_state":"Complete"`)
	})
	got := s.delivered()
	events := got[:len(got)-1]
	if len(events) != len(want) {
		t.Fatalf("delivered %d events, want %d", len(events), len(want))
	}
	seen := map[string]bool{}
	for _, b := range events {
		if seen[b] {
			t.Fatalf("delivered twice: %s", b)
		}
		seen[b] = true
	}
	for _, b := range want {
		if !seen[b] {
			t.Fatalf("never delivered: %s", b)
		}
	}
	// While down: the deliveries in flight when it went down failed once each, then one probed.
	// A job that kept handing out events would have called it for every event of the window.
	if calls := s.downCalls(); calls > len(want)-n {
		t.Fatalf("%d calls to the webhook while it was down; the window's rest was %d events", calls, len(want)-n)
	}
	if n >= len(want) {
		t.Fatalf("the outage began after the last event (%d of %d)", n, len(want))
	}
}

// An outage longer than MaxOutage ends the job INCOMPLETE, saying since when the webhook was down;
// what was delivered before stays counted.
func TestOutageLongerThanMaxOutageEndsIncomplete(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 1500, 12)
	from, to := t0, t0+3600_000
	want := w.want(webhookB, from, to)
	s := &downSink{okCalls: make(chan struct{}, 1)}
	j := w.create(t, webhookB, from, to)
	w.pool(t, "a", func(o *worker.Options) {
		o.Deliverer, o.MaxInFlight = s, 4
		o.OutageRetryMin, o.OutageRetryMax, o.MaxOutage = 5*time.Millisecond, 20*time.Millisecond, 300*time.Millisecond
	})
	testwait.For(t, 30*time.Second, "the first deliveries", func() bool { return len(s.delivered()) >= 20 })
	s.down.Store(true)
	done := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.State.Terminal() })
	c := done.Counters
	if done.State != job.StateIncomplete || !strings.Contains(done.Reason, "the webhook was down from") || !strings.Contains(done.Reason, "for longer than 300ms") ||
		c.Delivered < 20 || c.Delivered+c.Failed != int64(len(want)) || done.FirstUndeliveredMs == nil {
		t.Fatalf("job after a long outage: %s %q %+v (window %d)", done.State, done.Reason, c, len(want))
	}
}
