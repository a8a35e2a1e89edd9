package worker_test

import (
	"context"
	"strconv"
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

// signedSink records the secret and webhook-id each delivery was made with, holding each one
// until gate lets it go.
type signedSink struct {
	gate chan struct{}
	mu   sync.Mutex
	got  []worker.Target
}

func (s *signedSink) Deliver(ctx context.Context, t worker.Target, _ []byte) (delivery.Result, error) {
	select {
	case <-s.gate:
	case <-ctx.Done():
		return delivery.Result{}, ctx.Err()
	}
	s.mu.Lock()
	s.got = append(s.got, t)
	s.mu.Unlock()
	return delivery.Result{Attempts: 1, Status: 200}, nil
}

func (s *signedSink) targets() []worker.Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]worker.Target(nil), s.got...)
}

// A secret rotated while a job runs signs the rest of its deliveries from the next heartbeat on;
// every event has its own webhook-id, msg_<job>_<offset>, and the status event msg_<job>_status.
func TestRotationAppliesToARunningJob(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 600, 3)
	var secret atomic.Value
	secret.Store("old")
	asked := make(chan string, 1000)
	s := &signedSink{gate: make(chan struct{})}
	from, to := t0, t0+3600_000
	j := w.create(t, webhookA, from, to)
	w.pool(t, "a", func(o *worker.Options) {
		o.StrictOrder, o.Deliverer = true, s
		o.Targets = func(_ context.Context, id int64) (worker.Target, error) {
			sec := secret.Load().(string)
			asked <- sec
			return worker.Target{WebhookID: strconv.FormatInt(id, 10), URL: "http://sink", Secret: []byte(sec)}, nil
		}
	})
	for range 5 {
		s.gate <- struct{}{}
	}
	secret.Store("new")
	// The next Targets call after the switch is a heartbeat's (delivery asked when it began).
	testwait.For(t, 30*time.Second, "a heartbeat to ask for the target after the rotation", func() bool {
		for {
			select {
			case sec := <-asked:
				if sec == "new" {
					return true
				}
			default:
				return false
			}
		}
	})
	close(s.gate)
	done := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.State.Terminal() })
	if done.State != job.StateCompleted {
		t.Fatalf("job ended %s: %s", done.State, done.Reason)
	}
	want := len(w.want(webhookA, from, to))
	testwait.For(t, 30*time.Second, "the status event", func() bool { return len(s.targets()) == want+1 })
	got := s.targets()
	ids := map[string]bool{}
	for i, tg := range got {
		switch {
		case i < 5 && string(tg.Secret) != "old":
			t.Errorf("delivery %d before the rotation signed with %q", i+1, tg.Secret)
		case i > 6 && string(tg.Secret) != "new": // the one held at the gate had its target already
			t.Errorf("delivery %d after the rotation's heartbeat signed with %q", i+1, tg.Secret)
		}
		prefix := "msg_" + strconv.FormatInt(j.ID, 10) + "_"
		if !strings.HasPrefix(tg.MessageID, prefix) || ids[tg.MessageID] {
			t.Errorf("delivery %d: webhook-id %q (want %s… and each its own)", i+1, tg.MessageID, prefix)
		}
		ids[tg.MessageID] = true
	}
	if last := got[len(got)-1].MessageID; last != worker.StatusMessageID(j.ID) {
		t.Errorf("the status event's webhook-id is %q", last)
	}
}
