package jobtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replay/replay/replayd/job"
)

// ContentionConfig sizes ExerciseContention.
type ContentionConfig struct {
	// Instances are the stores the workers go through, standing for separate replayd instances
	// (for MySQL: separate connection pools on one database). Workers are spread over them.
	Instances []job.Driver
	Workers   int           // total workers, spread round-robin over Instances
	Jobs      int           // jobs to create (each for its own webhook) and drain
	Timeout   time.Duration // the whole drain must finish within this
}

// ExerciseContention creates cfg.Jobs OPEN jobs and lets cfg.Workers workers drain them
// concurrently: lease, heartbeat with progress, ONGOING, COMPLETED. It fails if any job is
// completed other than exactly once, is leased more than once, or if at any moment two workers
// hold the same job (holders are tracked in a map under a mutex).
func ExerciseContention(t *testing.T, cfg ContentionConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	seed := cfg.Instances[0]

	// Seed concurrently (each Create is its own transaction).
	var next atomic.Int64
	var wg sync.WaitGroup
	base := 5_000_000 + webhookSeq.Add(int64(cfg.Jobs))
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(cfg.Jobs) {
					return
				}
				if _, err := seed.Create(ctx, job.CreateParams{AppID: 1 + i%7, WebhookID: base + i, Partition: int32(i % 12), FromMs: 1, ToMs: 2}); err != nil {
					t.Errorf("Create: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	seeded := time.Now()

	var (
		mu        sync.Mutex
		holders   = map[int64]string{} // job id -> worker holding it right now
		completed = map[int64]int{}
		overlaps  int
		done      atomic.Int64
	)
	for w := range cfg.Workers {
		d := cfg.Instances[w%len(cfg.Instances)]
		name := fmt.Sprintf("instance-%d/worker-%d", w%len(cfg.Instances), w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done.Load() < int64(cfg.Jobs) {
				if ctx.Err() != nil {
					t.Errorf("%s: drain timed out with %d of %d jobs completed", name, done.Load(), cfg.Jobs)
					return
				}
				l, err := d.Lease(ctx, job.LeaseParams{Owner: name, Timeout: time.Minute})
				if errors.Is(err, job.ErrNoJob) {
					time.Sleep(2 * time.Millisecond) // poll interval
					continue
				}
				if err != nil {
					t.Errorf("%s: Lease: %v", name, err)
					return
				}
				mu.Lock()
				if other, ok := holders[l.ID]; ok {
					overlaps++
					t.Errorf("job %d leased by %s while %s holds it", l.ID, name, other)
				}
				holders[l.ID] = name
				mu.Unlock()

				steps := []error{
					d.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID, FencingToken: l.FencingToken,
						Progress: &job.Progress{Checkpoint: 10, Counters: job.Counters{Read: 1, Delivered: 1}}}),
					d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateOngoing}),
				}
				steps = append(steps, d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateCompleted,
					Progress: &job.Progress{Checkpoint: 20, Counters: job.Counters{Read: 2, Delivered: 2}}}))
				for i, err := range steps {
					if err != nil {
						t.Errorf("%s: job %d step %d: %v", name, l.ID, i, err)
						return
					}
				}
				// Released only after COMPLETED is stored: a finished job is never leasable again,
				// so any other lease of it while it is in the map is a real double holder.
				mu.Lock()
				delete(holders, l.ID)
				completed[l.ID]++
				mu.Unlock()
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(seeded)
	if t.Failed() {
		t.FailNow()
	}
	if len(completed) != cfg.Jobs || overlaps != 0 {
		t.Fatalf("%d distinct jobs completed of %d, %d overlaps", len(completed), cfg.Jobs, overlaps)
	}
	for id, n := range completed {
		if n != 1 {
			t.Fatalf("job %d completed %d times", id, n)
		}
	}
	// The store agrees: every job COMPLETED, leased exactly once, with the final progress.
	n := 0
	p := job.ListParams{Limit: job.MaxListLimit}
	for {
		res, err := seed.List(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range res.Jobs {
			n++
			if j.State != job.StateCompleted || j.FencingToken != 1 || j.Checkpoint != 20 || completed[j.ID] != 1 {
				t.Fatalf("after the drain: %+v (completed %d times by workers)", j, completed[j.ID])
			}
		}
		if res.NextBeforeID == 0 {
			break
		}
		p.BeforeID = res.NextBeforeID
	}
	if n != cfg.Jobs {
		t.Fatalf("store lists %d jobs, want %d", n, cfg.Jobs)
	}
	t.Logf("%d workers on %d instances drained %d jobs in %v (%.0f jobs/s)", cfg.Workers, len(cfg.Instances),
		cfg.Jobs, elapsed.Round(time.Millisecond), float64(cfg.Jobs)/elapsed.Seconds())
}
