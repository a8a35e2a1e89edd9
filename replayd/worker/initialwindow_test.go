package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/testwait"
	"github.com/replay/replay/replayd/worker"
)

// heldSink holds every delivery until release is closed, counting how many are held at once.
type heldSink struct {
	release chan struct{}
	mu      sync.Mutex
	held    int
	most    int
}

func (s *heldSink) Deliver(ctx context.Context, _ worker.Target, _ []byte) (delivery.Result, error) {
	s.mu.Lock()
	s.held++
	s.most = max(s.most, s.held)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.held--
		s.mu.Unlock()
	}()
	select {
	case <-s.release:
	case <-ctx.Done():
		return delivery.Result{}, ctx.Err()
	}
	return delivery.Result{Attempts: 1, Status: 200, Latency: time.Millisecond}, nil
}

func (s *heldSink) mostHeld() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.most
}

// TestInitialWindow: a job starts with Options.InitialWindow deliveries in flight, before any
// answer (the default, 8, would never send a ninth without one), and no more; the job then
// completes.
func TestInitialWindow(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 600, 3)
	s := &heldSink{release: make(chan struct{})}
	j := w.create(t, webhookA, t0, t0+3600_000)
	if n := len(w.want(webhookA, t0, t0+3600_000)); n < 64 {
		t.Fatalf("only %d events to deliver", n)
	}
	const start = 32
	w.pool(t, "a", func(o *worker.Options) { o.Deliverer, o.InitialWindow = s, start })
	testwait.For(t, 30*time.Second, "32 deliveries in flight", func() bool { return s.mostHeld() >= start })
	if got := s.mostHeld(); got != start {
		t.Fatalf("%d deliveries in flight before any answer, want the initial window %d", got, start)
	}
	close(s.release)
	if done := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.State.Terminal() }); done.State != job.StateCompleted {
		t.Fatalf("job ended %s: %s", done.State, done.Reason)
	}
}

// TestInitialWindowValidated: an initial window below one is refused; zero is the default.
func TestInitialWindowValidated(t *testing.T) {
	o := worker.Options{InitialWindow: -1}
	o.EnsureDefaults()
	if err := o.Validate(); err == nil {
		t.Fatal("InitialWindow -1 accepted")
	}
	o = worker.Options{}
	o.EnsureDefaults()
	if o.InitialWindow != worker.DefaultInitialWindow {
		t.Fatalf("default InitialWindow %d, want %d", o.InitialWindow, worker.DefaultInitialWindow)
	}
}

// releasedDedup is a dedup cache that notes its release and any use after it.
type releasedDedup struct {
	mu        sync.Mutex
	seen      map[uint64]bool
	released  chan struct{}
	lateCalls int
}

func (d *releasedDedup) Seen(h uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.released:
		d.lateCalls++
	default:
	}
	dup := d.seen[h]
	d.seen[h] = true
	return dup
}

func (d *releasedDedup) Release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	close(d.released) // a second release panics
}

// TestDeduperReleased: a job releases its dedup cache (worker.Releaser) once, after its last
// use, and the job is exact.
func TestDeduperReleased(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 600, 3)
	d := &releasedDedup{seen: map[uint64]bool{}, released: make(chan struct{})}
	j := w.create(t, webhookA, t0, t0+3600_000)
	w.pool(t, "a", func(o *worker.Options) { o.NewDeduper = func() worker.Deduper { return d } })
	done := w.finished(t, j.ID)
	if done.State != job.StateCompleted || done.Counters.Delivered != int64(len(w.want(webhookA, t0, t0+3600_000))) {
		t.Fatalf("job ended %s with %+v: %s", done.State, done.Counters, done.Reason)
	}
	testwait.Recv(t, d.released, 10*time.Second)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lateCalls != 0 {
		t.Fatalf("%d uses of the dedup cache after its release", d.lateCalls)
	}
}
