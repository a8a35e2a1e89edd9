package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/worker"
	"github.com/replay/replay/segment"
)

// brokerLost is what a Source returns while a broker is gone: an error engine.IsRetryable
// accepts, as it does a KafkaSource's network errors and NOT_LEADER_OR_FOLLOWER.
type brokerLost struct{}

func (brokerLost) Error() string {
	return "kafka fetch delivery_log-0: dial tcp 127.0.0.1:9092: connection refused"
}
func (brokerLost) Retryable() bool { return true }

// flakySource is the log with ReadBatches failing (with scans, Scan instead: what the read path
// uses for a dense chunk of a local log): the first failures calls fail, each after after
// batches, with err.
type flakySource struct {
	engine.Source
	after int
	err   error
	scans bool

	mu       sync.Mutex
	failures int
	calls    int
}

func (s *flakySource) ReadBatches(ctx context.Context, p int32, offsets []int64, fn func(*segment.Batch) error) error {
	if s.scans {
		return s.Source.ReadBatches(ctx, p, offsets, fn)
	}
	return s.read(fn, func(fn func(*segment.Batch) error) error { return s.Source.ReadBatches(ctx, p, offsets, fn) })
}

func (s *flakySource) Scan(ctx context.Context, p int32, from int64, fn func(*segment.Batch) error) error {
	if !s.scans {
		return s.Source.Scan(ctx, p, from, fn)
	}
	return s.read(fn, func(fn func(*segment.Batch) error) error { return s.Source.Scan(ctx, p, from, fn) })
}

// read runs one read of the log, failing it while failures are left.
func (s *flakySource) read(fn func(*segment.Batch) error, read func(func(*segment.Batch) error) error) error {
	s.mu.Lock()
	s.calls++
	fail := s.failures > 0
	if fail {
		s.failures--
	}
	s.mu.Unlock()
	if !fail {
		return read(fn)
	}
	n := 0
	err := read(func(b *segment.Batch) error {
		if n == s.after {
			return s.err
		}
		n++
		return fn(b)
	})
	if err == nil {
		err = s.err
	}
	return err
}

// A source that fails transiently mid-replay (a lost broker, past the source's own retries):
// the job is released with its checkpoint and leased again, never ended INCOMPLETE, and
// completes with every event delivered exactly once; whether the failing reads are by offset
// (the lookup's chunks) or scans (a webhook alone in its partition, its window located whole:
// one dense chunk, which the read path scans after its first batch).
func TestTransientSourceFaultReleasesTheJob(t *testing.T) {
	for _, scanned := range []bool{false, true} {
		t.Run(fmt.Sprintf("scans=%t", scanned), func(t *testing.T) { testTransientSourceFault(t, scanned) })
	}
}

// wholeLocator hides the index's streaming: a job gets its window's batches located whole.
type wholeLocator struct{ worker.Locator }

func testTransientSourceFault(t *testing.T, scanned bool) {
	w := newWorld(t)
	if scanned {
		w.produceOf(t, 3000, 11, func(*rand.Rand) int64 { return webhookA })
	} else {
		w.produce(t, 3000, 11)
	}
	from, to := t0, t0+3600_000
	j := w.create(t, webhookA, from, to)
	src := &flakySource{Source: w.log, after: 20, err: brokerLost{}, failures: 3, scans: scanned}
	if !engine.IsRetryable(src.err) {
		t.Fatal("the injected fault is not retryable: the test means nothing")
	}
	var (
		mu     sync.Mutex
		states = map[job.State]bool{}
	)
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() { // every state the job passes through
		defer close(watched)
		for {
			if jj, err := w.jobs.Get(context.Background(), job.GetParams{ID: j.ID}); err == nil {
				mu.Lock()
				states[jj.State] = true
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	w.pool(t, "a", func(o *worker.Options) {
		o.Source = src
		o.Workers = 1
		o.StrictOrder = true
		if scanned {
			o.Locator = wholeLocator{worker.IndexLocator(w.ix, src)}
		}
	})
	done := w.finished(t, j.ID)
	close(stop)
	<-watched
	if done.State != job.StateCompleted || states[job.StateIncomplete] {
		t.Fatalf("job ended %s (%s); INCOMPLETE seen %t", done.State, done.Reason, states[job.StateIncomplete])
	}
	if done.FencingToken < 4 || src.calls < 4 {
		t.Fatalf("fencing token %d after %d reads (scans: %t): want the job released and leased again after each of 3 faults", done.FencingToken, src.calls, scanned)
	}
	got, want := w.sink.delivered(), w.want(webhookA, from, to)
	if len(got) != len(want)+1 {
		t.Fatalf("delivered %d, want %d events + status: a release must neither lose nor repeat events", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivery %d = %s, want %s", i, got[i], want[i])
		}
	}
}

// The same fault, not retryable (corruption, here after every third batch): each batch that
// cannot be read is skipped, and the job ends INCOMPLETE on its first lease, saying so.
func TestPermanentSourceFaultEndsIncomplete(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 1000, 12)
	j := w.create(t, webhookA, t0, t0+3600_000)
	bad := errors.Join(segment.ErrCorrupt, errors.New("batch at delivery_log-0/42: crc mismatch"))
	src := &flakySource{Source: w.log, after: 3, err: bad, failures: 1 << 20}
	w.pool(t, "a", func(o *worker.Options) { o.Source = src })
	done := w.finished(t, j.ID)
	if done.State != job.StateIncomplete || !strings.Contains(done.Reason, "could not be read") || done.FencingToken != 1 {
		t.Fatalf("job %s token %d (%s): want INCOMPLETE on its first lease", done.State, done.FencingToken, done.Reason)
	}
}

// TestCorruptBatchIsSkipped: a byte flipped in a batch of the log: that batch is skipped, every
// other event of the window is delivered once, and the job ends INCOMPLETE naming the batch's
// offsets and times, with the unreadable batch counted.
func TestCorruptBatchIsSkipped(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 3000, 13)
	from, to := t0, t0+3600_000
	key := []byte(strconv.FormatInt(webhookA, 10))
	n, _ := w.log.Partitions(t.Context())
	p := engine.PartitionFor(key, n)
	type batch struct {
		file        string
		pos, base   int64
		last, minTS int64
		bodies      []string
	}
	var batches []batch
	var rr segment.RecordReader
	if err := w.log.Scan(t.Context(), p, 0, func(b *segment.Batch) error {
		bt := batch{file: b.File, pos: b.Pos, base: b.BaseOffset, last: b.LastOffset(), minTS: b.BaseTimestamp}
		if err := rr.Reset(b); err != nil {
			return err
		}
		for rr.Next() {
			if r := rr.Record(); bytes.Equal(r.Key, key) && r.Timestamp >= from && r.Timestamp < to {
				bt.bodies = append(bt.bodies, string(r.Value))
			}
		}
		batches = append(batches, bt)
		return rr.Err()
	}); err != nil {
		t.Fatal(err)
	}
	bad := len(batches) / 2
	for len(batches[bad].bodies) == 0 {
		bad++
	}
	elsewhere := map[string]bool{}
	for i, b := range batches {
		for _, body := range b.bodies {
			if i != bad {
				elsewhere[body] = true
			}
		}
	}
	f, err := os.OpenFile(batches[bad].file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, batches[bad].pos+segment.BatchHeaderSize+3); err != nil {
		t.Fatal(err)
	}
	f.Close()

	j := w.create(t, webhookA, from, to)
	w.pool(t, "a", nil)
	done := w.finished(t, j.ID)
	want := map[string]bool{}
	for _, body := range w.want(webhookA, from, to) {
		if elsewhere[body] {
			want[body] = true
		}
	}
	b := batches[bad]
	if done.State != job.StateIncomplete || done.Counters.Unreadable != 1 || !strings.Contains(done.Reason, fmt.Sprintf("offsets %d-%d", b.base, b.last)) ||
		!strings.Contains(done.Reason, "every other event of the window was delivered") {
		t.Fatalf("job ended %s with %+v: %s", done.State, done.Counters, done.Reason)
	}
	got := w.sink.delivered()
	count := map[string]int{}
	for _, body := range got[:len(got)-1] {
		count[body]++
	}
	for body := range want {
		if count[body] != 1 {
			t.Fatalf("event %s delivered %d times, want once", body, count[body])
		}
	}
	if len(got)-1 != len(want) || done.Counters.Delivered != int64(len(want)) {
		t.Fatalf("delivered %d (counted %d), want %d: the events of the corrupt batch only are missing", len(got)-1, done.Counters.Delivered, len(want))
	}
	if done.FirstUndeliveredMs == nil || *done.FirstUndeliveredMs != b.minTS {
		t.Fatalf("first undelivered %v, want the batch's first timestamp %d", done.FirstUndeliveredMs, b.minTS)
	}
	t.Logf("batch %d-%d skipped (%d events of the window only there); %d delivered; reason: %s", b.base, b.last, len(b.bodies), len(want), done.Reason)
}

// TestWebhookMarkedInvalidStopsARunningJob: when Targets starts saying the webhook can no longer
// be delivered to (it failed its CRC check), a running job stops within a heartbeat and ends
// Incomplete saying why; nothing is delivered after that.
func TestWebhookMarkedInvalidStopsARunningJob(t *testing.T) {
	w := newWorld(t)
	w.produce(t, 6000, 14)
	from, to := t0, t0+3600_000
	got := newArrivals()
	var invalid atomic.Bool
	j := w.create(t, webhookA, from, to)
	w.pool(t, "a", func(o *worker.Options) {
		// At most 8 in flight, 5 ms each: the window lasts over a second, many heartbeats (at
		// the full window of 512 it could end before the first heartbeat after the mark).
		o.Deliverer, o.MaxInFlight = slowDeliverer{"a", got}, 8
		o.Targets = func(_ context.Context, id int64) (worker.Target, error) {
			if invalid.Load() {
				return worker.Target{}, fmt.Errorf("webhook %d is marked invalid: %w", id, worker.ErrUndeliverable)
			}
			return worker.Target{WebhookID: strconv.FormatInt(id, 10), URL: "http://sink", Secret: []byte("s")}, nil
		}
	})
	got.waitFor(t, "a", 30)
	invalid.Store(true)
	markedAt := time.Now()
	done := w.waitFor(t, j.ID, func(j *job.Job) bool { return j.State.Terminal() })
	want := w.want(webhookA, from, to)
	if done.State != job.StateIncomplete || !strings.Contains(done.Reason, "marked invalid") || done.Counters.Delivered >= int64(len(want)) {
		t.Fatalf("job ended %s after %d of %d events: %s", done.State, done.Counters.Delivered, len(want), done.Reason)
	}
	n, last := got.after("a", markedAt)
	t.Logf("%d deliveries after the webhook was marked invalid, the last %v after; %d of %d delivered; %s", n, last.Sub(markedAt), done.Counters.Delivered, len(want), done.Reason)
	if last.Sub(markedAt) > 5*time.Second {
		t.Fatalf("deliveries went on %v after the webhook was marked invalid", last.Sub(markedAt))
	}
}
