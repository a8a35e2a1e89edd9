package embeddedjob_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/embeddedjob"
	"github.com/replay/replay/replayd/job/jobtest"
)

func open(t *testing.T, opts embeddedjob.Options) *embeddedjob.Driver {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	d, err := embeddedjob.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestConformance(t *testing.T) {
	jobtest.Exercise(t, func(t *testing.T) job.Driver { return open(t, embeddedjob.Options{}) })
}

func TestContention(t *testing.T) {
	d := open(t, embeddedjob.Options{})
	// One process, so the "instances" share the store; the workers still race on every lease.
	jobtest.ExerciseContention(t, jobtest.ContentionConfig{
		Instances: []job.Driver{d, d, d, d}, Workers: 16, Jobs: 1000, Timeout: 90 * time.Second,
	})
}

func TestOptionsValidateReportsEverything(t *testing.T) {
	o := embeddedjob.Options{LeaseTimeout: -time.Second}
	err := o.Validate()
	if err == nil || !strings.Contains(err.Error(), "Dir") || !strings.Contains(err.Error(), "LeaseTimeout") || !strings.Contains(err.Error(), "Now") {
		t.Fatalf("Validate() = %v, want all three problems", err)
	}
	o = embeddedjob.Options{Dir: "x"}
	if err := o.EnsureDefaults().Validate(); err != nil || o.LeaseTimeout != 30*time.Second || o.Now == nil {
		t.Fatalf("defaults: %+v %v", o, err)
	}
}

// The store's times come from its injected clock, and the data survives a reopen.
func TestInjectedClockAndReopen(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	d := open(t, embeddedjob.Options{Dir: dir, Now: clock})
	ctx := context.Background()
	c, err := d.Create(ctx, job.CreateParams{AppID: 1, WebhookID: 2, FromMs: 1, ToMs: 2})
	if err != nil {
		t.Fatal(err)
	}
	l, err := d.Lease(ctx, job.LeaseParams{Owner: "a", Timeout: 10 * time.Second})
	if err != nil || l.ID != c.ID || !l.HeartbeatAt.Equal(now) || !l.LeaseExpiresAt.Equal(now.Add(10*time.Second)) {
		t.Fatalf("lease %+v %v", l, err)
	}
	now = now.Add(9 * time.Second)
	if _, err := d.Lease(ctx, job.LeaseParams{Owner: "b"}); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("lease before expiry: %v", err)
	}
	if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID, FencingToken: l.FencingToken, Progress: &job.Progress{Checkpoint: 77}}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(10 * time.Second) // exactly at expiry: leasable
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := open(t, embeddedjob.Options{Dir: dir, Now: clock})
	b, err := d2.Lease(ctx, job.LeaseParams{Owner: "b"})
	if err != nil || b.ID != c.ID || b.Checkpoint != 77 || b.FencingToken != 2 || b.LeaseTimeout != 30*time.Second {
		t.Fatalf("takeover after reopen: %+v %v", b, err)
	}
	if _, err := d2.Create(ctx, job.CreateParams{AppID: 1, WebhookID: 2, FromMs: 1, ToMs: 2}); !errors.Is(err, job.ErrActiveJobExists) {
		t.Fatalf("active-webhook entry lost on reopen: %v", err)
	}
	c2, err := d2.Create(ctx, job.CreateParams{AppID: 1, WebhookID: 3, FromMs: 1, ToMs: 2})
	if err != nil || c2.ID <= c.ID {
		t.Fatalf("a new job after reopen: %+v %v; want a fresh, later id than %d", c2, err, c.ID)
	}
}
