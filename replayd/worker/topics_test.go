package worker_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/embeddedjob"
	"github.com/replay/replay/replayd/worker"
	"github.com/replay/replay/segment"
)

// twoDC is the two-datacenter world without Kafka: the local delivery_log and the mirrored
// dc2.delivery_log as two embedded logs of one partition count, read as one engine.Topics, an
// index over both, a job store and a recording deliverer.
type twoDC struct {
	*world
	logs   [2]*engine.Log
	topics *engine.Topics
	src    engine.Source // what the pool reads (topics, or a wrapper of it)
	// copies are the records per topic of each event id (its cross-DC and in-DC duplicates).
	copies map[string][2]int
}

var dcTopics = [2]string{"delivery_log", "dc2.delivery_log"}

func newTwoDC(t *testing.T) *twoDC {
	t.Helper()
	dir := t.TempDir()
	w := &twoDC{copies: map[string][2]int{}}
	for i, name := range dcTopics {
		// The mirror re-batches: its batches are cut at another size.
		l, err := engine.Open(engine.Options{Dir: dir + "/" + name, Topic: name, Partitions: 2, MaxBatchBytes: 2048 * (i + 1), Retention: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		w.logs[i] = l
	}
	ts, err := engine.NewTopics(t.Context(), w.logs[0], w.logs[1])
	if err != nil {
		t.Fatal(err)
	}
	w.topics, w.src = ts, ts
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
	w.world = &world{log: w.logs[0], ix: ix, jobs: jobs, sink: &sink{calls: make(chan string, 10000)}}
	return w
}

// produce writes n events over an hour for two webhooks and noise: each into dc1, dc2 or (a
// share crossDup) both, and a tenth of the copies twice (a producer's retry), with timestamps up
// to jitter out of order; the mirrored topic holds dc2's events up to mirrorUntil (ms; 0: all).
// Then it indexes both topics.
func (w *twoDC) produce(t *testing.T, n int, seed uint64, crossDup float64, jitter, mirrorUntil int64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	var recs [2][]engine.Record
	for i := 0; i < n; i++ {
		wh := []int64{webhookA, webhookB, 777 + int64(rng.IntN(50))}[rng.IntN(3)]
		ts := t0 + int64(i)*3600_000/int64(n)
		if jitter > 0 {
			ts -= rng.Int64N(jitter)
		}
		id := fmt.Sprintf("ev-%d-%d", seed, i)
		body := fmt.Sprintf(`{"for_user_id":"1","favorite_events":[{"id":%q}]}`, id)
		e := event{webhook: wh, id: id, ts: ts, body: body}
		w.events = append(w.events, e)
		dcs := []int{rng.IntN(2)}
		if rng.Float64() < crossDup {
			dcs = []int{0, 1} // a retry that crossed datacenters
		}
		var c [2]int
		for _, dc := range dcs {
			if dc == 1 && mirrorUntil > 0 && ts >= mirrorUntil {
				continue // not mirrored yet
			}
			copies := 1
			if rng.IntN(10) == 0 {
				copies = 2
			}
			for range copies {
				c[dc]++
				recs[dc] = append(recs[dc], engine.Record{Key: []byte(strconv.FormatInt(wh, 10)), Value: []byte(body), Timestamp: ts,
					Headers: []segment.Header{{Key: []byte("event-id"), Value: []byte(id)}}})
			}
		}
		w.copies[id] = c
	}
	for dc := range recs {
		for i := 0; i < len(recs[dc]); i += 50 {
			if _, err := w.logs[dc].Append(t.Context(), recs[dc][i:min(i+50, len(recs[dc]))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.ix.Build(t.Context(), w.topics, index.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
}

// wantDC is the unique events of webhook in [from, to) that are in at least one topic, and how
// many records of them each topic holds.
func (w *twoDC) wantDC(webhook, from, to int64) (bodies []string, perTopic [2]int) {
	for _, e := range w.events {
		c := w.copies[e.id]
		if e.webhook != webhook || e.ts < from || e.ts >= to || c[0]+c[1] == 0 {
			continue
		}
		bodies = append(bodies, e.body)
		perTopic[0] += c[0]
		perTopic[1] += c[1]
	}
	return bodies, perTopic
}

func (w *twoDC) pool(t *testing.T, name string, m *worker.Metrics, o func(*worker.Options)) *worker.Pool {
	return w.world.pool(t, name, func(opts *worker.Options) {
		opts.Source, opts.Locator = w.src, worker.IndexLocator(w.ix, w.src)
		if m != nil {
			opts.Metrics = m
		}
		opts.MirrorWait = 20 * time.Millisecond
		if o != nil {
			o(opts)
		}
	})
}

// sameSet requires got (the deliveries, the status event last) to hold each of want once.
func sameSet(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want)+1 {
		t.Fatalf("delivered %d bodies, want %d events and the status event", len(got), len(want))
	}
	a, b := slices.Clone(got[:len(got)-1]), slices.Clone(want)
	slices.Sort(a)
	slices.Sort(b)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("deliveries and the window's unique events differ at %d: %s vs %s", i, a[i], b[i])
		}
	}
}

// TestTwoTopicsReplayMergesAndDedups: a replay over the local and the mirrored topic delivers
// every unique event of the window once, whichever topics hold it and how often, in timestamp
// order (the topics' timestamps are ordered here), with counters and metrics per topic.
func TestTwoTopicsReplayMergesAndDedups(t *testing.T) {
	w := newTwoDC(t)
	w.produce(t, 4000, 1, 0.3, 0, 0)
	from, to := t0+5*60_000, t0+50*60_000
	want, perTopic := w.wantDC(webhookA, from, to)
	if len(want) < 200 || perTopic[0] < 100 || perTopic[1] < 100 {
		t.Fatalf("%d events (%v per topic) in the window: the test means little", len(want), perTopic)
	}
	j := w.create(t, webhookA, from, to)
	m := worker.NewMetrics(prometheus.NewRegistry())
	ids := &messageIDs{next: w.sink, seen: map[string]int{}}
	w.pool(t, "a", m, func(o *worker.Options) { o.StrictOrder = true; o.Deliverer = ids })
	done := w.finished(t, j.ID)
	if done.State != job.StateCompleted {
		t.Fatalf("job ended %s: %s", done.State, done.Reason)
	}
	got := w.sink.delivered()
	sameSet(t, got, want)
	tsOf := map[string]int64{}
	for _, e := range w.events {
		tsOf[e.body] = e.ts
	}
	for i := 1; i < len(got)-1; i++ {
		if tsOf[got[i]] < tsOf[got[i-1]] {
			t.Fatalf("delivery %d (ts %d) after one at %d: not merged by timestamp", i, tsOf[got[i]], tsOf[got[i-1]])
		}
	}
	// Every event has a webhook-id of its own, whichever topic it came from (their offsets
	// overlap).
	ids.mu.Lock()
	for id, n := range ids.seen {
		if n != 1 {
			t.Errorf("webhook-id %s sent %d times", id, n)
		}
	}
	if len(ids.seen) != len(want)+1 {
		t.Errorf("%d webhook-ids for %d events and the status event", len(ids.seen), len(want))
	}
	ids.mu.Unlock()
	if len(done.Topics) != 2 || done.Topics[0].Topic != dcTopics[0] || done.Topics[1].Topic != dcTopics[1] {
		t.Fatalf("topic progress %+v", done.Topics)
	}
	var read, delivered, dups int64
	for i, tp := range done.Topics {
		if tp.Read != int64(perTopic[i]) || tp.Read != tp.Delivered+tp.DuplicatesDropped || tp.Checkpoint <= 0 {
			t.Errorf("topic %s: %+v, want %d read = delivered + duplicates and a checkpoint", tp.Topic, tp, perTopic[i])
		}
		read, delivered, dups = read+tp.Read, delivered+tp.Delivered, dups+tp.DuplicatesDropped
		if d := testutil.ToFloat64(m.TopicRead.WithLabelValues(tp.Topic)); d != float64(tp.Read) {
			t.Errorf("replay_topic_events_read_total{topic=%q} = %v, want %d", tp.Topic, d, tp.Read)
		}
	}
	if done.Topics[1].DuplicatesDropped == 0 || done.Topics[1].Delivered == 0 {
		t.Errorf("the mirrored topic delivered %d and dropped %d: want both", done.Topics[1].Delivered, done.Topics[1].DuplicatesDropped)
	}
	c := done.Counters
	if c.Read != read || c.Delivered != delivered || c.DuplicatesDropped != dups || c.Delivered != int64(len(want)) {
		t.Errorf("totals %+v, topics sum to read %d delivered %d dups %d, %d unique", c, read, delivered, dups, len(want))
	}
	if done.Checkpoint != done.Topics[0].Checkpoint {
		t.Errorf("job checkpoint %d, the local topic's %d", done.Checkpoint, done.Topics[0].Checkpoint)
	}
	pct := testutil.ToFloat64(m.TopicDuplicatePercent.WithLabelValues(dcTopics[1]))
	if wantPct := 100 * float64(done.Topics[1].DuplicatesDropped) / float64(done.Topics[1].Read); pct != wantPct {
		t.Errorf("replay_topic_duplicate_percent of %s = %v, want %v", dcTopics[1], pct, wantPct)
	}
}

// TestTwoTopicsDrainResumesEachTopic: a job released mid-replay records each topic's checkpoint;
// the next holder resumes each from its own and the two deliver every unique event exactly once.
func TestTwoTopicsDrainResumesEachTopic(t *testing.T) {
	w := newTwoDC(t)
	w.produce(t, 3000, 3, 0.3, 60_000, 0)
	w.sink.gate = make(chan struct{})
	from, to := t0, t0+55*60_000
	j := w.create(t, webhookA, from, to)
	p1 := w.pool(t, "first", nil, func(o *worker.Options) { o.StrictOrder = true })
	for range 300 {
		w.sink.gate <- struct{}{}
		<-w.sink.calls
	}
	stopped := make(chan error, 1)
	go func() { stopped <- p1.Stop(context.Background()) }()
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
		}
	}
	released := w.waitFor(t, j.ID, isState(job.StateOngoing))
	if len(released.Topics) != 2 || released.Topics[0].Checkpoint <= 0 || released.Topics[1].Checkpoint <= 0 {
		t.Fatalf("released with topic progress %+v: want a checkpoint in each topic", released.Topics)
	}
	close(w.sink.gate)
	w.pool(t, "second", nil, func(o *worker.Options) { o.StrictOrder = true })
	done := w.finished(t, j.ID)
	if done.State != job.StateCompleted {
		t.Fatalf("job ended %s: %s", done.State, done.Reason)
	}
	want, _ := w.wantDC(webhookA, from, to)
	sameSet(t, w.sink.delivered(), want)
	for i := range done.Topics {
		if done.Topics[i].Checkpoint < released.Topics[i].Checkpoint {
			t.Errorf("topic %s went back from %d to %d", done.Topics[i].Topic, released.Topics[i].Checkpoint, done.Topics[i].Checkpoint)
		}
	}
}

// TestTwoTopicsMirrorBehind: a mirrored topic that has not reached the window's end: the job
// delivers what both topics hold and ends Incomplete naming the topic and the time range.
func TestTwoTopicsMirrorBehind(t *testing.T) {
	w := newTwoDC(t)
	mirrorUntil := t0 + 30*60_000
	w.produce(t, 3000, 4, 0.2, 0, mirrorUntil)
	from, to := t0+10*60_000, t0+50*60_000
	j := w.create(t, webhookB, from, to)
	w.pool(t, "a", nil, nil)
	done := w.finished(t, j.ID)
	want, _ := w.wantDC(webhookB, from, to)
	sameSet(t, w.sink.delivered(), want)
	if done.State != job.StateIncomplete {
		t.Fatalf("job ended %s (%s), want INCOMPLETE", done.State, done.Reason)
	}
	for _, s := range []string{"topic dc2.delivery_log partition", "had not been mirrored up to the window's end", time.UnixMilli(to).UTC().Format(time.RFC3339Nano), "every other event of the window was delivered"} {
		if !strings.Contains(done.Reason, s) {
			t.Errorf("reason %q does not say %q", done.Reason, s)
		}
	}
}

// readFails is a topic's source whose ReadBatches fail for good (not retryable).
type readFails struct{ engine.Source }

var errTopicGone = errors.New("topic deleted")

func (readFails) ReadBatches(context.Context, int32, []int64, func(*segment.Batch) error) error {
	return errTopicGone
}

// Close leaves the log to the test.
func (readFails) Close() error { return nil }

// TestTwoTopicsOneUnreadable: a mirrored topic that cannot be read for good: the local topic's
// events are delivered and the job ends Incomplete naming the topic and time range.
func TestTwoTopicsOneUnreadable(t *testing.T) {
	w := newTwoDC(t)
	w.produce(t, 2000, 5, 0.2, 0, 0)
	w.src = failingTopicSource(t, w.topics)
	from, to := t0, t0+55*60_000
	j := w.create(t, webhookA, from, to)
	w.pool(t, "a", nil, nil)
	done := w.finished(t, j.ID)
	if done.State != job.StateIncomplete || !strings.Contains(done.Reason, "topic dc2.delivery_log partition") || !strings.Contains(done.Reason, "could not be read from") || !strings.Contains(done.Reason, errTopicGone.Error()) {
		t.Fatalf("job ended %s: %q, want INCOMPLETE naming dc2.delivery_log and the error", done.State, done.Reason)
	}
	var local []string
	for _, e := range w.events {
		if e.webhook == webhookA && e.ts >= from && e.ts < to && w.copies[e.id][0] > 0 {
			local = append(local, e.body)
		}
	}
	sameSet(t, w.sink.delivered(), local)
	if done.Topics[1].Read != 0 || done.Topics[0].Delivered != int64(len(local)) {
		t.Errorf("topic progress %+v", done.Topics)
	}
}

// failingTopicSource is ts with topic 1's reads failing.
func failingTopicSource(t *testing.T, ts *engine.Topics) engine.Source {
	t.Helper()
	wrapped, err := engine.NewTopics(t.Context(), localOnly{ts.Source(0)}, readFails{ts.Source(1)})
	if err != nil {
		t.Fatal(err)
	}
	return wrapped
}

// localOnly is topic 0's source, not closed by the wrapping Topics.
type localOnly struct{ engine.Source }

func (localOnly) Close() error { return nil }

// failingLocator cannot locate anything in topic 1 (a non-retryable error).
type failingLocator struct {
	worker.Locator
	per int32
}

func (f failingLocator) Locate(ctx context.Context, v int32, key []byte, from, to int64) ([]int64, error) {
	if i, _ := engine.Split(v, f.per); i == 1 {
		return nil, errTopicGone
	}
	return f.Locator.Locate(ctx, v, key, from, to)
}

// TestTwoTopicsOneUnlocatable: a mirrored topic whose events cannot be located for good: the
// local topic's events are delivered, and the job ends Incomplete naming the topic.
func TestTwoTopicsOneUnlocatable(t *testing.T) {
	w := newTwoDC(t)
	w.produce(t, 2000, 6, 0.2, 0, 0)
	from, to := t0, t0+55*60_000
	j := w.create(t, webhookB, from, to)
	w.pool(t, "a", nil, func(o *worker.Options) {
		o.Locator = failingLocator{Locator: o.Locator, per: w.topics.PerTopicKnown()}
	})
	done := w.finished(t, j.ID)
	if done.State != job.StateIncomplete || !strings.Contains(done.Reason, "topic dc2.delivery_log partition") || !strings.Contains(done.Reason, "locating its events") {
		t.Fatalf("job ended %s: %q, want INCOMPLETE naming dc2.delivery_log", done.State, done.Reason)
	}
	var local []string
	for _, e := range w.events {
		if e.webhook == webhookB && e.ts >= from && e.ts < to && w.copies[e.id][0] > 0 {
			local = append(local, e.body)
		}
	}
	sameSet(t, w.sink.delivered(), local)
}

// messageIDs counts the webhook-ids of the deliveries it passes on.
type messageIDs struct {
	next worker.Deliverer
	mu   sync.Mutex
	seen map[string]int
}

func (d *messageIDs) Deliver(ctx context.Context, t worker.Target, body []byte) (delivery.Result, error) {
	d.mu.Lock()
	d.seen[t.MessageID]++
	d.mu.Unlock()
	return d.next.Deliver(ctx, t, body)
}
