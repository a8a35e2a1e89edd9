// Package worker runs replay jobs: it leases them from the job store, reads the webhook's events
// through the index and the log, drops duplicates, delivers the rest, and checkpoints progress.
package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/replay/replay/replayd/job"
)

// Pool is a set of workers. Start runs them; Stop drains them: no new leases, in-flight jobs stop
// at an event boundary, checkpoint and are released for any instance to resume.
type Pool struct {
	opts   Options
	wake   chan struct{}
	mu     sync.Mutex
	cancel context.CancelFunc
	done   sync.WaitGroup
	state  int // 0 new, 1 running, 2 stopped
	ctx    context.Context

	// A job paused while its webhook is down (outage.go) does not hold a worker: a stand-in
	// worker leases meanwhile, and leaves after its job once the paused one resumes.
	standMu  sync.Mutex
	paused   int // jobs paused now
	standIns int // stand-in workers running
	standSeq int
}

// New makes a pool.
func New(o Options) (*Pool, error) {
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("worker: invalid options: %w", err)
	}
	return &Pool{opts: o, wake: make(chan struct{}, 1)}, nil
}

// Start runs the workers until Stop.
func (p *Pool) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != 0 {
		return errors.New("worker: pool already started")
	}
	p.state = 1
	ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	p.ctx = ctx
	for i := 0; i < p.opts.Workers; i++ {
		p.done.Add(1)
		go p.loop(ctx, fmt.Sprintf("%s/w%d", p.opts.Name, i), false)
	}
	return nil
}

// jobPaused hands a paused job's worker over: a stand-in starts leasing.
func (p *Pool) jobPaused() {
	p.standMu.Lock()
	defer p.standMu.Unlock()
	p.paused++
	p.opts.Metrics.JobsPaused.Inc()
	if p.standIns >= p.paused {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != 1 {
		return // draining: nothing new is leased
	}
	p.standIns++
	p.standSeq++
	p.done.Add(1) // under mu: Stop's Wait starts only after state changed under it
	go p.loop(p.ctx, fmt.Sprintf("%s/s%d", p.opts.Name, p.standSeq), true)
}

// jobResumed takes the worker back: a stand-in leaves once its job is done.
func (p *Pool) jobResumed() {
	p.standMu.Lock()
	defer p.standMu.Unlock()
	p.paused--
	p.opts.Metrics.JobsPaused.Dec()
}

// standInDone says whether a stand-in worker is no longer needed, and if so counts it gone.
func (p *Pool) standInDone() bool {
	p.standMu.Lock()
	defer p.standMu.Unlock()
	if p.standIns > p.paused {
		p.standIns--
		return true
	}
	return false
}

// Notify wakes an idle worker: a job was just created.
func (p *Pool) Notify() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Stop stops leasing, makes running jobs checkpoint and release their leases, and waits for
// them (or for ctx). It is idempotent.
func (p *Pool) Stop(ctx context.Context) error {
	p.mu.Lock()
	if p.state != 1 {
		p.state = 2
		p.mu.Unlock()
		return nil
	}
	p.state = 2
	p.cancel()
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.done.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("worker: stop: %w", ctx.Err())
	}
}

func (p *Pool) loop(ctx context.Context, owner string, standIn bool) {
	defer p.done.Done()
	log := p.opts.Logger.With("worker", owner)
	// A failure that repeats (a store that is down, a full disk) is logged when it starts, then
	// once a minute with how often it happened, not at every poll.
	var failing string
	var failingSince, loggedAt time.Time
	failures := 0
	for ctx.Err() == nil {
		if standIn && p.standInDone() {
			return
		}
		// The lease is ours from no earlier than the moment it was asked for: the store records it
		// later, so LeaseTimeout from here ends before the store's lease does.
		sent := time.Now()
		j, err := p.opts.Jobs.Lease(ctx, job.LeaseParams{Owner: owner, Timeout: p.opts.LeaseTimeout, MaxPerApp: p.opts.MaxJobsPerApp})
		switch {
		case err == nil:
			failing, failures = "", 0
			r := &run{pool: p, job: j, owner: owner, leasedAt: sent, halt: make(chan struct{}), log: log.With("job_id", j.ID, "webhook_id", j.WebhookID)}
			r.execute(ctx)
			continue
		case errors.Is(err, job.ErrNoJob):
			failing, failures = "", 0
		case ctx.Err() != nil:
			return
		default:
			failures++
			switch now := time.Now(); {
			case err.Error() != failing:
				failing, failingSince, loggedAt, failures = err.Error(), now, now, 1
				log.Warn("lease failed", "err", err)
			case now.Sub(loggedAt) >= time.Minute:
				loggedAt = now
				log.Warn("lease still failing", "err", err, "since", failingSince.UTC().Format(time.RFC3339), "failures", failures)
			}
		}
		t := time.NewTimer(p.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-p.wake:
			t.Stop()
		case <-t.C:
		}
	}
}
