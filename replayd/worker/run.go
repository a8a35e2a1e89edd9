package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/replayd/dedup"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/segment"
)

var (
	errDrain     = errors.New("worker: draining")
	errHalted    = errors.New("worker: the webhook can no longer be delivered to")
	errLeaseLost = errors.New("worker: lease lost")
)

// run is one job being executed by one worker.
type run struct {
	pool  *Pool
	job   *job.Job
	owner string
	log   *slog.Logger
	// leasedAt is when the lease request was sent: the start of the lease on this worker's clock.
	leasedAt time.Time
	lease    *lease
	// drain is closed when the pool drains.
	drain <-chan struct{}

	mu       sync.Mutex
	progress job.Progress
	// finished: the job's final state is recorded; its heartbeats renew the lease of its status
	// event and carry no progress.
	finished   bool
	unreadable []unreadable // batches of the window that could not be read
	// topics are the job's parts in the topics of the Source, set up by deliver.
	topics []*topicRead

	// halt is closed when the webhook can no longer be delivered to (haltErr says why): the
	// reader stops handing out events and the job ends Incomplete.
	halt     chan struct{}
	haltOnce sync.Once
	haltErr  error

	// target is where the deliveries go and what signs them, as Targets last answered: taken
	// when delivery starts and again at every heartbeat, so a secret rotated meanwhile (or a
	// signing option changed) applies to the rest of the job.
	target atomic.Pointer[Target]
}

// stop ends delivery because the webhook can no longer be delivered to.
func (r *run) stop(err error) {
	r.haltOnce.Do(func() {
		r.haltErr = err
		close(r.halt)
	})
}

func (r *run) snapshot() *job.Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return nil
	}
	p := r.progress
	p.Topics = slices.Clone(p.Topics)
	return &p
}

func (r *run) update(f func(p *job.Progress)) {
	r.mu.Lock()
	f(&r.progress)
	r.mu.Unlock()
}

// execute runs the job until it is finished, its lease is lost, or the pool drains (ctx done).
func (r *run) execute(ctx context.Context) {
	o, j, m := &r.pool.opts, r.job, r.pool.opts.Metrics
	m.JobsRunning.Inc()
	defer m.JobsRunning.Dec()
	if j.FencingToken > 1 {
		m.Takeovers.Inc()
	}
	r.drain = ctx.Done()
	r.progress = job.Progress{Checkpoint: j.Checkpoint, Counters: j.Counters, FirstUndeliveredMs: j.FirstUndeliveredMs}
	// jobCtx is the lease: it ends when the lease is lost (a heartbeat says so, or the job was
	// canceled) or when it runs out on this worker's own clock (no heartbeat succeeded in time:
	// another instance may hold the job by now, so nothing more may be sent). ctx (the pool's)
	// ends when draining, which is only looked at between events so that a delivery in flight
	// finishes.
	var jobCtx context.Context
	r.lease, jobCtx = newLease(context.WithoutCancel(ctx), r.leasedAt, o.LeaseTimeout, o.LeaseMargin, time.Now)
	defer r.lease.stop()
	if j.State.Terminal() {
		// An earlier holder finished the job and did not get to deliver its status event (it
		// died, or shut down): deliver it now. How long ago the job finished is measured on the
		// store's clock, as both times are the store's.
		r.finished = true
		r.log.Info("finished job leased to deliver its status event", "state", j.State, "finished_at", j.FinishedAt, "fencing_token", j.FencingToken)
		r.status(jobCtx, j.State, j.Reason, j.HeartbeatAt.Sub(j.FinishedAt))
		return
	}
	if j.State == job.StateStarted {
		err := o.Jobs.Transition(jobCtx, job.TransitionParams{ID: j.ID, FencingToken: j.FencingToken, To: job.StateOngoing})
		if err != nil {
			r.log.Warn("could not start job", "err", err)
			return
		}
	}
	r.log.Info("job leased", "from_ms", j.FromMs, "to_ms", j.ToMs, "checkpoint", j.Checkpoint, "fencing_token", j.FencingToken)

	stopHeartbeat := r.heartbeat(jobCtx)
	outcome, reason, err := r.deliver(jobCtx, ctx.Done())
	stopHeartbeat()
	r.end(jobCtx, outcome, reason, err)
}

// heartbeat renews the lease and checkpoints the job's progress every HeartbeatInterval until the
// returned stop is called. Each heartbeat has the lease's deadline: one that hangs (a store that
// stopped answering) cannot outlive the lease. A success renews the lease from the moment the
// heartbeat was sent; a failure is retried every HeartbeatInterval/4 while the lease lasts; a lost
// lease (or a canceled job) ends the lease at once.
func (r *run) heartbeat(ctx context.Context) (stop func()) {
	o, j := &r.pool.opts, r.job
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTimer(o.HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				r.log.Warn("lease ended: stopping the job", "cause", context.Cause(ctx))
				return
			case <-t.C:
			}
			sent := time.Now()
			hctx, cancel := context.WithDeadline(ctx, r.lease.deadline())
			err := o.Jobs.Heartbeat(hctx, job.HeartbeatParams{ID: j.ID, FencingToken: j.FencingToken, Progress: r.snapshot()})
			cancel()
			switch {
			case err == nil:
				r.lease.renewed(sent)
				t.Reset(o.HeartbeatInterval)
				// A webhook marked invalid (or deleted) since the job started gets nothing more.
				switch t, terr := o.Targets(ctx, j.WebhookID); {
				case errors.Is(terr, ErrUndeliverable):
					r.log.Warn("the webhook can no longer be delivered to: stopping the job", "err", terr)
					r.stop(terr)
				case terr == nil && r.target.Load() != nil:
					r.target.Store(&t)
				}
			case errors.Is(err, job.ErrLeaseLost) || errors.Is(err, job.ErrInvalidTransition):
				r.log.Warn("lease lost: stopping the job", "err", err)
				r.lease.lose()
				return
			default:
				r.log.Warn("heartbeat failed; retrying while the lease lasts", "err", err, "lease_left", time.Until(r.lease.deadline()).Round(time.Millisecond))
				t.Reset(max(o.HeartbeatInterval/4, time.Millisecond))
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// end decides what becomes of the job after deliver: nothing (the lease is lost), released for
// another worker (draining, or a transient error of the log or the index), or finished.
func (r *run) end(ctx context.Context, outcome job.State, reason string, err error) {
	o, j := &r.pool.opts, r.job
	final := r.snapshot()
	switch {
	case errors.Is(err, errLeaseLost) || ctx.Err() != nil:
		r.log.Warn("job abandoned: another worker holds it now, it was canceled, or the lease ran out", "cause", context.Cause(ctx))
		return
	case errors.Is(err, errDrain):
		rerr := o.Jobs.Release(ctx, job.ReleaseParams{ID: j.ID, FencingToken: j.FencingToken, Progress: final})
		r.log.Info("job released for another worker", "checkpoint", final.Checkpoint, "err", rerr)
		return
	case err != nil && engine.IsRetryable(err):
		// The log or the index is unreachable for now: hand the job back to be tried again.
		rerr := o.Jobs.Release(ctx, job.ReleaseParams{ID: j.ID, FencingToken: j.FencingToken, Progress: final})
		r.log.Warn("job released after a transient error", "err", err, "release_err", rerr)
		return
	case err != nil:
		outcome, reason = job.StateIncomplete, fmt.Sprintf("the events could not be read: %v", err)
	}
	r.finish(ctx, outcome, reason)
}

// deliver streams the job's events to its webhook: it resolves the target, locates the batches
// in every topic the Source reads, reads them through the senders and says what the job should
// end in and why. ctx ends when the lease is lost; drain is closed when the pool drains.
func (r *run) deliver(ctx context.Context, drain <-chan struct{}) (job.State, string, error) {
	o, j := &r.pool.opts, r.job
	target, err := o.Targets(ctx, j.WebhookID)
	if err != nil {
		return job.StateIncomplete, fmt.Sprintf("the webhook cannot be delivered to: %v", err), nil
	}
	key := []byte(strconv.FormatInt(j.WebhookID, 10))
	r.setupTopics()
	for _, tr := range r.topics {
		if tr.i > 0 {
			err = r.awaitMirror(ctx, drain, tr)
		}
		if sl, ok := o.Locator.(StreamLocator); ok && err == nil {
			tr.stream = sl // located while it is read (readTopic)
			continue
		}
		if err == nil {
			tr.offsets, err = o.Locator.Locate(ctx, tr.v, key, j.FromMs, j.ToMs)
		}
		if err != nil {
			// A mirrored topic that cannot be read for good stops alone, as when reading it.
			if tr.i > 0 && ctx.Err() == nil && !engine.IsRetryable(err) && !errors.Is(err, errDrain) && !errors.Is(err, errLeaseLost) {
				r.topicFailed(tr, fmt.Errorf("locating its events: %w", err))
				tr.offsets, err = nil, nil
				continue
			}
			return 0, "", fmt.Errorf("locating events%s: %w", r.inTopic(tr), err)
		}
	}
	r.target.Store(&target)
	s := r.startSenders(ctx, drain)
	err = r.read(ctx, drain, key, s)
	s.wait() // a drain or a failure still lets the deliveries in flight finish
	return r.outcome(ctx, err, s)
}

// topicRead is the job's part in one topic of the Source (engine.Topics: the local delivery_log
// and the mirrored ones; one topic for any other Source): the partition holding the webhook's
// events there, where the job resumes it, the located batches and the topic's settled prefix.
type topicRead struct {
	i        int
	name     string
	v        int32 // the partition in Options.Source: engine.Partition(i, job partition, P)
	resumeAt int64 // events below were delivered (or dropped) by an earlier holder
	offsets  []int64
	// stream, when set, locates the batches while they are read, instead of offsets.
	stream  StreamLocator
	settled *delivery.InOrder
	m       *topicMetrics

	// Counting after a takeover. base is the topic's counters as the job was leased: an earlier
	// holder counted every event it read from its own resume point on, so the events between
	// resumeAt and where it got to were counted already. They are the first ones this worker
	// reads again, in the same order with the same dedup decisions: once the reader passes
	// resumeAt (warm), the carried counts say how many of this worker's next reads, drops and
	// deliveries were counted before; those deliveries are redeliveries. Guarded by run.mu once
	// warm.
	base                                      job.TopicProgress
	belowRead, belowDup                       int64 // events below resumeAt (reader only)
	warm                                      bool
	carriedRead, carriedDup, carriedDelivered int64

	// Written by the reader only.
	lastMs int64 // the greatest timestamp read from the topic so far (-1: none)
	// failed is a final read error (not retryable, not corruption) of a topic other than the
	// only one: the rest of the topic is not delivered, the other topics are.
	failed error
	// behind says that the (mirrored) partition had not reached the window's end when the job
	// gave up waiting for it; behindMs is the newest timestamp it held: its events after it may
	// be missing.
	behind   bool
	behindMs int64
}

// setupTopics makes the job's topicReads and, for several topics, the per-topic progress.
func (r *run) setupTopics() {
	o, j := &r.pool.opts, r.job
	ts := engine.TopicsOf(o.Source)
	per := ts.PerTopicKnown()
	r.topics = make([]*topicRead, ts.Len())
	var progress []job.TopicProgress
	for i := range ts.Len() {
		name := ts.Name(i)
		tr := &topicRead{i: i, name: name, v: j.Partition, resumeAt: j.TopicCheckpoint(i, name), m: o.Metrics.topic(name), lastMs: -1}
		if ts.Len() > 1 {
			tr.v = engine.Partition(i, j.Partition, per)
			tp := job.TopicProgress{Topic: name, Checkpoint: tr.resumeAt}
			for _, had := range j.Topics {
				if had.Topic == name {
					tp = had
				}
			}
			progress = append(progress, tp)
			tr.base = tp
		} else {
			c := j.Counters
			tr.base = job.TopicProgress{Read: c.Read, Delivered: c.Delivered, DuplicatesDropped: c.DuplicatesDropped}
		}
		tr.settled = delivery.NewInOrder(max(tr.resumeAt, 0))
		r.topics[i] = tr
	}
	r.update(func(p *job.Progress) { p.Topics = progress })
}

// inTopic names tr in messages when the job reads several topics.
func (r *run) inTopic(tr *topicRead) string {
	if len(r.topics) == 1 {
		return ""
	}
	return fmt.Sprintf(" in topic %s partition %d", tr.name, r.job.Partition)
}

// awaitMirror waits, up to MirrorWait, for a mirrored topic's partition to hold a record at or
// after the window's end: MirrorMaker copies records in partition order, so once one at or past
// the end has arrived, the window's have too (as far as the source's timestamps are ordered).
// Waiting longer than that, the job reads what is there and ends Incomplete saying which
// topic's events after which time may be missing. A read error is returned (a retryable one
// releases the job, to be tried again).
func (r *run) awaitMirror(ctx context.Context, drain <-chan struct{}, tr *topicRead) error {
	o, j := &r.pool.opts, r.job
	if o.MirrorWait < 0 {
		return nil
	}
	deadline := time.Now().Add(o.MirrorWait)
	poll := min(max(o.MirrorWait/20, time.Millisecond), time.Second)
	for {
		_, found, err := o.Source.OffsetForTime(ctx, tr.v, j.ToMs)
		if err != nil || found {
			return err
		}
		if !time.Now().Before(deadline) {
			newest, err := r.newestTimestamp(ctx, tr.v)
			if err != nil {
				return err
			}
			tr.behind, tr.behindMs = true, newest
			r.log.Warn("a mirrored topic has not reached the window's end: replaying what it holds", "topic", tr.name, "partition", j.Partition, "newest_ms", newest, "to_ms", j.ToMs)
			return nil
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return errLeaseLost
		case <-drain:
			t.Stop()
			return errDrain
		case <-t.C:
		}
	}
}

// newestTimestamp is the greatest timestamp of the partition's last batch, or -1 when the
// partition is empty.
func (r *run) newestTimestamp(ctx context.Context, v int32) (int64, error) {
	ts, ok, err := engine.NewestTimestamp(ctx, r.pool.opts.Source, v)
	if !ok {
		ts = -1
	}
	return ts, err
}

// unreadable is a batch of the window that could not be read: corrupt on disk. Its events are
// not delivered; the rest of the window is. from/to are its offsets and times as far as its
// header says (the times are unknown, -1, when the header itself could not be read).
type unreadable struct {
	topic        string // named when the job reads several topics
	from, to     int64
	fromMs, toMs int64
	err          error
}

// item is one record of the window read from a topic, or a batch that could not be read.
type item struct {
	offset, ts int64
	h          uint64 // dedup identity
	body       []byte // the reader's own copy; nil for records below the topic's resume point
	skip       *unreadable
}

// chunk is what a topic's reader hands the merge: the items of one batch, or the error that
// ended the topic's read.
type chunk struct {
	items []item
	err   error
}

// readTopic reads tr's located batches in log order and sends their records of the webhook in
// the window to out, one chunk per batch, until done or ctx ends; it closes out. A batch that
// cannot be read (corrupt: a checksum that does not match, a malformed header) becomes a skip
// item, and reading goes on with the next one.
func (r *run) readTopic(ctx context.Context, tr *topicRead, key []byte, out chan<- chunk) {
	defer close(out)
	if tr.failed != nil {
		return // it could not even be located
	}
	j := r.job
	emit := func(c chunk) error {
		select {
		case out <- c:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// each gets the batches in log order, decoded (rr reset on b) by ReadStream.
	each := func(b *segment.Batch, rr *segment.RecordReader) error {
		if rr == nil {
			return nil // a control batch
		}
		var items []item
		// A corrupt batch is skipped and recorded; any other error ends the read.
		skipCorrupt := func(err error) error {
			if !segment.IsCorruption(err) {
				return err
			}
			items = append(items, item{skip: &unreadable{from: b.BaseOffset, to: b.LastOffset(), fromMs: b.BaseTimestamp, toMs: b.MaxTimestamp, err: err}})
			return nil
		}
		for rr.Next() {
			rec := rr.Record()
			if rec.Timestamp < j.FromMs || rec.Timestamp >= j.ToMs || !bytes.Equal(rec.Key, key) {
				continue
			}
			it := item{offset: rec.Offset, ts: rec.Timestamp, h: dedup.RecordKey(rec.Headers, rec.Value)}
			if rec.Offset >= tr.resumeAt {
				it.body = bytes.Clone(rec.Value)
			}
			items = append(items, it)
		}
		if err := rr.Err(); err != nil { // the batch's own: its checksum, its framing
			if err := skipCorrupt(err); err != nil {
				return err
			}
		}
		if len(items) == 0 {
			return nil
		}
		return emit(chunk{items: items})
	}
	// A batch the source cannot even frame: skip the offset (the first one not handed over) and
	// go on with the others.
	unframed := func(offset int64, err error) error {
		return emit(chunk{items: []item{{skip: &unreadable{from: offset, to: offset, fromMs: -1, toMs: -1, err: err}}}})
	}
	// Located while read: the first events go out while the rest of the window is looked up (a
	// long window is a seek per minute bucket), and the lookup never waits for the reader, so it
	// ends, and lets go of the index, at its own pace however slowly the webhook takes the events.
	// ReadStream decodes the batches on every core: decompression is most of a read's CPU.
	locate := func(ctx context.Context, push func([]int64) error) error {
		if tr.stream == nil {
			return push(tr.offsets) // located whole before
		}
		if err := tr.stream.LocateStream(ctx, tr.v, key, j.FromMs, j.ToMs, push); err != nil {
			return fmt.Errorf("locating events%s: %w", r.inTopic(tr), err)
		}
		return nil
	}
	err := index.ReadStream(ctx, r.pool.opts.Source, tr.v, locate, index.ReadOptions{Unframed: unframed}, each)
	if err != nil && ctx.Err() == nil {
		emit(chunk{err: err}) //nolint:errcheck // ctx ended: nobody reads it
	}
}

// cursor is the merge's view of one topic's reader.
type cursor struct {
	tr    *topicRead
	ch    <-chan chunk
	items []item
	done  bool
}

// head makes sure c has an item unless its topic is read to the end; a read error that ends it
// is returned.
func (c *cursor) head(ctx context.Context) error {
	for !c.done && len(c.items) == 0 {
		select {
		case ch, ok := <-c.ch:
			switch {
			case !ok:
				c.done = true
			case ch.err != nil:
				c.done = true
				return ch.err
			default:
				c.items = ch.items
			}
		case <-ctx.Done():
			return errLeaseLost
		}
	}
	return nil
}

// read hands the job's events to the senders: the records of the webhook in the window from
// every topic, merged by timestamp (each topic in its own log order; of equal timestamps the
// earlier topic's first), duplicates dropped across topics by the job's dedup cache. The merge
// is a function of the topics' records alone, so a worker that takes the job over hands them out
// in the same order: records below a topic's resume point only warm the dedup cache, and a
// record's duplicate is dropped on resume exactly when it was before. A topic whose read fails
// for good (not retryable, not corruption) stops alone when there are several: the others are
// delivered and the job ends Incomplete naming it.
func (r *run) read(ctx context.Context, drain <-chan struct{}, key []byte, s *senders) error {
	o, m := &r.pool.opts, r.pool.opts.Metrics
	seen := o.NewDeduper()
	if rel, ok := seen.(Releaser); ok {
		defer rel.Release() // the merge below is its only user
	}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	cursors := make([]*cursor, len(r.topics))
	for i, tr := range r.topics {
		ch := make(chan chunk, 4)
		cursors[i] = &cursor{tr: tr, ch: ch}
		wg.Add(1)
		go func() { defer wg.Done(); r.readTopic(rctx, tr, key, ch) }()
	}
	for {
		var pick *cursor
		for _, c := range cursors {
			if err := c.head(ctx); err != nil {
				if len(cursors) == 1 || engine.IsRetryable(err) || errors.Is(err, errLeaseLost) {
					return err
				}
				r.topicFailed(c.tr, err)
				continue
			}
			if c.done {
				continue
			}
			if c.items[0].skip != nil {
				pick = c // an unreadable batch has no time: record it at once
				break
			}
			if pick == nil || c.items[0].ts < pick.items[0].ts {
				pick = c
			}
		}
		if pick == nil {
			return nil
		}
		it, tr := pick.items[0], pick.tr
		pick.items = pick.items[1:]
		if it.skip != nil {
			u := *it.skip
			if len(r.topics) > 1 {
				u.topic = tr.name
			}
			r.skipUnreadable(u, s, tr)
			continue
		}
		if it.offset < tr.resumeAt {
			// Settled before the takeover: remember it, send nothing.
			tr.belowRead++
			if seen.Seen(it.h) {
				tr.belowDup++
			}
			continue
		}
		if !tr.warm {
			r.warmUp(tr)
		}
		select {
		case <-drain:
			return errDrain
		case <-r.halt:
			return errHalted
		default:
		}
		if ctx.Err() != nil {
			return errLeaseLost
		}
		tr.lastMs = max(tr.lastMs, it.ts)
		dup := seen.Seen(it.h)
		r.update(func(p *job.Progress) {
			// What an earlier holder counted is not counted again (topicRead.base).
			if tr.carriedRead > 0 {
				tr.carriedRead--
			} else {
				p.Counters.Read++
				if p.Topics != nil {
					p.Topics[tr.i].Read++
				}
			}
			if dup && tr.carriedDup > 0 {
				tr.carriedDup--
			} else if dup {
				p.Counters.DuplicatesDropped++
				if p.Topics != nil {
					p.Topics[tr.i].DuplicatesDropped++
				}
			}
		})
		m.EventsRead.Inc()
		tr.m.readOne(dup)
		if dup {
			m.EventsDeduplicated.Inc()
			s.skip(tr, it.offset)
			continue
		}
		if err := s.send(ctx, tr, it.offset, it.ts, it.body); err != nil {
			return err
		}
	}
}

// warmUp is called when the reader first passes tr's resume point: what the earlier holders
// counted above it is now known (topicRead.base).
func (r *run) warmUp(tr *topicRead) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tr.warm = true
	tr.carriedRead = max(0, tr.base.Read-tr.belowRead)
	tr.carriedDup = max(0, tr.base.DuplicatesDropped-tr.belowDup)
	tr.carriedDelivered = max(0, tr.base.Delivered-(tr.belowRead-tr.belowDup))
	if tr.carriedDelivered > 0 {
		r.log.Info("taken over: events delivered above the checkpoint are delivered again", "topic", tr.name, "redeliveries", tr.carriedDelivered, "checkpoint", tr.resumeAt)
	}
}

// topicFailed records that tr cannot be read from its last event on: its events from there to
// the window's end are not delivered.
func (r *run) topicFailed(tr *topicRead, err error) {
	r.log.Error("a topic of the window cannot be read: its remaining events are not delivered", "topic", tr.name, "partition", r.job.Partition, "err", err)
	tr.failed = err
	from := max(tr.lastMs, r.job.FromMs)
	r.update(func(p *job.Progress) {
		if p.FirstUndeliveredMs == nil || from < *p.FirstUndeliveredMs {
			p.FirstUndeliveredMs = &from
		}
	})
}

// topicGaps says which topics' events may not all have been delivered: a topic that could not
// be read to the end, a mirror that had not reached the window's end.
func (r *run) topicGaps() string {
	j := r.job
	ms := func(v int64) string { return time.UnixMilli(v).UTC().Format(time.RFC3339Nano) }
	var parts []string
	for _, tr := range r.topics {
		if tr.failed != nil {
			parts = append(parts, fmt.Sprintf("topic %s partition %d could not be read from %s to %s: %v", tr.name, j.Partition, ms(max(tr.lastMs, j.FromMs)), ms(j.ToMs), tr.failed))
		}
		if tr.behind {
			newest := "it holds no event"
			if tr.behindMs >= 0 {
				newest = "its newest event is at " + ms(tr.behindMs)
			}
			parts = append(parts, fmt.Sprintf("topic %s partition %d had not been mirrored up to the window's end (%s): its events from %s to %s may be missing", tr.name, j.Partition, newest, ms(max(tr.behindMs, j.FromMs)), ms(j.ToMs)))
		}
	}
	return strings.Join(parts, "; ")
}

// skipUnreadable records a batch that could not be read. The checkpoint may pass it: another
// worker would not read it either.
func (r *run) skipUnreadable(u unreadable, s *senders, tr *topicRead) {
	r.log.Error("a batch of the window cannot be read: its events are skipped", "topic", tr.name, "from_offset", u.from, "to_offset", u.to, "err", u.err)
	r.mu.Lock()
	r.unreadable = append(r.unreadable, u)
	// Every holder meets the window's unreadable batches in the same order from its start, so
	// the most any holder met is the count.
	r.progress.Counters.Unreadable = max(r.job.Counters.Unreadable, int64(len(r.unreadable)))
	if u.fromMs >= 0 && (r.progress.FirstUndeliveredMs == nil || u.fromMs < *r.progress.FirstUndeliveredMs) {
		ms := u.fromMs
		r.progress.FirstUndeliveredMs = &ms
	}
	r.mu.Unlock()
	s.skip(tr, u.to)
}

// unreadableReason says which batches could not be read.
func (r *run) unreadableReason() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.unreadable) == 0 {
		return ""
	}
	var parts []string
	for i, u := range r.unreadable {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(r.unreadable)-5))
			break
		}
		where := fmt.Sprintf("offsets %d-%d", u.from, u.to)
		if u.topic != "" {
			where = fmt.Sprintf("topic %s %s", u.topic, where)
		}
		if u.fromMs >= 0 {
			where += fmt.Sprintf(" (%s to %s)", time.UnixMilli(u.fromMs).UTC().Format(time.RFC3339Nano), time.UnixMilli(u.toMs).UTC().Format(time.RFC3339Nano))
		}
		parts = append(parts, where+": "+u.err.Error())
	}
	return fmt.Sprintf("%d batches could not be read and their events were not delivered: %s", len(r.unreadable), strings.Join(parts, "; "))
}

// outcome is the state the job ends in once every delivery settled, and why.
func (r *run) outcome(ctx context.Context, err error, s *senders) (job.State, string, error) {
	if errors.Is(err, errHalted) && ctx.Err() == nil {
		p := r.snapshot()
		return job.StateIncomplete, fmt.Sprintf("delivery stopped after %d events: %v", p.Counters.Delivered, r.haltErr), nil
	}
	if err != nil {
		return 0, "", err
	}
	if ctx.Err() != nil {
		return 0, "", errLeaseLost
	}
	if failErr, failOffset, failTopic := s.firstFailure(); failErr != nil {
		p := r.snapshot()
		reason := fmt.Sprintf("%d of %d events were not delivered, from %s (offset %d%s) on: %v",
			p.Counters.Failed, p.Counters.Read-p.Counters.DuplicatesDropped, time.UnixMilli(*p.FirstUndeliveredMs).UTC().Format(time.RFC3339Nano), failOffset, failTopic, failErr)
		if u := r.unreadableReason(); u != "" {
			reason += "; " + u
		}
		if g := r.topicGaps(); g != "" {
			reason += "; " + g
		}
		return job.StateIncomplete, reason, nil
	}
	var gaps []string
	if u := r.unreadableReason(); u != "" {
		gaps = append(gaps, u)
	}
	if g := r.topicGaps(); g != "" {
		gaps = append(gaps, g)
	}
	if len(gaps) > 0 {
		return job.StateIncomplete, strings.Join(gaps, "; ") + "; every other event of the window was delivered", nil
	}
	// Everything in the window is delivered: the checkpoint moves past the window's batches.
	return job.StateCompleted, "Job completed successfully", nil
}

// senders deliver one job's events: an adaptive window of deliveries in flight (window), each on
// a long-lived goroutine started as the window first needs it (a goroutine per event would grow a
// fresh stack through the HTTP client every time), the checkpoint as the offset below which every
// event is settled however they complete, and the first failure. With StrictOrder the window is
// one: each delivery ends before the next starts, so the webhook gets the events in log order. A
// slot is taken before an event is handed out and given back once its outcome is recorded, so
// that no event is sent after a failure with a window of one.
type senders struct {
	r    *run
	win  *window
	work chan send
	wg   sync.WaitGroup
	ctx  context.Context

	// outage pauses the job while its webhook is down (outage.go); drain is the pool's.
	outage   *outage
	gaveUp   atomic.Pointer[OutageError] // set once an outage outlasted MaxOutage
	gaveUpCh chan struct{}               // closed then
	drain    <-chan struct{}

	spawned int // sender goroutines started; the reader's (spawn)

	mu         sync.Mutex
	failErr    error
	failOffset int64
	failSeq    int64
	failTopic  *topicRead
}

func (r *run) startSenders(ctx context.Context, drain <-chan struct{}) *senders {
	o := &r.pool.opts
	n := o.MaxInFlight
	if o.StrictOrder {
		n = 1
	}
	return &senders{r: r, win: newWindowFrom(n, o.InitialWindow), work: make(chan send), ctx: ctx,
		outage: newOutage(), gaveUpCh: make(chan struct{}), drain: drain}
}

// spawn makes sure a goroutine is free for the inFlight-th delivery in flight. Only the reader
// calls it (send).
func (s *senders) spawn(inFlight int) {
	if inFlight <= s.spawned {
		return
	}
	for ; s.spawned < inFlight; s.spawned++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for e := range s.work {
				s.deliver(s.ctx, e)
			}
		}()
	}
}

// send hands an event of tr to a free sender, or counts it failed once an earlier one failed.
// body is the sender's to keep.
func (s *senders) send(ctx context.Context, tr *topicRead, offset, ts int64, body []byte) error {
	// While the webhook is down nothing new is handed out.
	select {
	case <-s.outage.upCh():
	default:
		select {
		case <-s.outage.upCh():
		case <-s.gaveUpCh: // counted failed below
		case <-ctx.Done():
			return errLeaseLost
		case <-s.drain:
			return errDrain
		case <-s.r.halt:
			return errHalted
		}
	}
	seq, inFlight, err := s.win.acquire(ctx) // a free delivery slot
	if err != nil {
		return errLeaseLost
	}
	if s.failed() != nil {
		// The webhook gave up on an earlier event: count what is not delivered.
		s.win.giveBack(seq)
		s.r.update(func(p *job.Progress) { p.Counters.Failed++ })
		s.r.pool.opts.Metrics.EventsFailed.Inc()
		return nil
	}
	if err := tr.settled.Begin(offset); err != nil {
		s.win.giveBack(seq)
		return err
	}
	s.spawn(inFlight)
	s.work <- send{seq: seq, tr: tr, offset: offset, ts: ts, body: body}
	return nil
}

// skip settles a dropped duplicate of tr: the checkpoint may pass it, but never an undelivered
// event.
func (s *senders) skip(tr *topicRead, offset int64) {
	if s.failed() == nil {
		tr.settled.Advance(offset + 1)
		s.moveCheckpoint(tr)
	}
}

// deliver sends one event, records its outcome and gives its slot back: the window grows after a
// delivery that succeeded at once and shrinks after one that needed a retry or failed.
func (s *senders) deliver(ctx context.Context, e send) {
	r, m := s.r, s.r.pool.opts.Metrics
	start := time.Now()
	res, err := r.pool.opts.Deliverer.Deliver(ctx, s.targetOf(e), e.body)
	m.DeliveryLatency.Observe(time.Since(start).Seconds())
	if err != nil && ctx.Err() == nil && delivery.IsRetryable(err) && s.failed() == nil {
		res, err = s.ride(ctx, e, res, err) // the webhook is down: pause until it is back
	}
	defer func() {
		m.DeliveryWindow.Set(float64(s.win.release(e.seq, err == nil && res.Attempts <= 1, res.Latency)))
	}()
	if err == nil {
		cp, derr := e.tr.settled.Done(e.offset)
		if derr != nil {
			r.log.Error("checkpoint tracking", "err", derr)
		}
		again := false
		// The counters and the checkpoint move together, under one lock: a heartbeat's snapshot
		// never has the checkpoint past an event it does not count.
		r.update(func(p *job.Progress) {
			// An earlier holder's deliveries above the checkpoint are the first this worker
			// makes again (topicRead.base): each event counts once in Delivered.
			if again = e.tr.carriedDelivered > 0; again {
				e.tr.carriedDelivered--
				p.Counters.Redelivered++
				if p.Topics != nil {
					p.Topics[e.tr.i].Redelivered++
				}
			} else {
				p.Counters.Delivered++
				if p.Topics != nil {
					p.Topics[e.tr.i].Delivered++
				}
			}
			e.tr.checkpointTo(p, cp)
		})
		if again {
			m.EventsRedelivered.Inc()
		}
		m.EventsDelivered.Inc()
		e.tr.m.delivered.Inc()
		return
	}
	if ctx.Err() != nil || errors.Is(err, errDrain) || errors.Is(err, errHalted) {
		// The lease is lost, or the job stops here: nothing is recorded, the event stays
		// unsettled (below the checkpoint's reach) for whoever runs the job next.
		return
	}
	s.mu.Lock()
	if s.failErr == nil || e.seq < s.failSeq { // the first handed out
		s.failErr, s.failOffset, s.failSeq, s.failTopic = err, e.offset, e.seq, e.tr
	}
	s.mu.Unlock()
	r.update(func(p *job.Progress) {
		p.Counters.Failed++
		if p.FirstUndeliveredMs == nil || e.ts < *p.FirstUndeliveredMs {
			p.FirstUndeliveredMs = &e.ts
		}
	})
	m.EventsFailed.Inc()
}

// moveCheckpoint records tr's settled prefix: the job's checkpoint is the first topic's.
func (s *senders) moveCheckpoint(tr *topicRead) {
	cp := tr.settled.Checkpoint()
	s.r.update(func(p *job.Progress) { tr.checkpointTo(p, cp) })
}

// checkpointTo moves p's checkpoints of tr up to cp, tr's settled prefix (never down: settled
// prefixes read by different deliveries reach p in any order). The caller holds run.mu.
func (tr *topicRead) checkpointTo(p *job.Progress, cp int64) {
	if tr.i == 0 {
		p.Checkpoint = max(p.Checkpoint, cp)
	}
	if p.Topics != nil {
		p.Topics[tr.i].Checkpoint = max(p.Topics[tr.i].Checkpoint, cp)
	}
}

// targetOf is where e goes and how it is signed: the run's target as last taken, with e's
// webhook-id.
func (s *senders) targetOf(e send) Target {
	t := *s.r.target.Load()
	t.MessageID = TopicMessageID(s.r.job.ID, e.tr.i, e.offset)
	return t
}

// failed is the first delivery failure, or the outage given up on.
func (s *senders) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failErr != nil {
		return s.failErr
	}
	if g := s.gaveUp.Load(); g != nil {
		return g
	}
	return nil
}

// firstFailure is the error of the earliest event that could not be delivered, if any, its
// offset and, when the job reads several topics, its topic (", topic X").
func (s *senders) firstFailure() (error, int64, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	topic := ""
	if s.failTopic != nil && len(s.r.topics) > 1 {
		topic = " of topic " + s.failTopic.name
	}
	return s.failErr, s.failOffset, topic
}

// wait closes the work queue and waits for the deliveries in flight.
func (s *senders) wait() {
	close(s.work)
	s.wg.Wait()
	s.endOutage()
}

// send is one event handed to a sender.
type send struct {
	seq, offset, ts int64
	tr              *topicRead
	body            []byte
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
// receives it and asks for the job sees it finished, with its final counts. The event is owed
// from the moment the state is recorded (job.TransitionParams.StatusPending): this worker keeps
// the job's lease while it delivers it, and if it dies or shuts down first another worker leases
// the finished job and delivers it (execute).
func (r *run) finish(ctx context.Context, state job.State, reason string) {
	o, j := &r.pool.opts, r.job
	p := r.snapshot()
	sent := time.Now()
	tctx, cancel := context.WithDeadline(ctx, r.lease.deadline())
	err := o.Jobs.Transition(tctx, job.TransitionParams{ID: j.ID, FencingToken: j.FencingToken, To: state, Reason: reason, Progress: p, StatusPending: true})
	cancel()
	if err != nil {
		r.log.Warn("could not record the job's end", "state", state, "err", err)
		return
	}
	r.lease.renewed(sent) // the transition renewed the lease, for the status event
	r.mu.Lock()
	r.finished = true
	r.mu.Unlock()
	o.Metrics.JobsFinished.WithLabelValues(state.String()).Inc()
	r.log.Info("job finished", "state", state, "read", p.Counters.Read, "delivered", p.Counters.Delivered,
		"redelivered", p.Counters.Redelivered, "duplicates", p.Counters.DuplicatesDropped, "failed", p.Counters.Failed, "reason", reason)
	r.status(ctx, state, reason, 0)
}

// statusOutcome is what became of a status event's delivery.
type statusOutcome int

const (
	statusDelivered statusOutcome = iota
	statusGivenUp
	statusDrained   // the pool drains: another worker delivers it
	statusLeaseLost // the lease ended: another worker may hold it
)

// status delivers the finished job's replay_job_status event under the job's lease (heartbeats
// renew it; ctx ends with it), the job having finished `ago` already, and records the outcome:
// delivered or given up is settled in the store; on a drain the job is released for another
// worker to deliver it; with the lease lost nothing more is written.
func (r *run) status(ctx context.Context, state job.State, reason string, ago time.Duration) {
	o, j := &r.pool.opts, r.job
	stopHeartbeat := r.heartbeat(ctx)
	out := r.sendStatus(ctx, StatusEvent(j.WebhookID, j.ID, state, reason), ago)
	stopHeartbeat()
	wctx, cancel := context.WithDeadline(ctx, r.lease.deadline())
	defer cancel()
	var err error
	switch out {
	case statusDelivered:
		err = o.Jobs.SettleStatus(wctx, job.SettleStatusParams{ID: j.ID, FencingToken: j.FencingToken, Outcome: job.StatusEventDelivered})
	case statusGivenUp:
		err = o.Jobs.SettleStatus(wctx, job.SettleStatusParams{ID: j.ID, FencingToken: j.FencingToken, Outcome: job.StatusEventGivenUp})
	case statusDrained:
		err = o.Jobs.Release(wctx, job.ReleaseParams{ID: j.ID, FencingToken: j.FencingToken})
	case statusLeaseLost:
		r.log.Warn("replay_job_status event: the lease ended before it was delivered; another worker delivers it", "cause", context.Cause(ctx))
		return
	}
	if err != nil {
		// The lease runs out by itself: another worker delivers the event (again, if it was).
		r.log.Warn("replay_job_status event: could not record its outcome", "err", err)
	}
}

// StatusEvent is the replay_job_status event POSTed when job jobID of webhookID ends in state:
// "Complete" for COMPLETED, else "Incomplete", with reason as its description.
func StatusEvent(webhookID, jobID int64, state job.State, reason string) []byte {
	var ev statusEvent
	ev.Status.WebhookID = strconv.FormatInt(webhookID, 10)
	ev.Status.JobID = strconv.FormatInt(jobID, 10)
	ev.Status.State = "Complete"
	if state != job.StateCompleted {
		ev.Status.State = "Incomplete"
	}
	ev.Status.Description = reason
	body, _ := json.Marshal(ev)
	return body
}

// sendStatus delivers the replay_job_status event, retried while the webhook is down as a
// paused job's deliveries are (OutageRetryMin doubling to OutageRetryMax, until MaxOutage after
// the job finished, `ago` before this call). ctx is the job's lease. Given up (then, or on an
// answer not worth retrying) it is logged and counted
// (replay_status_events_total{outcome="given_up"}). While it waits for the webhook, the job does
// not hold a worker: a stand-in leases meanwhile, as for a paused job.
func (r *run) sendStatus(ctx context.Context, body []byte, ago time.Duration) statusOutcome {
	o, j, m := &r.pool.opts, r.job, r.pool.opts.Metrics
	giveUp := time.Now().Add(o.MaxOutage - ago)
	wait := o.OutageRetryMin
	paused := false
	defer func() {
		if paused {
			r.pool.jobResumed()
		}
	}()
	for attempt := 1; ; attempt++ {
		target, err := o.Targets(ctx, j.WebhookID)
		if err == nil {
			target.MessageID = StatusMessageID(j.ID) // the same on every attempt
			_, err = o.Deliverer.Deliver(ctx, target, body)
		}
		if err == nil {
			m.StatusEvents.WithLabelValues("delivered").Inc()
			if attempt > 1 {
				r.log.Info("replay_job_status event delivered", "attempts", attempt)
			}
			return statusDelivered
		}
		if ctx.Err() != nil {
			return statusLeaseLost
		}
		if !delivery.IsRetryable(err) || time.Now().Add(wait).After(giveUp) {
			m.StatusEvents.WithLabelValues("given_up").Inc()
			r.log.Warn("replay_job_status event not delivered: given up", "err", err, "attempts", attempt)
			return statusGivenUp
		}
		if attempt == 1 {
			r.log.Warn("replay_job_status event not delivered: retrying while the webhook is down", "err", err, "max_outage", o.MaxOutage)
			paused = true
			r.pool.jobPaused()
		}
		t := time.NewTimer(wait)
		select {
		case <-r.drain:
			t.Stop()
			r.log.Info("replay_job_status event not delivered yet: released on shutdown for another worker", "err", err, "attempts", attempt)
			return statusDrained
		case <-ctx.Done():
			t.Stop()
			return statusLeaseLost
		case <-t.C:
		}
		wait = min(2*wait, o.OutageRetryMax)
	}
}

// MessageID is the Standard Webhooks webhook-id of the event at offset in job jobID's replay:
// the same for every attempt and for a taken-over job's redelivery of it, and new for another
// replay of the same event (a replay is asked for again on purpose).
func MessageID(jobID, offset int64) string {
	return TopicMessageID(jobID, 0, offset)
}

// TopicMessageID is the webhook-id of the event at offset of topic i (engine.Topics' order) in
// job jobID's replay: MessageID for the first topic; the others' offsets are their own, so their
// ids name the topic too ("msg_<job>_t<i>_<offset>").
func TopicMessageID(jobID int64, i int, offset int64) string {
	// Made in a buffer of its own: one allocation per event, the string.
	var buf [64]byte
	b := strconv.AppendInt(append(buf[:0], "msg_"...), jobID, 10)
	if i != 0 {
		b = strconv.AppendInt(append(b, "_t"...), int64(i), 10)
	}
	b = strconv.AppendInt(append(b, '_'), offset, 10)
	return string(b)
}

// StatusMessageID is the webhook-id of job jobID's replay_job_status event.
func StatusMessageID(jobID int64) string {
	return "msg_" + strconv.FormatInt(jobID, 10) + "_status"
}
