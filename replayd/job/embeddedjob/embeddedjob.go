// Package embeddedjob is the single-process job store: job.Driver on an embedded Pebble database in
// a directory, every write synced, nothing to install; the default of `replayd serve`.
package embeddedjob

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/replay/replay/replayd/localdb"

	"github.com/cockroachdb/pebble/v2"

	"github.com/replay/replay/replayd/job"
)

// Key layout (all integers 8-byte big-endian, so byte order is numeric order):
//
//	(m/next_id, the id counter of stores made before ids were random, is no longer read)
//	j/<id>                     -> the job record (JSON)
//	a/<webhook>                -> id of the webhook's active job (one-active-per-webhook)
//	l/<due unix µs><id>        -> "" for each leasable job: due = created for OPEN, lease expiry
//	                              for STARTED/ONGOING and for a finished job whose status event
//	                              is pending; absent otherwise (the lease queue)
//	w/<webhook><id>, p/<app><id> -> "" (list by webhook, by app)
var (
	prefixJob     = []byte("j/")
	prefixActive  = []byte("a/")
	prefixLease   = []byte("l/")
	prefixWebhook = []byte("w/")
	prefixApp     = []byte("p/")
)

func key(prefix []byte, parts ...int64) []byte {
	k := make([]byte, len(prefix), len(prefix)+8*len(parts))
	copy(k, prefix)
	for _, p := range parts {
		k = binary.BigEndian.AppendUint64(k, uint64(p))
	}
	return k
}

// record is the stored form of a job.
type record struct {
	job.Job
	LeaseTimeoutNs int64 `json:"lease_timeout_ns"`
}

// Driver is the embedded job store. Operations are serialized (one at a time, each committed with
// fsync before it returns); create it with Open.
type Driver struct {
	opts  Options
	local *localdb.DB // serializes operations
	wo    *pebble.WriteOptions
}

var _ job.Driver = (*Driver)(nil)

// Open opens (creating if needed) the store in opts.Dir. It does not modify opts.
func Open(opts Options) (*Driver, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	local, err := localdb.Open(localdb.Options{Dir: opts.Dir, Store: "embeddedjob", ErrClosed: job.ErrClosed, ErrUnavailable: job.ErrUnavailable, Bare: []error{job.ErrNoJob}, NoSync: opts.NoSync, FS: opts.FS, DiskReserve: opts.DiskReserve, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	return &Driver{local: local, opts: opts, wo: local.WriteOptions}, nil
}

// Close closes the database once the operation in progress ends. It is idempotent.
func (d *Driver) Close() error { return d.local.Close() }

// run serializes fn, honouring ctx while waiting.
func (d *Driver) run(ctx context.Context, op string, fn func() error) error {
	return d.local.Run(ctx, op, fn)
}

// write serializes fn, which writes, refusing it below the disk reserve (localdb.DB.Write).
func (d *Driver) write(ctx context.Context, op string, fn func() error) error {
	return d.local.Write(ctx, op, fn)
}

func (d *Driver) now() time.Time { return d.opts.Now().UTC().Truncate(time.Microsecond) }

func (d *Driver) load(id int64) (*record, error) {
	v, closer, err := d.local.Pebble.Get(key(prefixJob, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("job %d: %w", id, job.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("job %d: decoding: %w", id, err)
	}
	if err := job.ValidateTopics(r.Topics); err != nil {
		return nil, fmt.Errorf("job %d: decoding: topic progress: %w", id, err)
	}
	r.LeaseTimeout = time.Duration(r.LeaseTimeoutNs)
	return &r, nil
}

func (d *Driver) put(b *pebble.Batch, r *record) error {
	r.LeaseTimeoutNs = int64(r.LeaseTimeout)
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return b.Set(key(prefixJob, r.ID), v, nil)
}

// leaseKey is the job's entry in the lease queue, nil if it has none.
func leaseKey(j *job.Job) []byte {
	switch {
	case j.State == job.StateOpen:
		return key(prefixLease, j.CreatedAt.UnixMicro(), j.ID)
	case j.UnderLease():
		return key(prefixLease, j.LeaseExpiresAt.UnixMicro(), j.ID)
	}
	return nil
}

// save writes r, moving its lease-queue and active-webhook entries from what they were for old
// (the job as loaded), and commits with fsync (unless Options.NoSync).
func (d *Driver) save(old job.Job, r *record) error {
	b := d.local.Pebble.NewBatch()
	defer b.Close()
	if k := leaseKey(&old); k != nil {
		if err := b.Delete(k, nil); err != nil {
			return err
		}
	}
	if k := leaseKey(&r.Job); k != nil {
		if err := b.Set(k, nil, nil); err != nil {
			return err
		}
	}
	if !r.State.Active() && old.State.Active() {
		if err := b.Delete(key(prefixActive, r.WebhookID), nil); err != nil {
			return err
		}
	}
	if err := d.put(b, r); err != nil {
		return err
	}
	return b.Commit(d.wo)
}

func clone(r *record) *job.Job {
	j := r.Job
	if j.FirstUndeliveredMs != nil {
		v := *j.FirstUndeliveredMs
		j.FirstUndeliveredMs = &v
	}
	return &j
}

// Create implements job.Driver.
func (d *Driver) Create(ctx context.Context, p job.CreateParams) (*job.Job, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var out *job.Job
	err := d.write(ctx, "create", func() error {
		activeKey := key(prefixActive, p.WebhookID)
		if v, closer, err := d.local.Pebble.Get(activeKey); err == nil {
			other := int64(binary.BigEndian.Uint64(v))
			closer.Close()
			return fmt.Errorf("webhook %d: %w (job %d)", p.WebhookID, job.ErrActiveJobExists, other)
		} else if !errors.Is(err, pebble.ErrNotFound) {
			return err
		}
		now := d.now()
		var id int64
		for {
			id = job.NewID(now)
			_, closer, err := d.local.Pebble.Get(key(prefixJob, id))
			if errors.Is(err, pebble.ErrNotFound) {
				break
			}
			if err != nil {
				return err
			}
			closer.Close() // taken (once in four million in a millisecond): another
		}
		r := &record{Job: job.Job{
			ID: id, AppID: p.AppID, WebhookID: p.WebhookID, Partition: p.Partition,
			FromMs: p.FromMs, ToMs: p.ToMs, State: job.StateOpen,
			CreatedAt: now, UpdatedAt: now, Checkpoint: job.NoCheckpoint,
		}}
		b := d.local.Pebble.NewBatch()
		defer b.Close()
		for _, kv := range [][2][]byte{
			{activeKey, key(nil, id)},
			{leaseKey(&r.Job), nil},
			{key(prefixWebhook, p.WebhookID, id), nil},
			{key(prefixApp, p.AppID, id), nil},
		} {
			if err := b.Set(kv[0], kv[1], nil); err != nil {
				return err
			}
		}
		if err := d.put(b, r); err != nil {
			return err
		}
		if err := b.Commit(d.wo); err != nil {
			return err
		}
		out = clone(r)
		return nil
	})
	return out, err
}

// Lease implements job.Driver: the first entry of the lease queue whose due time has passed.
func (d *Driver) Lease(ctx context.Context, p job.LeaseParams) (*job.Job, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = d.opts.LeaseTimeout
	}
	var out *job.Job
	// A read until a job is due: polling workers find nothing to lease without the disk.
	err := d.run(ctx, "lease", func() error {
		now := d.now()
		var busy map[int64]int // held jobs per app, when capped
		if p.MaxPerApp > 0 {
			var err error
			if busy, err = d.heldPerApp(now); err != nil {
				return err
			}
		}
		it, err := d.local.Pebble.NewIter(&pebble.IterOptions{
			LowerBound: prefixLease,
			UpperBound: key(prefixLease, now.UnixMicro()+1),
		})
		if err != nil {
			return err
		}
		id := int64(-1)
		for ok := it.First(); ok && id < 0; ok = it.Next() {
			cand := int64(binary.BigEndian.Uint64(it.Key()[len(prefixLease)+8:]))
			if busy != nil {
				r, err := d.load(cand)
				if err != nil {
					it.Close()
					return err
				}
				if busy[r.AppID] >= p.MaxPerApp {
					continue // that app has its share running
				}
			}
			id = cand
		}
		if err := it.Close(); err != nil {
			return err
		}
		if id < 0 {
			return job.ErrNoJob
		}
		if err := d.local.CheckReserve(); err != nil {
			return err
		}
		r, err := d.load(id)
		if err != nil {
			return err
		}
		old := r.Job
		if r.State == job.StateOpen {
			r.State = job.StateStarted
			r.StartedAt = now
		}
		r.FencingToken++
		r.LeaseOwner = p.Owner
		r.HeartbeatAt = now
		r.LeaseTimeout = timeout
		r.LeaseExpiresAt = now.Add(timeout)
		r.UpdatedAt = now
		if err := d.save(old, r); err != nil {
			return err
		}
		out = clone(r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// heldPerApp counts, per app, the jobs held at now: the lease queue's entries due after now that
// are still running.
func (d *Driver) heldPerApp(now time.Time) (map[int64]int, error) {
	it, err := d.local.Pebble.NewIter(&pebble.IterOptions{
		LowerBound: key(prefixLease, now.UnixMicro()+1),
		UpperBound: []byte("l0"), // the end of prefixLease ("l/")
	})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	held := map[int64]int{}
	for ok := it.First(); ok; ok = it.Next() {
		r, err := d.load(int64(binary.BigEndian.Uint64(it.Key()[len(prefixLease)+8:])))
		if err != nil {
			return nil, err
		}
		if r.State.Held() { // not a finished job delivering its status event
			held[r.AppID]++
		}
	}
	return held, it.Error()
}

func applyProgress(j *job.Job, pr *job.Progress) {
	if pr == nil {
		return
	}
	j.Checkpoint = pr.Checkpoint
	j.Counters = pr.Counters
	if len(pr.Topics) > 0 {
		j.Topics = slices.Clone(pr.Topics)
	}
	j.FirstUndeliveredMs = nil
	if pr.FirstUndeliveredMs != nil {
		v := *pr.FirstUndeliveredMs
		j.FirstUndeliveredMs = &v
	}
}

// fenced loads job id and checks that token is current and the state one of from.
func (d *Driver) fenced(id, token int64, from []job.State, what string) (*record, error) {
	return d.fencedIf(id, token, func(j *job.Job) bool { return slices.Contains(from, j.State) }, what)
}

// fencedLeased loads job id and checks that token is current and the job under lease: still
// running when pr (progress to checkpoint) is given, else job.Job.UnderLease.
func (d *Driver) fencedLeased(id, token int64, pr *job.Progress, what string) (*record, error) {
	if pr != nil {
		return d.fenced(id, token, []job.State{job.StateStarted, job.StateOngoing}, what)
	}
	return d.fencedIf(id, token, (*job.Job).UnderLease, what)
}

// fencedIf loads job id and checks that token is current and ok holds for the job.
func (d *Driver) fencedIf(id, token int64, ok func(*job.Job) bool, what string) (*record, error) {
	r, err := d.load(id)
	if err != nil {
		return nil, err
	}
	if r.FencingToken != token || !ok(&r.Job) {
		return nil, job.DiagnoseFencedFailure(id, token, r.FencingToken, r.State.String(), r.LeaseOwner, what)
	}
	return r, nil
}

// Heartbeat implements job.Driver.
func (d *Driver) Heartbeat(ctx context.Context, p job.HeartbeatParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	return d.write(ctx, "heartbeat", func() error {
		r, err := d.fencedLeased(p.ID, p.FencingToken, p.Progress, "heartbeat")
		if err != nil {
			return err
		}
		old := r.Job
		now := d.now()
		r.HeartbeatAt, r.LeaseExpiresAt, r.UpdatedAt = now, now.Add(r.LeaseTimeout), now
		applyProgress(&r.Job, p.Progress)
		return d.save(old, r)
	})
}

// Release implements job.Driver: the job's lease-queue entry moves to now, so the next Lease
// (whose range ends at its now) takes it, among the expired leases.
func (d *Driver) Release(ctx context.Context, p job.ReleaseParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	return d.write(ctx, "release", func() error {
		r, err := d.fencedLeased(p.ID, p.FencingToken, p.Progress, "release")
		if err != nil {
			return err
		}
		old := r.Job
		now := d.now()
		r.FencingToken++
		r.LeaseExpiresAt, r.UpdatedAt = now, now
		applyProgress(&r.Job, p.Progress)
		return d.save(old, r)
	})
}

// Transition implements job.Driver.
func (d *Driver) Transition(ctx context.Context, p job.TransitionParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	return d.write(ctx, "transition to "+p.To.String(), func() error {
		r, err := d.fenced(p.ID, p.FencingToken, job.TransitionSources(p.To), "to "+p.To.String())
		if err != nil {
			return err
		}
		old := r.Job
		now := d.now()
		r.State, r.UpdatedAt = p.To, now
		switch {
		case p.To.Terminal() && p.StatusPending:
			// The lease goes on for the status event: the job stays in the lease queue.
			r.FinishedAt, r.Reason, r.StatusEvent = now, p.Reason, job.StatusEventPending
			r.HeartbeatAt, r.LeaseExpiresAt = now, now.Add(r.LeaseTimeout)
		case p.To.Terminal():
			r.FinishedAt, r.LeaseExpiresAt, r.Reason = now, time.Time{}, p.Reason
		}
		// ONGOING leaves the lease as it is (job.Driver.Transition).
		applyProgress(&r.Job, p.Progress)
		return d.save(old, r)
	})
}

// SettleStatus implements job.Driver.
func (d *Driver) SettleStatus(ctx context.Context, p job.SettleStatusParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	return d.write(ctx, "settle status event", func() error {
		r, err := d.fenced(p.ID, p.FencingToken, []job.State{job.StateCompleted, job.StateIncomplete}, "status event")
		if err != nil {
			return err
		}
		if r.StatusEvent != job.StatusEventPending {
			return fmt.Errorf("job %d: status event: %w: it is %q, not pending", p.ID, job.ErrInvalidTransition, r.StatusEvent)
		}
		old := r.Job
		r.StatusEvent, r.LeaseExpiresAt, r.UpdatedAt = p.Outcome, time.Time{}, d.now()
		return d.save(old, r)
	})
}

// Get implements job.Driver.
func (d *Driver) Get(ctx context.Context, p job.GetParams) (*job.Job, error) {
	var out *job.Job
	err := d.run(ctx, "get", func() error {
		r, err := d.load(p.ID)
		if err != nil {
			return err
		}
		if p.AppID != 0 && r.AppID != p.AppID {
			return fmt.Errorf("job %d: %w", p.ID, job.ErrNotFound)
		}
		out = clone(r)
		return nil
	})
	return out, err
}

// List implements job.Driver. It walks the webhook index, the app index or the jobs themselves
// (whichever the filters allow) backwards from the cursor and filters the rest.
func (d *Driver) List(ctx context.Context, p job.ListParams) (*job.ListResult, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	var out *job.ListResult
	err = d.run(ctx, "list", func() error {
		var prefix []byte
		switch {
		case p.WebhookID != 0:
			prefix = key(prefixWebhook, p.WebhookID)
		case p.AppID != 0:
			prefix = key(prefixApp, p.AppID)
		default:
			prefix = prefixJob
		}
		upper := append(bytes.Clone(prefix), 0xff)
		if p.BeforeID > 0 {
			upper = key(prefix, p.BeforeID)
		}
		it, err := d.local.Pebble.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
		if err != nil {
			return err
		}
		defer it.Close()
		out = &job.ListResult{}
		for valid := it.Last(); valid; valid = it.Prev() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Key()
			id := int64(binary.BigEndian.Uint64(k[len(k)-8:]))
			r, err := d.load(id)
			if err != nil {
				return err
			}
			if !matches(&r.Job, p) {
				continue
			}
			if len(out.Jobs) == p.Limit {
				out.NextBeforeID = out.Jobs[p.Limit-1].ID
				break
			}
			out.Jobs = append(out.Jobs, clone(r))
		}
		return it.Error()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Count implements job.Driver. The embedded store keeps no per-state index: it reads every job,
// which suits the single process it serves.
func (d *Driver) Count(ctx context.Context, p job.CountParams) (map[job.State]int64, error) {
	out := map[job.State]int64{}
	err := d.run(ctx, "count", func() error {
		it, err := d.local.Pebble.NewIter(&pebble.IterOptions{LowerBound: prefixJob, UpperBound: append(bytes.Clone(prefixJob), 0xff)})
		if err != nil {
			return err
		}
		defer it.Close()
		for valid := it.First(); valid; valid = it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Key()
			r, err := d.load(int64(binary.BigEndian.Uint64(k[len(k)-8:])))
			if err != nil {
				return err
			}
			if p.AppID == 0 || r.Job.AppID == p.AppID {
				out[r.Job.State]++
			}
		}
		return it.Error()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func matches(j *job.Job, p job.ListParams) bool {
	if (p.AppID != 0 && j.AppID != p.AppID) || (p.WebhookID != 0 && j.WebhookID != p.WebhookID) {
		return false
	}
	if len(p.States) == 0 {
		return true
	}
	for _, s := range p.States {
		if j.State == s {
			return true
		}
	}
	return false
}

// Cancel implements job.Driver.
func (d *Driver) Cancel(ctx context.Context, p job.CancelParams) (*job.Job, error) {
	var out *job.Job
	err := d.write(ctx, "cancel", func() error {
		r, err := d.load(p.ID)
		if err != nil {
			return err
		}
		if p.AppID != 0 && r.AppID != p.AppID {
			return fmt.Errorf("job %d: %w", p.ID, job.ErrNotFound)
		}
		if r.State.Active() {
			old := r.Job
			now := d.now()
			r.State, r.Reason, r.FinishedAt, r.UpdatedAt = job.StateCanceled, p.Reason, now, now
			r.FencingToken++
			r.LeaseExpiresAt = time.Time{}
			if err := d.save(old, r); err != nil {
				return err
			}
		}
		out = clone(r)
		return job.CheckCanceled(out)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

var _ io.Closer = (*Driver)(nil)

// Ping implements job.Driver: it answers unless the driver is closed.
func (d *Driver) Ping(ctx context.Context) error {
	return d.run(ctx, "ping", func() error { return nil })
}
