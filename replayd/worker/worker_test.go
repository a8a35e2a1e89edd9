package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/embeddedjob"
	"github.com/replay/replay/replayd/testwait"
	"github.com/replay/replay/replayd/worker"
	"github.com/replay/replay/segment"
)

const (
	webhookA = int64(1095098195724595200)
	webhookB = int64(1095098195724595201)
	t0       = int64(1_763_800_000_000)
)

// event is one produced event; the oracle of what a replay must deliver.
type event struct {
	webhook int64
	id      string
	ts      int64
	body    string
}

// world is a log, its index, a job store and a recording deliverer.
type world struct {
	dir    string // the log's directory
	log    *engine.Log
	ix     *index.Index
	jobs   *embeddedjob.Driver
	events []event // in log order, per partition order is the log's
	sink   *sink
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	l, err := engine.Open(engine.Options{Dir: dir + "/log", Partitions: 2, MaxBatchBytes: 2048, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ix, err := index.Open(index.Options{Dir: dir + "/index", Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	jobs, err := embeddedjob.Open(embeddedjob.Options{Dir: dir + "/jobs"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jobs.Close() })
	return &world{dir: dir + "/log", log: l, ix: ix, jobs: jobs, sink: &sink{calls: make(chan string, 10000)}}
}

// produce appends n events over an hour for two webhooks (and noise), with re-produced
// duplicates and timestamps up to a minute out of order, then indexes them.
func (w *world) produce(t *testing.T, n int, seed uint64) {
	w.produceOf(t, n, seed, func(rng *rand.Rand) int64 {
		return []int64{webhookA, webhookB, 777 + int64(rng.IntN(50))}[rng.IntN(3)]
	})
}

// produceOf is produce with each event's webhook drawn by webhook.
func (w *world) produceOf(t *testing.T, n int, seed uint64, webhook func(*rand.Rand) int64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var recs []engine.Record
	for i := 0; i < n; i++ {
		wh := webhook(rng)
		ts := t0 + int64(i)*3600_000/int64(n) - rng.Int64N(60_000)
		id := fmt.Sprintf("ev-%d-%d", seed, i)
		body := fmt.Sprintf(`{"for_user_id":"1","favorite_events":[{"id":%q}]}`, id)
		e := event{webhook: wh, id: id, ts: ts, body: body}
		copies := 1
		if rng.IntN(10) == 0 {
			copies = 2 // an at-least-once producer's retry
		}
		for c := 0; c < copies; c++ {
			w.events = append(w.events, e)
			recs = append(recs, engine.Record{Key: []byte(strconv.FormatInt(wh, 10)), Value: []byte(body), Timestamp: ts,
				Headers: []segment.Header{{Key: []byte("event-id"), Value: []byte(id)}}})
		}
	}
	for i := 0; i < len(recs); i += 50 {
		if _, err := w.log.Append(t.Context(), recs[i:min(i+50, len(recs))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.ix.Build(t.Context(), w.log, index.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
}

// want is what a replay of webhook in [from, to) must deliver: its unique events in the window,
// in log order (the partition's order, which is the order appended).
func (w *world) want(webhook, from, to int64) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range w.events {
		if e.webhook == webhook && e.ts >= from && e.ts < to && !seen[e.id] {
			seen[e.id] = true
			out = append(out, e.body)
		}
	}
	return out
}

// sink records what was delivered; fail makes deliveries fail; gate, when set, holds each
// delivery until a value is received.
type sink struct {
	mu     sync.Mutex
	bodies []string
	fail   error
	gate   chan struct{}
	calls  chan string
}

func (s *sink) Deliver(ctx context.Context, t worker.Target, body []byte) (delivery.Result, error) {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return delivery.Result{}, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return delivery.Result{}, s.fail
	}
	s.bodies = append(s.bodies, string(body))
	s.calls <- string(body)
	return delivery.Result{Attempts: 1, Status: 200}, nil
}

func (s *sink) delivered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

type mapDedup map[uint64]bool

func (m mapDedup) Seen(h uint64) bool { seen := m[h]; m[h] = true; return seen }

func (w *world) pool(t *testing.T, name string, o func(*worker.Options)) *worker.Pool {
	opts := worker.Options{
		Jobs: w.jobs, Source: w.log, Locator: worker.IndexLocator(w.ix, w.log),
		Targets: func(_ context.Context, id int64) (worker.Target, error) {
			return worker.Target{WebhookID: strconv.FormatInt(id, 10), URL: "http://sink", Secret: []byte("s")}, nil
		},
		Deliverer: w.sink, NewDeduper: func() worker.Deduper { return mapDedup{} },
		Name: name, Workers: 2, PollInterval: 10 * time.Millisecond,
		LeaseTimeout: 3 * time.Second, HeartbeatInterval: 50 * time.Millisecond,
		Metrics: worker.NewMetrics(prometheus.NewRegistry()),
	}
	if o != nil {
		o(&opts)
	}
	p, err := worker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	return p
}

func (w *world) create(t *testing.T, webhook, from, to int64) *job.Job {
	n, _ := w.log.Partitions(t.Context())
	j, err := w.jobs.Create(t.Context(), job.CreateParams{AppID: 1, WebhookID: webhook,
		Partition: engine.PartitionFor([]byte(strconv.FormatInt(webhook, 10)), n), FromMs: from, ToMs: to})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// waitFor polls the job until cond holds (the workers run in their own goroutines).
func (w *world) waitFor(t *testing.T, id int64, cond func(*job.Job) bool) *job.Job {
	t.Helper()
	var j *job.Job
	testwait.For(t, 60*time.Second, fmt.Sprintf("job %d to reach the expected state", id), func() bool {
		var err error
		if j, err = w.jobs.Get(t.Context(), job.GetParams{ID: id}); err != nil {
			t.Fatal(err)
		}
		return cond(j)
	})
	return j
}

// finished waits for the job to end and its replay_job_status event to reach the sink: the job's
// state is recorded first, then the event is sent.
func (w *world) finished(t *testing.T, id int64) *job.Job {
	t.Helper()
	j := w.waitFor(t, id, func(j *job.Job) bool { return j.State.Terminal() })
	testwait.For(t, 60*time.Second, fmt.Sprintf("the replay_job_status event of job %d", id), func() bool {
		for _, b := range w.sink.delivered() {
			if _, _, jobID := statusOf(t, b); jobID == strconv.FormatInt(id, 10) {
				return true
			}
		}
		return false
	})
	return j
}

func isState(s job.State) func(*job.Job) bool { return func(j *job.Job) bool { return j.State == s } }

func statusOf(t *testing.T, body string) (state, desc, jobID string) {
	raw := map[string]map[string]string{}
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		return "", "", "" // an event, not a status
	}
	s := raw["replay_job_status"]
	return s["job_state"], s["job_state_description"], s["job_id"]
}

func TestReplayDeliversExactlyTheWindowsUniqueEventsInOrder(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 3000, 1)
	from, to := t0+10*60_000, t0+40*60_000
	j := w.create(t, webhookA, from, to)
	w.pool(t, "a", func(o *worker.Options) { o.StrictOrder = true })
	done := w.finished(t, j.ID)
	if done.State != job.StateCompleted {
		t.Fatalf("job ended %s: %s", done.State, done.Reason)
	}
	got := w.sink.delivered()
	want := w.want(webhookA, from, to)
	if len(want) < 100 {
		t.Fatalf("only %d events in the window: the test means little", len(want))
	}
	if len(got) != len(want)+1 {
		t.Fatalf("delivered %d bodies, want %d events and the status event", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivery %d = %s, want %s", i, got[i], want[i])
		}
	}
	state, desc, id := statusOf(t, got[len(got)-1])
	if state != "Complete" || desc != "Job completed successfully" || id != strconv.FormatInt(j.ID, 10) {
		t.Fatalf("status event %s", got[len(got)-1])
	}
	c := done.Counters
	if c.Delivered != int64(len(want)) || c.Read != c.Delivered+c.DuplicatesDropped || c.DuplicatesDropped == 0 || c.Failed != 0 {
		t.Fatalf("counters %+v for %d unique events", c, len(want))
	}
}

func TestReplayOfAWebhookThatNeverRecoversEndsIncomplete(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 500, 2)
	w.sink.fail = errors.New("POST answered 503 after 6 attempts")
	j := w.create(t, webhookB, t0, t0+3600_000)
	w.pool(t, "a", nil)
	done := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.State.Terminal() })
	want := w.want(webhookB, t0, t0+3600_000)
	if done.State != job.StateIncomplete || done.Counters.Failed != int64(len(want)) || done.Counters.Delivered != 0 {
		t.Fatalf("job %s counters %+v, want INCOMPLETE with all %d failed", done.State, done.Counters, len(want))
	}
	if done.FirstUndeliveredMs == nil || done.Checkpoint != job.NoCheckpoint {
		t.Fatalf("first undelivered %v, checkpoint %d", done.FirstUndeliveredMs, done.Checkpoint)
	}
	if !bytes.Contains([]byte(done.Reason), []byte("503")) || !bytes.Contains([]byte(done.Reason), []byte(fmt.Sprintf("%d of %d events were not delivered", len(want), len(want)))) {
		t.Fatalf("reason %q does not say what was not delivered and why", done.Reason)
	}
}

// Stop drains: the running job checkpoints and is released; another pool resumes it at once and
// the two together deliver every event exactly once.
func TestDrainReleasesAndAnotherInstanceResumes(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 2000, 3)
	w.sink.gate = make(chan struct{})
	from, to := t0, t0+3600_000
	j := w.create(t, webhookA, from, to)
	p1 := w.pool(t, "first", func(o *worker.Options) { o.StrictOrder = true })
	for i := 0; i < 40; i++ { // let 40 events through, then drain
		w.sink.gate <- struct{}{}
		<-w.sink.calls
	}
	stopped := make(chan error, 1)
	go func() { stopped <- p1.Stop(context.Background()) }()
	// The delivery in flight completes; the worker then sees the drain at the next event.
	delivered := int64(40)
drain:
	for {
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatal(err)
			}
			break drain
		case w.sink.gate <- struct{}{}:
			<-w.sink.calls
			delivered++
		}
	}
	released := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.State == job.StateOngoing })
	if released.Checkpoint < 0 || released.Counters.Delivered != delivered {
		t.Fatalf("after drain: checkpoint %d, counters %+v; want %d delivered and a checkpoint", released.Checkpoint, released.Counters, delivered)
	}
	close(w.sink.gate)
	w.pool(t, "second", func(o *worker.Options) { o.StrictOrder = true })
	done := w.finished(t, j.ID)
	if done.State != job.StateCompleted {
		t.Fatalf("job ended %s: %s", done.State, done.Reason)
	}
	got := w.sink.delivered()
	want := w.want(webhookA, from, to)
	if len(got) != len(want)+1 {
		t.Fatalf("delivered %d, want %d events + status: a drain must not lose or repeat events", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivery %d = %s, want %s", i, got[i], want[i])
		}
	}
	if done.LeaseOwner == released.LeaseOwner || done.FencingToken <= released.FencingToken {
		t.Fatalf("resumed by %q token %d after %q token %d", done.LeaseOwner, done.FencingToken, released.LeaseOwner, released.FencingToken)
	}
}

// A canceled job's worker loses its lease at the next heartbeat and delivers nothing more.
func TestCancelStopsTheWorker(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 2000, 4)
	w.sink.gate = make(chan struct{})
	j := w.create(t, webhookA, t0, t0+3600_000)
	w.pool(t, "a", nil)
	w.sink.gate <- struct{}{}
	<-w.sink.calls
	if _, err := w.jobs.Cancel(t.Context(), job.CancelParams{ID: j.ID, Reason: "user asked"}); err != nil {
		t.Fatal(err)
	}
	// The worker's delivery in flight is abandoned when its lease is lost (the gate stays shut).
	w.waitFor(t, j.ID, isState(job.StateCanceled))
	testwait.For(t, 10*time.Second, "no more than the delivery before the cancel", func() bool { return len(w.sink.delivered()) <= 1 })
	if n := len(w.sink.delivered()); n != 1 {
		t.Fatalf("%d deliveries after cancel, want the 1 before it", n)
	}
}

// With several deliveries in flight, every unique event still arrives exactly once and the
// checkpoint ends past them all; the order is no longer the log's.
func TestConcurrentDeliveries(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 3000, 5)
	from, to := t0, t0+3600_000
	j := w.create(t, webhookA, from, to)
	w.pool(t, "a", func(o *worker.Options) { o.MaxInFlight = 4 })
	done := w.finished(t, j.ID)
	if done.State != job.StateCompleted {
		t.Fatalf("job ended %s: %s", done.State, done.Reason)
	}
	want := w.want(webhookA, from, to)
	got := w.sink.delivered()
	if len(got) != len(want)+1 {
		t.Fatalf("delivered %d, want %d + status", len(got), len(want))
	}
	count := map[string]int{}
	for _, b := range got[:len(got)-1] {
		count[b]++
	}
	for _, b := range want {
		if count[b] != 1 {
			t.Fatalf("event %s delivered %d times", b, count[b])
		}
	}
	if state, _, _ := statusOf(t, got[len(got)-1]); state != "Complete" {
		t.Fatalf("last delivery is not the status event: %s", got[len(got)-1])
	}
	if done.Counters.Delivered != int64(len(want)) || done.Checkpoint <= 0 {
		t.Fatalf("counters %+v checkpoint %d", done.Counters, done.Checkpoint)
	}
}

// latencySink is a webhook latency away that counts how many deliveries are in flight at once
// and how far ahead of the oldest unsettled event (in log order) each one runs.
type latencySink struct {
	latency time.Duration
	order   map[string]int // body → position in log order

	mu                sync.Mutex
	inFlight, maxIn   int
	pending           map[int]bool
	maxAhead, settled int
	bodies            []string
}

func (s *latencySink) Deliver(ctx context.Context, _ worker.Target, body []byte) (delivery.Result, error) {
	pos, isEvent := s.order[string(body)]
	s.mu.Lock()
	s.inFlight++
	s.maxIn = max(s.maxIn, s.inFlight)
	if isEvent {
		oldest := pos
		for p := range s.pending {
			oldest = min(oldest, p)
		}
		s.maxAhead = max(s.maxAhead, pos-oldest)
		s.pending[pos] = true
	}
	s.mu.Unlock()
	t := time.NewTimer(s.latency)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	s.inFlight--
	delete(s.pending, pos)
	s.bodies = append(s.bodies, string(body))
	s.mu.Unlock()
	return delivery.Result{Attempts: 1, Status: 200}, ctx.Err()
}

// TestAdaptiveWindow: with the defaults, a replay to a webhook 20 ms away keeps many deliveries
// in flight (the window grew), delivers every event exactly once, and never runs more than
// MaxAhead(MaxInFlight)-1 events ahead of the oldest one not yet settled.
func TestAdaptiveWindow(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 6000, 9)
	from, to := t0, t0+3600_000
	want := w.want(webhookA, from, to)
	s := &latencySink{latency: 20 * time.Millisecond, order: map[string]int{}, pending: map[int]bool{}}
	for i, b := range want {
		s.order[b] = i
	}
	j := w.create(t, webhookA, from, to)
	const maxInFlight = 64
	w.pool(t, "a", func(o *worker.Options) { o.Deliverer, o.MaxInFlight = s, maxInFlight })
	done := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.State.Terminal() })
	if done.State != job.StateCompleted || done.Counters.Delivered != int64(len(want)) {
		t.Fatalf("job ended %s with %+v: %s", done.State, done.Counters, done.Reason)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	count := map[string]int{}
	for _, b := range s.bodies {
		count[b]++
	}
	for _, b := range want {
		if count[b] != 1 {
			t.Fatalf("event %s delivered %d times", b, count[b])
		}
	}
	t.Logf("%d events: at most %d in flight, at most %d ahead of the oldest unsettled", len(want), s.maxIn, s.maxAhead)
	if s.maxIn < maxInFlight/2 {
		t.Fatalf("at most %d deliveries in flight: the window did not grow toward %d", s.maxIn, maxInFlight)
	}
	if s.maxIn > maxInFlight || s.maxAhead >= worker.MaxAhead(maxInFlight) {
		t.Fatalf("%d in flight, %d ahead of the oldest unsettled: past MaxInFlight %d or MaxAhead %d", s.maxIn, s.maxAhead, maxInFlight, worker.MaxAhead(maxInFlight))
	}
}

// gatedLocator streams the index's answer but holds the lookup after its first chunk until gate
// is closed.
type gatedLocator struct {
	worker.StreamLocator
	gate chan struct{}
}

// Locate answers with the whole window: only once the lookup may end.
func (g gatedLocator) Locate(ctx context.Context, p int32, key []byte, from, to int64) ([]int64, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.StreamLocator.Locate(ctx, p, key, from, to)
}

func (g gatedLocator) LocateStream(ctx context.Context, p int32, key []byte, from, to int64, emit func([]int64) error) error {
	first := true
	return g.StreamLocator.LocateStream(ctx, p, key, from, to, func(offs []int64) error {
		if err := emit(offs); err != nil {
			return err
		}
		if first {
			first = false
			select {
			case <-g.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
}

// A job delivers the first events of its window while the rest is still being located (a long
// window is a seek per minute bucket), and the whole replay is still exact.
func TestDeliveryStartsBeforeTheLookupEnds(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 3000, 21)
	from, to := t0, t0+3600_000
	j := w.create(t, webhookA, from, to)
	gate := make(chan struct{})
	w.pool(t, "a", func(o *worker.Options) {
		o.StrictOrder = true
		o.Locator = gatedLocator{StreamLocator: worker.IndexLocator(w.ix, w.log).(worker.StreamLocator), gate: gate}
	})
	var open sync.Once
	t.Cleanup(func() { open.Do(func() { close(gate) }) })   // before the pool stops, should Recv fail
	first := testwait.Recv(t, w.sink.calls, 30*time.Second) // while the lookup is held
	open.Do(func() { close(gate) })
	done := w.finished(t, j.ID)
	if done.State != job.StateCompleted {
		t.Fatalf("job ended %s: %s", done.State, done.Reason)
	}
	want := w.want(webhookA, from, to)
	got := w.sink.delivered()
	if first != want[0] || len(got) != len(want)+1 {
		t.Fatalf("first delivery %s (want %s); %d deliveries, want %d and the status event", first, want[0], len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivery %d = %s, want %s", i, got[i], want[i])
		}
	}
}
