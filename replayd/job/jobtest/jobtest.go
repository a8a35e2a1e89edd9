// Package jobtest is the conformance suite every job.Driver must pass: states, transitions,
// fencing, one active job per webhook, listing, cancel, release, contexts, lease order, takeover,
// contention.
package jobtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/mysqldb"
	"github.com/replay/replay/replayd/testwait"
)

// NewDriver returns a driver on a fresh, empty store; the suite closes it (drivers' Close is
// idempotent, so the constructor may also register its own cleanup).
type NewDriver func(t *testing.T) job.Driver

// Exercise runs the conformance suite against the driver newDriver makes. Every subtest gets its
// own store and runs in parallel with the others.
func Exercise(t *testing.T, newDriver NewDriver) {
	tests := []struct {
		name string
		fn   func(t *testing.T, d job.Driver)
	}{
		{"CreateGet", testCreateGet},
		{"IDs", testIDs},
		{"InvalidParams", testInvalidParams},
		{"OneActivePerWebhook", testOneActivePerWebhook},
		{"ConcurrentCreateSameWebhook", testConcurrentCreateSameWebhook},
		{"Lifecycle", testLifecycle},
		{"InvalidTransitions", testInvalidTransitions},
		{"Fencing", testFencing},
		{"Cancel", testCancel},
		{"ListPagingAndFilters", testList},
		{"Count", testCount},
		{"ContextCanceled", testContextCanceled},
		{"LeaseOrderOldestFirst", testLeaseOrder},
		{"LeasePerAppCap", testLeasePerAppCap},
		{"ExpiredHeartbeatTakeover", testTakeover},
		{"Release", testRelease},
		{"ReleaseRefused", testReleaseRefused},
		{"ReleasedLeaseOrder", testReleasedLeaseOrder},
		{"TopicProgress", testTopicProgress},
		{"StatusEvent", testStatusEvent},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDriver(t)
			t.Cleanup(func() { d.Close() })
			tc.fn(t, d)
		})
	}
}

var webhookSeq atomic.Int64

// create makes an OPEN job for a fresh webhook of app.
func create(t *testing.T, d job.Driver, app int64) *job.Job {
	t.Helper()
	j, err := d.Create(context.Background(), job.CreateParams{
		AppID: app, WebhookID: 1_000_000 + webhookSeq.Add(1), Partition: 3,
		FromMs: 1_700_000_000_000, ToMs: 1_700_000_060_000,
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return j
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func mustLease(t *testing.T, d job.Driver, owner string, timeout time.Duration) *job.Job {
	t.Helper()
	j, err := d.Lease(context.Background(), job.LeaseParams{Owner: owner, Timeout: timeout})
	if err != nil {
		t.Fatalf("Lease(%s): %v", owner, err)
	}
	checkLeasedIsStored(t, d, j)
	return j
}

// checkLeasedIsStored fails t unless the job a Lease returned is the stored job, field for field:
// a driver that builds it from what it knew before the lease must not hand out anything stale.
func checkLeasedIsStored(t *testing.T, d job.Driver, leased *job.Job) {
	t.Helper()
	stored := get(t, d, leased.ID)
	if !sameJob(leased, stored) {
		t.Fatalf("Lease returned\n  %+v\nbut the store holds\n  %+v", *leased, *stored)
	}
}

// sameJob reports whether a and b are equal, their times compared as instants.
func sameJob(a, b *job.Job) bool {
	x, y := *a, *b
	for _, ts := range [][2]*time.Time{
		{&x.CreatedAt, &y.CreatedAt}, {&x.UpdatedAt, &y.UpdatedAt}, {&x.StartedAt, &y.StartedAt},
		{&x.FinishedAt, &y.FinishedAt}, {&x.HeartbeatAt, &y.HeartbeatAt}, {&x.LeaseExpiresAt, &y.LeaseExpiresAt},
	} {
		if !ts[0].Equal(*ts[1]) {
			return false
		}
		*ts[0], *ts[1] = time.Time{}, time.Time{}
	}
	return reflect.DeepEqual(x, y)
}

// awaitLease leases as owner until a job is due (an expiring lease), for up to 15 s.
func awaitLease(t *testing.T, d job.Driver, owner string, timeout time.Duration, what string) *job.Job {
	t.Helper()
	var got *job.Job
	waitFor(t, 15*time.Second, what, func() bool {
		l, err := d.Lease(context.Background(), job.LeaseParams{Owner: owner, Timeout: timeout})
		if errors.Is(err, job.ErrNoJob) {
			return false
		}
		if err != nil {
			t.Fatalf("Lease: %v", err)
		}
		checkLeasedIsStored(t, d, l)
		got = l
		return true
	})
	return got
}

func get(t *testing.T, d job.Driver, id int64) *job.Job {
	t.Helper()
	j, err := d.Get(context.Background(), job.GetParams{ID: id})
	if err != nil {
		t.Fatalf("Get(%d): %v", id, err)
	}
	return j
}

func testCreateGet(t *testing.T, d job.Driver) {
	ctx := context.Background()
	before := time.Now()
	j, err := d.Create(ctx, job.CreateParams{AppID: 7, WebhookID: 1095098195724595200, Partition: 11, FromMs: 1000, ToMs: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if j.ID <= 0 || j.AppID != 7 || j.WebhookID != 1095098195724595200 || j.Partition != 11 || j.FromMs != 1000 || j.ToMs != 2000 {
		t.Fatalf("created job has wrong fields: %+v", j)
	}
	if j.State != job.StateOpen || j.Checkpoint != job.NoCheckpoint || j.FencingToken != 0 || j.LeaseOwner != "" || j.FirstUndeliveredMs != nil {
		t.Fatalf("new job not OPEN/empty: %+v", j)
	}
	if j.CreatedAt.IsZero() || !j.UpdatedAt.Equal(j.CreatedAt) || !j.StartedAt.IsZero() || !j.FinishedAt.IsZero() || !j.HeartbeatAt.IsZero() {
		t.Fatalf("new job times wrong: %+v", j)
	}
	if d := j.CreatedAt.Sub(before); d < -time.Minute || d > time.Minute {
		t.Fatalf("CreatedAt %v is far from now %v (store clock skewed?)", j.CreatedAt, before)
	}
	if j.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreatedAt not UTC: %v", j.CreatedAt)
	}
	g := get(t, d, j.ID)
	if !g.CreatedAt.Equal(j.CreatedAt) || g.WebhookID != j.WebhookID || g.State != job.StateOpen {
		t.Fatalf("Get = %+v, want %+v", g, j)
	}
	if g2, err := d.Get(ctx, job.GetParams{ID: j.ID, AppID: 7}); err != nil || g2.ID != j.ID {
		t.Fatalf("Get with own app: %v %v", g2, err)
	}
	_, err = d.Get(ctx, job.GetParams{ID: j.ID, AppID: 8})
	wantErr(t, "Get with another app", err, job.ErrNotFound)
	_, err = d.Get(ctx, job.GetParams{ID: j.ID + 1000})
	wantErr(t, "Get of a missing job", err, job.ErrNotFound)
}

func testInvalidParams(t *testing.T, d job.Driver) {
	ctx := context.Background()
	_, err := d.Create(ctx, job.CreateParams{AppID: 1, WebhookID: 2, FromMs: 5, ToMs: 5})
	wantErr(t, "Create with from == to", err, job.ErrInvalidParams)
	_, err = d.Create(ctx, job.CreateParams{FromMs: 1, ToMs: 5})
	wantErr(t, "Create without ids", err, job.ErrInvalidParams)
	_, err = d.Lease(ctx, job.LeaseParams{})
	wantErr(t, "Lease without owner", err, job.ErrInvalidParams)
	err = d.Heartbeat(ctx, job.HeartbeatParams{ID: 1})
	wantErr(t, "Heartbeat without token", err, job.ErrInvalidParams)
	err = d.Release(ctx, job.ReleaseParams{ID: 1})
	wantErr(t, "Release without token", err, job.ErrInvalidParams)
	err = d.Release(ctx, job.ReleaseParams{FencingToken: 1})
	wantErr(t, "Release without id", err, job.ErrInvalidParams)
	err = d.Release(ctx, job.ReleaseParams{ID: 1, FencingToken: 1, Progress: &job.Progress{Checkpoint: -2}})
	wantErr(t, "Release with checkpoint -2", err, job.ErrInvalidParams)
	_, err = d.List(ctx, job.ListParams{Limit: -1})
	wantErr(t, "List with negative limit", err, job.ErrInvalidParams)
}

func testOneActivePerWebhook(t *testing.T, d job.Driver) {
	ctx := context.Background()
	p := job.CreateParams{AppID: 1, WebhookID: 42, FromMs: 1, ToMs: 2}
	first, err := d.Create(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Create(ctx, p)
	wantErr(t, "second Create while OPEN", err, job.ErrActiveJobExists)
	if _, err := d.Create(ctx, job.CreateParams{AppID: 1, WebhookID: 43, FromMs: 1, ToMs: 2}); err != nil {
		t.Fatalf("Create for another webhook: %v", err)
	}
	// Still refused while STARTED and ONGOING.
	l := mustLease(t, d, "w", time.Minute)
	if l.ID != first.ID {
		t.Fatalf("leased %d, want %d", l.ID, first.ID)
	}
	_, err = d.Create(ctx, p)
	wantErr(t, "Create while STARTED", err, job.ErrActiveJobExists)
	if err := d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateOngoing}); err != nil {
		t.Fatal(err)
	}
	_, err = d.Create(ctx, p)
	wantErr(t, "Create while ONGOING", err, job.ErrActiveJobExists)
	if err := d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateCompleted}); err != nil {
		t.Fatal(err)
	}
	second, err := d.Create(ctx, p)
	if err != nil {
		t.Fatalf("Create after COMPLETED: %v", err)
	}
	if _, err := d.Cancel(ctx, job.CancelParams{ID: second.ID}); err != nil {
		t.Fatal(err)
	}
	third, err := d.Create(ctx, p)
	if err != nil {
		t.Fatalf("Create after CANCELED: %v", err)
	}
	l = mustLease(t, d, "w", time.Minute) // webhook 43's job, older
	for l.ID != third.ID {
		l = mustLease(t, d, "w", time.Minute)
	}
	if err := d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateIncomplete, Reason: "gave up"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Create(ctx, p); err != nil {
		t.Fatalf("Create after INCOMPLETE: %v", err)
	}
	res, err := d.List(ctx, job.ListParams{WebhookID: 42})
	if err != nil {
		t.Fatal(err)
	}
	active := 0
	for _, j := range res.Jobs {
		if j.State.Active() {
			active++
		}
	}
	if len(res.Jobs) != 4 || active != 1 {
		t.Fatalf("webhook 42 has %d jobs, %d active; want 4 and 1", len(res.Jobs), active)
	}
}

func testConcurrentCreateSameWebhook(t *testing.T, d job.Driver) {
	const n = 8
	var ok, dup atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := d.Create(context.Background(), job.CreateParams{AppID: 1, WebhookID: 99, FromMs: 1, ToMs: 2})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, job.ErrActiveJobExists):
				dup.Add(1)
			default:
				t.Errorf("Create: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || dup.Load() != n-1 {
		t.Fatalf("%d creates succeeded and %d were refused; want 1 and %d", ok.Load(), dup.Load(), n-1)
	}
}

func testLifecycle(t *testing.T, d job.Driver) {
	ctx := context.Background()
	c := create(t, d, 1)
	l := mustLease(t, d, "worker-a", time.Minute)
	if l.ID != c.ID || l.State != job.StateStarted || l.FencingToken != 1 || l.LeaseOwner != "worker-a" {
		t.Fatalf("leased %+v", l)
	}
	if l.StartedAt.IsZero() || l.HeartbeatAt.IsZero() || l.StartedAt.Before(c.CreatedAt) || l.LeaseTimeout != time.Minute {
		t.Fatalf("lease times wrong: %+v", l)
	}
	if got := l.LeaseExpiresAt.Sub(l.HeartbeatAt); got != time.Minute {
		t.Fatalf("lease expires %v after the heartbeat, want 1m", got)
	}
	if _, err := d.Lease(ctx, job.LeaseParams{Owner: "worker-b"}); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("second Lease: %v, want ErrNoJob", err)
	}
	fu := int64(1_700_000_000_123)
	pr := &job.Progress{Checkpoint: 100, Counters: job.Counters{Read: 10, Delivered: 8, DuplicatesDropped: 1, Failed: 1, Unreadable: 2}, FirstUndeliveredMs: &fu}
	if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID, FencingToken: l.FencingToken, Progress: pr}); err != nil {
		t.Fatal(err)
	}
	g := get(t, d, l.ID)
	if g.Checkpoint != 100 || g.Counters != pr.Counters || g.FirstUndeliveredMs == nil || *g.FirstUndeliveredMs != fu {
		t.Fatalf("progress not stored: %+v", g)
	}
	if g.HeartbeatAt.Before(l.HeartbeatAt) || g.State != job.StateStarted {
		t.Fatalf("heartbeat not stored: %+v", g)
	}
	if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID, FencingToken: l.FencingToken}); err != nil {
		t.Fatal(err)
	}
	if g2 := get(t, d, l.ID); g2.Checkpoint != 100 || g2.Counters != pr.Counters {
		t.Fatalf("heartbeat without progress changed the progress: %+v", g2)
	}
	beforeOngoing := get(t, d, l.ID)
	if err := d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateOngoing}); err != nil {
		t.Fatal(err)
	}
	// ONGOING is not a renewal: the lease ends when the last heartbeat said.
	if g := get(t, d, l.ID); g.State != job.StateOngoing || !g.LeaseExpiresAt.Equal(beforeOngoing.LeaseExpiresAt) || !g.HeartbeatAt.Equal(beforeOngoing.HeartbeatAt) {
		t.Fatalf("ONGOING: %+v; before it %+v", g, beforeOngoing)
	}
	final := &job.Progress{Checkpoint: 500, Counters: job.Counters{Read: 50, Delivered: 50}}
	if err := d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateCompleted, Progress: final}); err != nil {
		t.Fatal(err)
	}
	g = get(t, d, l.ID)
	if g.State != job.StateCompleted || g.FinishedAt.IsZero() || g.FinishedAt.Before(g.StartedAt) || g.Checkpoint != 500 || g.Counters != final.Counters || g.FirstUndeliveredMs != nil {
		t.Fatalf("completed job: %+v", g)
	}
	// The lease ended with the job.
	wantErr(t, "Heartbeat after COMPLETED", d.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID, FencingToken: l.FencingToken}), job.ErrLeaseLost)
	wantErr(t, "INCOMPLETE after COMPLETED", d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateIncomplete, Reason: "x"}), job.ErrInvalidTransition)
	if _, err := d.Lease(ctx, job.LeaseParams{Owner: "worker-b", Timeout: time.Millisecond}); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("Lease after COMPLETED: %v, want ErrNoJob", err)
	}
	// INCOMPLETE straight from STARTED, with its reason.
	c2 := create(t, d, 1)
	l2 := mustLease(t, d, "worker-a", time.Minute)
	if l2.ID != c2.ID {
		t.Fatalf("leased %d, want %d", l2.ID, c2.ID)
	}
	if err := d.Transition(ctx, job.TransitionParams{ID: l2.ID, FencingToken: l2.FencingToken, To: job.StateIncomplete, Reason: "webhook returned 410"}); err != nil {
		t.Fatal(err)
	}
	if g := get(t, d, l2.ID); g.State != job.StateIncomplete || g.Reason != "webhook returned 410" || g.FinishedAt.IsZero() {
		t.Fatalf("incomplete job: %+v", g)
	}
	_, err := d.Get(ctx, job.GetParams{ID: 0})
	wantErr(t, "Get(0)", err, job.ErrNotFound)
}

func testInvalidTransitions(t *testing.T, d job.Driver) {
	ctx := context.Background()
	create(t, d, 1)
	l := mustLease(t, d, "w", time.Minute)
	tr := func(to job.State, reason string) error {
		return d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: to, Reason: reason})
	}
	wantErr(t, "STARTED → COMPLETED", tr(job.StateCompleted, ""), job.ErrInvalidTransition)
	for _, to := range []job.State{job.StateOpen, job.StateStarted, job.StateCanceled, 0, 77} {
		wantErr(t, "Transition to "+to.String(), tr(to, "r"), job.ErrInvalidParams)
	}
	wantErr(t, "INCOMPLETE without reason", tr(job.StateIncomplete, ""), job.ErrInvalidParams)
	if err := tr(job.StateOngoing, ""); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "ONGOING → ONGOING", tr(job.StateOngoing, ""), job.ErrInvalidTransition)
	if g := get(t, d, l.ID); g.State != job.StateOngoing {
		t.Fatalf("state %s after refused transitions, want ONGOING", g.State)
	}
	// Unit check of the table.
	for _, from := range job.AllStates {
		for _, to := range job.AllStates {
			want := (from == job.StateStarted && (to == job.StateOngoing || to == job.StateIncomplete)) ||
				(from == job.StateOngoing && (to == job.StateCompleted || to == job.StateIncomplete))
			if got := job.CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	err := d.Transition(ctx, job.TransitionParams{ID: l.ID + 1000, FencingToken: 1, To: job.StateOngoing})
	wantErr(t, "Transition of a missing job", err, job.ErrNotFound)
}

func testFencing(t *testing.T, d job.Driver) {
	ctx := context.Background()
	create(t, d, 1)
	l := mustLease(t, d, "w", time.Minute)
	stale := l.FencingToken + 1
	err := d.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID, FencingToken: stale, Progress: &job.Progress{Checkpoint: 9}})
	wantErr(t, "Heartbeat with a wrong token", err, job.ErrLeaseLost)
	err = d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: stale, To: job.StateOngoing})
	wantErr(t, "Transition with a wrong token", err, job.ErrLeaseLost)
	if g := get(t, d, l.ID); g.Checkpoint != job.NoCheckpoint || g.State != job.StateStarted {
		t.Fatalf("a fenced-off write changed the job: %+v", g)
	}
	err = d.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID + 1000, FencingToken: 1})
	wantErr(t, "Heartbeat of a missing job", err, job.ErrNotFound)
}

func testCancel(t *testing.T, d job.Driver) {
	ctx := context.Background()
	open := create(t, d, 5)
	c, err := d.Cancel(ctx, job.CancelParams{ID: open.ID, AppID: 5, Reason: "by user"})
	if err != nil {
		t.Fatal(err)
	}
	if c.State != job.StateCanceled || c.Reason != "by user" || c.FinishedAt.IsZero() {
		t.Fatalf("canceled job: %+v", c)
	}
	if _, err := d.Lease(ctx, job.LeaseParams{Owner: "w"}); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("Lease with only a CANCELED job: %v, want ErrNoJob", err)
	}
	again, err := d.Cancel(ctx, job.CancelParams{ID: open.ID})
	if err != nil || again.State != job.StateCanceled || again.Reason != "by user" {
		t.Fatalf("second Cancel: %+v %v; want the CANCELED job unchanged", again, err)
	}

	// Canceling a held job fences its holder off.
	held := create(t, d, 5)
	l := mustLease(t, d, "w", time.Minute)
	if l.ID != held.ID {
		t.Fatalf("leased %d, want %d", l.ID, held.ID)
	}
	_, err = d.Cancel(ctx, job.CancelParams{ID: held.ID, AppID: 6})
	wantErr(t, "Cancel with another app", err, job.ErrNotFound)
	c, err = d.Cancel(ctx, job.CancelParams{ID: held.ID, AppID: 5})
	if err != nil {
		t.Fatal(err)
	}
	if c.FencingToken <= l.FencingToken {
		t.Fatalf("Cancel did not bump the fencing token: %d", c.FencingToken)
	}
	wantErr(t, "holder's Heartbeat after Cancel", d.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID, FencingToken: l.FencingToken}), job.ErrLeaseLost)
	wantErr(t, "holder's Transition after Cancel", d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateOngoing}), job.ErrLeaseLost)
	if g := get(t, d, l.ID); g.State != job.StateCanceled {
		t.Fatalf("state %s, want CANCELED", g.State)
	}

	// Finished jobs cannot be canceled.
	create(t, d, 5)
	l = mustLease(t, d, "w", time.Minute)
	if err := d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateIncomplete, Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	_, err = d.Cancel(ctx, job.CancelParams{ID: l.ID})
	wantErr(t, "Cancel of an INCOMPLETE job", err, job.ErrInvalidTransition)
	_, err = d.Cancel(ctx, job.CancelParams{ID: l.ID + 1000})
	wantErr(t, "Cancel of a missing job", err, job.ErrNotFound)
}

func testList(t *testing.T, d job.Driver) {
	ctx := context.Background()
	// 2 apps × 3 webhooks × 3 jobs each: one COMPLETED, one CANCELED, one OPEN, made in three
	// rounds so that each lease takes the job just created.
	all := map[int64]*job.Job{}
	for round := range 3 {
		for _, app := range []int64{100, 200} {
			for w := range int64(3) {
				j, err := d.Create(ctx, job.CreateParams{AppID: app, WebhookID: app*10 + w, FromMs: 1, ToMs: 2})
				if err != nil {
					t.Fatal(err)
				}
				switch round {
				case 0:
					l := mustLease(t, d, "w", time.Minute)
					if l.ID != j.ID {
						t.Fatalf("leased %d, want %d", l.ID, j.ID)
					}
					for _, to := range []job.State{job.StateOngoing, job.StateCompleted} {
						if err := d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: to}); err != nil {
							t.Fatal(err)
						}
					}
				case 1:
					if _, err := d.Cancel(ctx, job.CancelParams{ID: j.ID}); err != nil {
						t.Fatal(err)
					}
				}
				all[j.ID] = get(t, d, j.ID)
			}
		}
	}
	check := func(name string, p job.ListParams, match func(*job.Job) bool) {
		t.Helper()
		var want []int64
		for id, j := range all {
			if match(j) {
				want = append(want, id)
			}
		}
		slices.Sort(want)
		slices.Reverse(want)
		var got []int64
		pages := 0
		for {
			res, err := d.List(ctx, p)
			if err != nil {
				t.Fatalf("%s: List: %v", name, err)
			}
			pages++
			for _, j := range res.Jobs {
				got = append(got, j.ID)
				if !match(j) {
					t.Fatalf("%s: job %+v does not match the filter", name, j)
				}
				if j.State != all[j.ID].State || j.WebhookID != all[j.ID].WebhookID {
					t.Fatalf("%s: listed %+v differs from Get %+v", name, j, all[j.ID])
				}
			}
			if limit := cmp.Or(p.Limit, job.DefaultListLimit); len(res.Jobs) > limit {
				t.Fatalf("%s: page of %d > limit %d", name, len(res.Jobs), limit)
			}
			if res.NextBeforeID == 0 {
				break
			}
			if pages > 100 {
				t.Fatalf("%s: paging does not end", name)
			}
			p.BeforeID = res.NextBeforeID
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: listed %v, want %v (newest first)", name, got, want)
		}
		if p.Limit > 0 && len(want) > p.Limit && pages < 2 {
			t.Fatalf("%s: %d jobs came in one page of limit %d", name, len(want), p.Limit)
		}
	}
	check("all", job.ListParams{Limit: 4}, func(*job.Job) bool { return true })
	check("all default limit", job.ListParams{}, func(*job.Job) bool { return true })
	check("app", job.ListParams{AppID: 200, Limit: 2}, func(j *job.Job) bool { return j.AppID == 200 })
	check("webhook", job.ListParams{WebhookID: 101, Limit: 1}, func(j *job.Job) bool { return j.WebhookID == 101 })
	check("state", job.ListParams{States: []job.State{job.StateOpen}, Limit: 4}, func(j *job.Job) bool { return j.State == job.StateOpen })
	check("states", job.ListParams{States: []job.State{job.StateCompleted, job.StateCanceled}, Limit: 5},
		func(j *job.Job) bool { return j.State == job.StateCompleted || j.State == job.StateCanceled })
	check("app+state", job.ListParams{AppID: 100, States: []job.State{job.StateCanceled}, Limit: 2},
		func(j *job.Job) bool { return j.AppID == 100 && j.State == job.StateCanceled })
	check("active+rare states", job.ListParams{States: []job.State{job.StateOpen, job.StateCanceled}, Limit: 2},
		func(j *job.Job) bool { return j.State == job.StateOpen || j.State == job.StateCanceled })
	check("app+active+rare states", job.ListParams{AppID: 100, States: []job.State{job.StateStarted, job.StateOpen, job.StateIncomplete, job.StateCanceled}, Limit: 1},
		func(j *job.Job) bool {
			return j.AppID == 100 && j.State != job.StateCompleted && j.State != job.StateOngoing
		})
	check("app+webhook mismatch", job.ListParams{AppID: 100, WebhookID: 2001, Limit: 2}, func(*job.Job) bool { return false })
	check("webhook+state", job.ListParams{WebhookID: 2002, States: []job.State{job.StateOpen, job.StateCompleted}, Limit: 1},
		func(j *job.Job) bool {
			return j.WebhookID == 2002 && (j.State == job.StateOpen || j.State == job.StateCompleted)
		})
}

func testContextCanceled(t *testing.T, d job.Driver) {
	j := create(t, d, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]error{}
	_, calls["Create"] = d.Create(ctx, job.CreateParams{AppID: 1, WebhookID: 5, FromMs: 1, ToMs: 2})
	_, calls["Lease"] = d.Lease(ctx, job.LeaseParams{Owner: "w"})
	calls["Heartbeat"] = d.Heartbeat(ctx, job.HeartbeatParams{ID: j.ID, FencingToken: 1})
	calls["Transition"] = d.Transition(ctx, job.TransitionParams{ID: j.ID, FencingToken: 1, To: job.StateOngoing})
	calls["Release"] = d.Release(ctx, job.ReleaseParams{ID: j.ID, FencingToken: 1})
	_, calls["Get"] = d.Get(ctx, job.GetParams{ID: j.ID})
	_, calls["List"] = d.List(ctx, job.ListParams{})
	_, calls["Cancel"] = d.Cancel(ctx, job.CancelParams{ID: j.ID})
	calls["Ping"] = d.Ping(ctx)
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", name, err)
		}
	}
	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	if _, err := d.Lease(dctx, job.LeaseParams{Owner: "w"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lease past its deadline: %v, want context.DeadlineExceeded", err)
	}
	// Nothing happened to the job.
	if g := get(t, d, j.ID); g.State != job.StateOpen || g.FencingToken != 0 {
		t.Fatalf("job changed by canceled calls: %+v", g)
	}
	if mysqldb.IsRetryable(calls["Lease"]) {
		t.Fatalf("a canceled call is classified retryable")
	}
}

func testLeaseOrder(t *testing.T, d job.Driver) {
	ctx := context.Background()
	var ids []int64
	for range 5 {
		ids = append(ids, create(t, d, 1).ID)
	}
	for i, want := range ids {
		l := mustLease(t, d, fmt.Sprintf("w%d", i), time.Minute)
		if l.ID != want {
			t.Fatalf("lease %d took job %d, want the oldest OPEN job %d", i, l.ID, want)
		}
	}
	if _, err := d.Lease(ctx, job.LeaseParams{Owner: "w"}); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("Lease with every job held: %v, want ErrNoJob", err)
	}
}

// waitFor checks cond until it is true or the deadline passes (testwait.For).
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, within, what, cond)
}

func testTakeover(t *testing.T, d job.Driver) {
	ctx := context.Background()
	// Short, but long enough that a loaded CI machine does not let a live lease lapse between two
	// consecutive calls.
	const timeout = 2 * time.Second
	c := create(t, d, 1)
	a := mustLease(t, d, "worker-a", timeout)
	if a.ID != c.ID {
		t.Fatalf("leased %d, want %d", a.ID, c.ID)
	}
	if err := d.Transition(ctx, job.TransitionParams{ID: a.ID, FencingToken: a.FencingToken, To: job.StateOngoing}); err != nil {
		t.Fatal(err)
	}
	pr := &job.Progress{Checkpoint: 4242, Counters: job.Counters{Read: 30, Delivered: 28, DuplicatesDropped: 2}}
	if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: a.ID, FencingToken: a.FencingToken, Progress: pr}); err != nil {
		t.Fatal(err)
	}
	last := get(t, d, a.ID).HeartbeatAt
	// Worker A now stops heartbeating. While its lease lasts, nobody else gets the job...
	if _, err := d.Lease(ctx, job.LeaseParams{Owner: "worker-b", Timeout: timeout}); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("Lease during a live lease: %v, want ErrNoJob", err)
	}
	// ...and once it expired, worker B takes it over where A left off.
	b := awaitLease(t, d, "worker-b", timeout, "worker-b to take the job over")
	if b.ID != a.ID || b.LeaseOwner != "worker-b" || b.FencingToken != a.FencingToken+1 {
		t.Fatalf("takeover lease: %+v (A had token %d)", b, a.FencingToken)
	}
	if b.State != job.StateOngoing || b.Checkpoint != 4242 || b.Counters != pr.Counters {
		t.Fatalf("taken-over job lost its state or checkpoint: %+v", b)
	}
	if gap := b.HeartbeatAt.Sub(last); gap < timeout {
		t.Fatalf("taken over %v after the last heartbeat, before the %v timeout", gap, timeout)
	}
	// A comes back: everything it tries is refused.
	wantErr(t, "old holder's Heartbeat", d.Heartbeat(ctx, job.HeartbeatParams{ID: a.ID, FencingToken: a.FencingToken, Progress: &job.Progress{Checkpoint: 9999}}), job.ErrLeaseLost)
	wantErr(t, "old holder's Transition", d.Transition(ctx, job.TransitionParams{ID: a.ID, FencingToken: a.FencingToken, To: job.StateCompleted}), job.ErrLeaseLost)
	wantErr(t, "old holder's INCOMPLETE", d.Transition(ctx, job.TransitionParams{ID: a.ID, FencingToken: a.FencingToken, To: job.StateIncomplete, Reason: "x"}), job.ErrLeaseLost)
	// B resumes from the checkpoint and finishes.
	if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: b.ID, FencingToken: b.FencingToken, Progress: &job.Progress{Checkpoint: 5000, Counters: job.Counters{Read: 40, Delivered: 38, DuplicatesDropped: 2}}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Transition(ctx, job.TransitionParams{ID: b.ID, FencingToken: b.FencingToken, To: job.StateCompleted}); err != nil {
		t.Fatal(err)
	}
	if g := get(t, d, b.ID); g.State != job.StateCompleted || g.Checkpoint != 5000 || g.LeaseOwner != "worker-b" {
		t.Fatalf("final job: %+v", g)
	}
	// A holder that keeps heartbeating keeps its job past the timeout.
	create(t, d, 1)
	h := mustLease(t, d, "worker-h", timeout)
	start := time.Now()
	for time.Since(start) < timeout+timeout/2 {
		if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: h.ID, FencingToken: h.FencingToken}); err != nil {
			t.Fatalf("live holder's Heartbeat: %v", err)
		}
		if _, err := d.Lease(ctx, job.LeaseParams{Owner: "worker-x", Timeout: timeout}); !errors.Is(err, job.ErrNoJob) {
			t.Fatalf("Lease of a heartbeating holder's job: %v, want ErrNoJob", err)
		}
		time.Sleep(timeout / 10) // the heartbeat interval, not synchronisation
	}
}

// A worker that releases its job (graceful shutdown) hands it, with its checkpoint and counters,
// to the next Lease at once, without waiting for the lease to time out, and is fenced off.
func testRelease(t *testing.T, d job.Driver) {
	ctx := context.Background()
	// A lease far longer than the test: only the release can make the job leasable.
	const long = time.Hour
	c := create(t, d, 1)
	a := mustLease(t, d, "worker-a", long)
	if a.ID != c.ID {
		t.Fatalf("leased %d, want %d", a.ID, c.ID)
	}
	if err := d.Transition(ctx, job.TransitionParams{ID: a.ID, FencingToken: a.FencingToken, To: job.StateOngoing}); err != nil {
		t.Fatal(err)
	}
	if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: a.ID, FencingToken: a.FencingToken, Progress: &job.Progress{Checkpoint: 10, Counters: job.Counters{Read: 1, Delivered: 1}}}); err != nil {
		t.Fatal(err)
	}
	beforeRelease := get(t, d, a.ID)
	fu := int64(1_700_000_000_321)
	pr := &job.Progress{Checkpoint: 777, Counters: job.Counters{Read: 70, Delivered: 66, DuplicatesDropped: 3, Failed: 1}, FirstUndeliveredMs: &fu}
	if err := d.Release(ctx, job.ReleaseParams{ID: a.ID, FencingToken: a.FencingToken, Progress: pr}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	r := get(t, d, a.ID)
	if r.State != job.StateOngoing || r.Checkpoint != 777 || r.Counters != pr.Counters || r.FirstUndeliveredMs == nil || *r.FirstUndeliveredMs != fu {
		t.Fatalf("released job lost its state or progress: %+v", r)
	}
	if r.FencingToken != a.FencingToken+1 {
		t.Fatalf("Release left the fencing token at %d, want %d", r.FencingToken, a.FencingToken+1)
	}
	if r.LeaseExpiresAt.IsZero() || !r.LeaseExpiresAt.Before(beforeRelease.LeaseExpiresAt) || r.LeaseExpiresAt.Before(beforeRelease.HeartbeatAt) || r.UpdatedAt.Before(beforeRelease.UpdatedAt) {
		t.Fatalf("released lease expires %v (was %v, last heartbeat %v); want the store's now", r.LeaseExpiresAt, beforeRelease.LeaseExpiresAt, beforeRelease.HeartbeatAt)
	}
	// The releaser can change nothing any more, even before anyone else leases the job.
	wantErr(t, "releaser's Heartbeat", d.Heartbeat(ctx, job.HeartbeatParams{ID: a.ID, FencingToken: a.FencingToken, Progress: &job.Progress{Checkpoint: 9999}}), job.ErrLeaseLost)
	wantErr(t, "releaser's Transition", d.Transition(ctx, job.TransitionParams{ID: a.ID, FencingToken: a.FencingToken, To: job.StateCompleted}), job.ErrLeaseLost)
	wantErr(t, "releaser's INCOMPLETE", d.Transition(ctx, job.TransitionParams{ID: a.ID, FencingToken: a.FencingToken, To: job.StateIncomplete, Reason: "x"}), job.ErrLeaseLost)
	wantErr(t, "releaser's second Release", d.Release(ctx, job.ReleaseParams{ID: a.ID, FencingToken: a.FencingToken, Progress: &job.Progress{Checkpoint: 9999}}), job.ErrLeaseLost)
	if g := get(t, d, a.ID); g.State != job.StateOngoing || g.Checkpoint != 777 || g.FencingToken != r.FencingToken || !g.LeaseExpiresAt.Equal(r.LeaseExpiresAt) {
		t.Fatalf("a fenced-off write changed the released job: %+v", g)
	}
	// Another worker takes it over at once (the hour-long lease has not run out) and resumes.
	b, err := d.Lease(ctx, job.LeaseParams{Owner: "worker-b", Timeout: long})
	if err != nil {
		t.Fatalf("Lease right after Release: %v, want the released job", err)
	}
	if b.ID != a.ID || b.LeaseOwner != "worker-b" || b.FencingToken != a.FencingToken+2 {
		t.Fatalf("lease after release: %+v (A had token %d)", b, a.FencingToken)
	}
	if b.State != job.StateOngoing || b.Checkpoint != 777 || b.Counters != pr.Counters || b.FirstUndeliveredMs == nil || *b.FirstUndeliveredMs != fu {
		t.Fatalf("job taken over after release lost its state or progress: %+v", b)
	}
	if !b.StartedAt.Equal(a.StartedAt) || b.LeaseTimeout != long || b.LeaseExpiresAt.Sub(b.HeartbeatAt) != long {
		t.Fatalf("lease after release: started %v (was %v), timeout %v, expiry %v after the heartbeat", b.StartedAt, a.StartedAt, b.LeaseTimeout, b.LeaseExpiresAt.Sub(b.HeartbeatAt))
	}
	if _, err := d.Lease(ctx, job.LeaseParams{Owner: "worker-c", Timeout: long}); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("second Lease after Release: %v, want ErrNoJob", err)
	}
	// The old holder's stale token is refused and does not disturb the new holder.
	wantErr(t, "stale Release after the takeover", d.Release(ctx, job.ReleaseParams{ID: a.ID, FencingToken: a.FencingToken}), job.ErrLeaseLost)
	wantErr(t, "stale Heartbeat after the takeover", d.Heartbeat(ctx, job.HeartbeatParams{ID: a.ID, FencingToken: a.FencingToken}), job.ErrLeaseLost)
	if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: b.ID, FencingToken: b.FencingToken}); err != nil {
		t.Fatalf("new holder's Heartbeat: %v", err)
	}
	if err := d.Transition(ctx, job.TransitionParams{ID: b.ID, FencingToken: b.FencingToken, To: job.StateCompleted, Progress: &job.Progress{Checkpoint: 900, Counters: job.Counters{Read: 90, Delivered: 86, DuplicatesDropped: 3, Failed: 1}}}); err != nil {
		t.Fatal(err)
	}
	if g := get(t, d, b.ID); g.State != job.StateCompleted || g.Checkpoint != 900 || g.LeaseOwner != "worker-b" {
		t.Fatalf("final job: %+v", g)
	}

	// A STARTED job released without progress keeps its checkpoint and stays STARTED.
	c2 := create(t, d, 1)
	s := mustLease(t, d, "worker-s", long)
	if s.ID != c2.ID {
		t.Fatalf("leased %d, want %d", s.ID, c2.ID)
	}
	if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: s.ID, FencingToken: s.FencingToken, Progress: &job.Progress{Checkpoint: 5, Counters: job.Counters{Read: 5}}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Release(ctx, job.ReleaseParams{ID: s.ID, FencingToken: s.FencingToken}); err != nil {
		t.Fatalf("Release without progress: %v", err)
	}
	s2 := mustLease(t, d, "worker-t", long)
	if s2.ID != s.ID || s2.State != job.StateStarted || s2.Checkpoint != 5 || s2.Counters != (job.Counters{Read: 5}) || s2.FencingToken != s.FencingToken+2 {
		t.Fatalf("lease after a release without progress: %+v", s2)
	}
}

// Release refuses what Heartbeat refuses, changing nothing.
func testReleaseRefused(t *testing.T, d job.Driver) {
	ctx := context.Background()
	pr := &job.Progress{Checkpoint: 9999, Counters: job.Counters{Read: 9999}}
	// An OPEN job was never leased: any token is stale.
	o := create(t, d, 1)
	wantErr(t, "Release of an OPEN job", d.Release(ctx, job.ReleaseParams{ID: o.ID, FencingToken: 1, Progress: pr}), job.ErrLeaseLost)
	if g := get(t, d, o.ID); g.State != job.StateOpen || g.FencingToken != 0 || g.Checkpoint != job.NoCheckpoint || !g.LeaseExpiresAt.IsZero() {
		t.Fatalf("a refused Release changed the OPEN job: %+v", g)
	}
	l := mustLease(t, d, "w", time.Minute)
	if l.ID != o.ID {
		t.Fatalf("leased %d, want %d", l.ID, o.ID)
	}
	// A wrong token on a held job.
	wantErr(t, "Release with a wrong token", d.Release(ctx, job.ReleaseParams{ID: l.ID, FencingToken: l.FencingToken + 1, Progress: pr}), job.ErrLeaseLost)
	if g := get(t, d, l.ID); g.State != job.StateStarted || g.FencingToken != l.FencingToken || g.Checkpoint != job.NoCheckpoint || !g.LeaseExpiresAt.Equal(l.LeaseExpiresAt) {
		t.Fatalf("a fenced-off Release changed the job: %+v", g)
	}
	// A COMPLETED job, by its last holder: the lease ended with the job.
	for _, to := range []job.State{job.StateOngoing, job.StateCompleted} {
		if err := d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: to}); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, "Release of a COMPLETED job", d.Release(ctx, job.ReleaseParams{ID: l.ID, FencingToken: l.FencingToken, Progress: pr}), job.ErrLeaseLost)
	// An INCOMPLETE one likewise.
	create(t, d, 1)
	i := mustLease(t, d, "w", time.Minute)
	if err := d.Transition(ctx, job.TransitionParams{ID: i.ID, FencingToken: i.FencingToken, To: job.StateIncomplete, Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Release of an INCOMPLETE job", d.Release(ctx, job.ReleaseParams{ID: i.ID, FencingToken: i.FencingToken, Progress: pr}), job.ErrLeaseLost)
	// A canceled one: Cancel moved the token on.
	create(t, d, 1)
	k := mustLease(t, d, "w", time.Minute)
	if _, err := d.Cancel(ctx, job.CancelParams{ID: k.ID}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Release of a CANCELED job", d.Release(ctx, job.ReleaseParams{ID: k.ID, FencingToken: k.FencingToken, Progress: pr}), job.ErrLeaseLost)
	for _, id := range []int64{l.ID, i.ID, k.ID} {
		g := get(t, d, id)
		if !g.State.Terminal() || g.Checkpoint == 9999 || g.Counters.Read == 9999 {
			t.Fatalf("a refused Release changed the finished job: %+v", g)
		}
	}
	if _, err := d.Lease(ctx, job.LeaseParams{Owner: "w", Timeout: time.Minute}); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("Lease after refused releases: %v, want ErrNoJob", err)
	}
	wantErr(t, "Release of a missing job", d.Release(ctx, job.ReleaseParams{ID: k.ID + 1000, FencingToken: 1}), job.ErrNotFound)
}

// A released job queues as an expired lease: behind the jobs that were leasable before it.
func testReleasedLeaseOrder(t *testing.T, d job.Driver) {
	ctx := context.Background()
	first := create(t, d, 1)
	a := mustLease(t, d, "worker-a", time.Hour)
	if a.ID != first.ID {
		t.Fatalf("leased %d, want %d", a.ID, first.ID)
	}
	waiting := create(t, d, 1) // OPEN since before the release
	if err := d.Release(ctx, job.ReleaseParams{ID: a.ID, FencingToken: a.FencingToken}); err != nil {
		t.Fatal(err)
	}
	later := create(t, d, 1) // OPEN since after the release
	for i, want := range []int64{waiting.ID, first.ID, later.ID} {
		l := mustLease(t, d, fmt.Sprintf("w%d", i), time.Hour)
		if l.ID != want {
			t.Fatalf("lease %d took job %d, want %d (OPEN %d, released %d, OPEN %d)", i, l.ID, want, waiting.ID, first.ID, later.ID)
		}
	}
}

func testClose(t *testing.T, d job.Driver) {
	if err := d.Ping(context.Background()); err != nil {
		t.Fatalf("Ping of an open store: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := d.Get(context.Background(), job.GetParams{ID: 1})
	wantErr(t, "Get after Close", err, job.ErrClosed)
	wantErr(t, "Ping after Close", d.Ping(context.Background()), job.ErrClosed)
}

func testCount(t *testing.T, d job.Driver) {
	ctx := context.Background()
	count := func(app int64) map[job.State]int64 {
		t.Helper()
		c, err := d.Count(ctx, job.CountParams{AppID: app})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := count(0); len(c) != 0 {
		t.Fatalf("Count of an empty store = %v", c)
	}
	for i := 0; i < 3; i++ {
		create(t, d, 7)
	}
	create(t, d, 8)
	leased := mustLease(t, d, "w", time.Hour) // the oldest: app 7's first
	if err := d.Transition(ctx, job.TransitionParams{ID: leased.ID, FencingToken: leased.FencingToken, To: job.StateOngoing}); err != nil {
		t.Fatal(err)
	}
	canceled := create(t, d, 7)
	if _, err := d.Cancel(ctx, job.CancelParams{ID: canceled.ID}); err != nil {
		t.Fatal(err)
	}
	if c, want := count(0), map[job.State]int64{job.StateOpen: 3, job.StateOngoing: 1, job.StateCanceled: 1}; !reflect.DeepEqual(c, want) {
		t.Fatalf("Count = %v, want %v", c, want)
	}
	if c, want := count(7), map[job.State]int64{job.StateOpen: 2, job.StateOngoing: 1, job.StateCanceled: 1}; !reflect.DeepEqual(c, want) {
		t.Fatalf("Count of app 7 = %v, want %v", c, want)
	}
}

// testTopicProgress: a job read from several topics checkpoints each topic's offset and counters;
// a heartbeat, a release and a transition store them, the next holder gets them with the lease,
// progress without topics leaves them as they are, and an invalid list is refused.
func testTopicProgress(t *testing.T, d job.Driver) {
	ctx := context.Background()
	c := create(t, d, 1)
	if c.Topics != nil {
		t.Fatalf("a new job has topic progress %v", c.Topics)
	}
	a := mustLease(t, d, "worker-a", time.Minute)
	topics := []job.TopicProgress{
		{Topic: "delivery_log", Checkpoint: 120, Read: 10, Delivered: 9, DuplicatesDropped: 1},
		{Topic: "dc2.delivery_log", Checkpoint: 7, Read: 5, Delivered: 2, DuplicatesDropped: 3},
	}
	pr := &job.Progress{Checkpoint: 120, Counters: job.Counters{Read: 15, Delivered: 11, DuplicatesDropped: 4}, Topics: topics}
	if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: a.ID, FencingToken: a.FencingToken, Progress: pr}); err != nil {
		t.Fatal(err)
	}
	sameTopics := func(what string, got, want []job.TopicProgress) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: topic progress %v, want %v", what, got, want)
		}
	}
	sameTopics("after a heartbeat", get(t, d, a.ID).Topics, topics)
	// Progress without topics (a one-topic worker) leaves the recorded ones.
	if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: a.ID, FencingToken: a.FencingToken, Progress: &job.Progress{Checkpoint: 120, Counters: pr.Counters}}); err != nil {
		t.Fatal(err)
	}
	sameTopics("after a heartbeat without topics", get(t, d, a.ID).Topics, topics)
	// Released and leased again: the next holder resumes each topic where it was.
	topics[1].Checkpoint, topics[1].Read = 9, 6
	if err := d.Release(ctx, job.ReleaseParams{ID: a.ID, FencingToken: a.FencingToken, Progress: &job.Progress{Checkpoint: 120, Counters: pr.Counters, Topics: topics}}); err != nil {
		t.Fatal(err)
	}
	b := mustLease(t, d, "worker-b", time.Minute)
	if b.ID != a.ID {
		t.Fatalf("leased %d, want the released %d", b.ID, a.ID)
	}
	sameTopics("leased after a release", b.Topics, topics)
	if b.TopicCheckpoint(1, "dc2.delivery_log") != 9 || b.TopicCheckpoint(0, "delivery_log") != 120 {
		t.Fatalf("TopicCheckpoint of the leased job: %d, %d", b.TopicCheckpoint(0, "delivery_log"), b.TopicCheckpoint(1, "dc2.delivery_log"))
	}
	// Invalid lists are refused and change nothing.
	for _, bad := range [][]job.TopicProgress{
		{{Topic: "a"}, {Topic: "a"}},
		{{Topic: "", Checkpoint: 1}},
		{{Topic: "a", Checkpoint: -5}},
	} {
		err := d.Heartbeat(ctx, job.HeartbeatParams{ID: b.ID, FencingToken: b.FencingToken, Progress: &job.Progress{Checkpoint: 1, Topics: bad}})
		wantErr(t, fmt.Sprintf("heartbeat with topics %v", bad), err, job.ErrInvalidParams)
	}
	sameTopics("after refused heartbeats", get(t, d, b.ID).Topics, topics)
	topics[0].Checkpoint, topics[1].Checkpoint = 200, 30
	if err := d.Transition(ctx, job.TransitionParams{ID: b.ID, FencingToken: b.FencingToken, To: job.StateIncomplete, Reason: "x", Progress: &job.Progress{Checkpoint: 200, Topics: topics}}); err != nil {
		t.Fatal(err)
	}
	sameTopics("finished", get(t, d, b.ID).Topics, topics)
}

// testIDs: job ids grow with time but do not count jobs: a replay requester must not learn how
// many jobs others made between two of its own.
func testIDs(t *testing.T, d job.Driver) {
	before := time.Now().Add(-time.Second)
	var prev *job.Job
	steps := 0
	for i := 0; i < 20; i++ {
		j := create(t, d, 5)
		if got := job.IDTime(j.ID); got.Before(before) || got.After(time.Now().Add(time.Second)) {
			t.Fatalf("job id %d carries the time %v, not its creation's", j.ID, got)
		}
		if prev != nil {
			if j.ID == prev.ID {
				t.Fatalf("two jobs got the id %d", j.ID)
			}
			if j.ID-prev.ID == 1 {
				steps++
			}
		}
		prev = j
	}
	if steps > 2 {
		t.Fatalf("%d of 19 consecutive jobs got consecutive ids: the ids count jobs", steps)
	}
}

// testLeasePerAppCap: with MaxPerApp, an app that has its share held is skipped, so another
// app's later job is leased before it; a job that ends frees a place.
func testLeasePerAppCap(t *testing.T, d job.Driver) {
	ctx := context.Background()
	a1, a2, a3 := create(t, d, 71), create(t, d, 71), create(t, d, 71)
	b1 := create(t, d, 72)
	lease := func(owner string) (*job.Job, error) {
		return d.Lease(ctx, job.LeaseParams{Owner: owner, Timeout: time.Minute, MaxPerApp: 2})
	}
	for i, want := range []int64{a1.ID, a2.ID, b1.ID} {
		l, err := lease(fmt.Sprintf("w%d", i))
		if err != nil || l.ID != want {
			t.Fatalf("lease %d: %+v, %v; want job %d (app 71 may hold two)", i, l, err, want)
		}
	}
	if l, err := lease("w3"); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("lease with app 71 at its cap: %+v, %v; want ErrNoJob", l, err)
	}
	// A job of app 71 ends, its status event still to deliver under its lease: it no longer
	// counts (the event is short, or waits without a worker), so the third job is leasable.
	l1 := get(t, d, a1.ID)
	if err := d.Transition(ctx, job.TransitionParams{ID: a1.ID, FencingToken: l1.FencingToken, To: job.StateIncomplete, Reason: "x", StatusPending: true}); err != nil {
		t.Fatal(err)
	}
	if l, err := lease("w4"); err != nil || l.ID != a3.ID {
		t.Fatalf("lease once a job of app 71 ended: %+v, %v; want job %d", l, err, a3.ID)
	}
	// Canceled, a job does not count either: app 71 holds a2 and a3 again, at its cap, until one ends.
	if l, err := lease("w5"); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("lease with app 71 at its cap again: %+v, %v; want ErrNoJob", l, err)
	}
	a4 := create(t, d, 71)
	if _, err := d.Cancel(ctx, job.CancelParams{ID: a2.ID, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if l, err := lease("w6"); err != nil || l.ID != a4.ID {
		t.Fatalf("lease once a job of app 71 was canceled: %+v, %v; want job %d", l, err, a4.ID)
	}
	if _, err := d.Lease(ctx, job.LeaseParams{Owner: "w", MaxPerApp: -1}); !errors.Is(err, job.ErrInvalidParams) {
		t.Fatalf("negative MaxPerApp: %v", err)
	}
}

// A worker that finishes a job with its status event pending keeps the lease until it settles
// the event; a holder that dies meanwhile loses the finished job to the next Lease once the lease
// expires, as a running job, and the new holder settles it.
func testStatusEvent(t *testing.T, d job.Driver) {
	ctx := context.Background()
	const timeout = 2 * time.Second
	c := create(t, d, 1)
	a := mustLease(t, d, "worker-a", timeout)
	if a.ID != c.ID || a.StatusEvent != job.StatusEventNone {
		t.Fatalf("leased %+v", a)
	}
	wantErr(t, "StatusPending to ONGOING", d.Transition(ctx, job.TransitionParams{ID: a.ID, FencingToken: a.FencingToken, To: job.StateOngoing, StatusPending: true}), job.ErrInvalidParams)
	if err := d.Transition(ctx, job.TransitionParams{ID: a.ID, FencingToken: a.FencingToken, To: job.StateOngoing}); err != nil {
		t.Fatal(err)
	}
	final := &job.Progress{Checkpoint: 700, Counters: job.Counters{Read: 70, Delivered: 60, DuplicatesDropped: 10, Redelivered: 4}}
	if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: a.ID, FencingToken: a.FencingToken, Progress: final}); err != nil {
		t.Fatal(err)
	}
	if g := get(t, d, a.ID); g.Counters != final.Counters {
		t.Fatalf("counters after a heartbeat: %+v, want %+v", g.Counters, final.Counters)
	}
	if err := d.Transition(ctx, job.TransitionParams{ID: a.ID, FencingToken: a.FencingToken, To: job.StateCompleted, Reason: "done", Progress: final, StatusPending: true}); err != nil {
		t.Fatal(err)
	}
	g := get(t, d, a.ID)
	if g.State != job.StateCompleted || g.StatusEvent != job.StatusEventPending || g.FinishedAt.IsZero() || g.Reason != "done" || !g.UnderLease() {
		t.Fatalf("finished with its status event pending: %+v", g)
	}
	if g.LeaseExpiresAt.Sub(g.HeartbeatAt) != timeout || g.HeartbeatAt.Before(g.FinishedAt) {
		t.Fatalf("the lease of a pending status event: heartbeat %v, expiry %v, finished %v; want expiry = heartbeat + %v", g.HeartbeatAt, g.LeaseExpiresAt, g.FinishedAt, timeout)
	}
	if n, err := d.Count(ctx, job.CountParams{}); err != nil || n[job.StateCompleted] != 1 {
		t.Fatalf("Count: %v, %v", n, err)
	}
	// The holder renews the lease while it delivers the event; progress is final.
	if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: a.ID, FencingToken: a.FencingToken}); err != nil {
		t.Fatalf("heartbeat of a pending status event: %v", err)
	}
	wantErr(t, "progress after the end", d.Heartbeat(ctx, job.HeartbeatParams{ID: a.ID, FencingToken: a.FencingToken, Progress: &job.Progress{Checkpoint: 9}}), job.ErrLeaseLost)
	if _, err := d.Lease(ctx, job.LeaseParams{Owner: "worker-b", Timeout: timeout}); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("Lease while the status event's lease lasts: %v, want ErrNoJob", err)
	}
	// Worker A dies: B leases the finished job once the lease expired.
	b := awaitLease(t, d, "worker-b", timeout, "worker-b to lease the pending status event")
	if b.ID != a.ID || b.State != job.StateCompleted || b.StatusEvent != job.StatusEventPending || b.FencingToken != a.FencingToken+1 ||
		b.Reason != "done" || b.Counters != final.Counters || !b.FinishedAt.Equal(g.FinishedAt) {
		t.Fatalf("leased for its status event: %+v", b)
	}
	wantErr(t, "old holder's SettleStatus", d.SettleStatus(ctx, job.SettleStatusParams{ID: a.ID, FencingToken: a.FencingToken, Outcome: job.StatusEventDelivered}), job.ErrLeaseLost)
	wantErr(t, "old holder's Heartbeat", d.Heartbeat(ctx, job.HeartbeatParams{ID: a.ID, FencingToken: a.FencingToken}), job.ErrLeaseLost)
	// B shuts down: the next Lease takes it at once.
	if err := d.Release(ctx, job.ReleaseParams{ID: b.ID, FencingToken: b.FencingToken}); err != nil {
		t.Fatalf("Release of a pending status event: %v", err)
	}
	cl := mustLease(t, d, "worker-c", timeout)
	if cl.ID != a.ID || cl.FencingToken != b.FencingToken+2 || cl.StatusEvent != job.StatusEventPending {
		t.Fatalf("leased after the release: %+v", cl)
	}
	wantErr(t, "SettleStatus to none", d.SettleStatus(ctx, job.SettleStatusParams{ID: cl.ID, FencingToken: cl.FencingToken}), job.ErrInvalidParams)
	if err := d.SettleStatus(ctx, job.SettleStatusParams{ID: cl.ID, FencingToken: cl.FencingToken, Outcome: job.StatusEventDelivered}); err != nil {
		t.Fatal(err)
	}
	g = get(t, d, a.ID)
	if g.StatusEvent != job.StatusEventDelivered || !g.LeaseExpiresAt.IsZero() || g.UnderLease() || g.State != job.StateCompleted {
		t.Fatalf("after SettleStatus: %+v", g)
	}
	wantErr(t, "second SettleStatus", d.SettleStatus(ctx, job.SettleStatusParams{ID: cl.ID, FencingToken: cl.FencingToken, Outcome: job.StatusEventGivenUp}), job.ErrInvalidTransition)
	wantErr(t, "Heartbeat after SettleStatus", d.Heartbeat(ctx, job.HeartbeatParams{ID: cl.ID, FencingToken: cl.FencingToken}), job.ErrLeaseLost)
	wantErr(t, "SettleStatus of a missing job", d.SettleStatus(ctx, job.SettleStatusParams{ID: 1 << 60, FencingToken: 1, Outcome: job.StatusEventDelivered}), job.ErrNotFound)
	time.Sleep(timeout + timeout/4) // past any lease the job had: it must stay out of the queue
	if l, err := d.Lease(ctx, job.LeaseParams{Owner: "worker-d", Timeout: timeout}); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("Lease after the status event settled: %+v, %v; want ErrNoJob", l, err)
	}

	// Given up, from INCOMPLETE.
	create(t, d, 1)
	e := mustLease(t, d, "worker-e", timeout)
	if err := d.Transition(ctx, job.TransitionParams{ID: e.ID, FencingToken: e.FencingToken, To: job.StateIncomplete, Reason: "x", StatusPending: true}); err != nil {
		t.Fatal(err)
	}
	if err := d.SettleStatus(ctx, job.SettleStatusParams{ID: e.ID, FencingToken: e.FencingToken, Outcome: job.StatusEventGivenUp}); err != nil {
		t.Fatal(err)
	}
	if g := get(t, d, e.ID); g.StatusEvent != job.StatusEventGivenUp || g.State != job.StateIncomplete {
		t.Fatalf("given up: %+v", g)
	}
	// Finished without one: no status event is owed, the lease ends with the job.
	create(t, d, 1)
	f := mustLease(t, d, "worker-f", timeout)
	if err := d.Transition(ctx, job.TransitionParams{ID: f.ID, FencingToken: f.FencingToken, To: job.StateIncomplete, Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	if g := get(t, d, f.ID); g.StatusEvent != job.StatusEventNone || !g.LeaseExpiresAt.IsZero() || g.UnderLease() {
		t.Fatalf("finished without a status event: %+v", g)
	}
	wantErr(t, "SettleStatus of a job that owes none", d.SettleStatus(ctx, job.SettleStatusParams{ID: f.ID, FencingToken: f.FencingToken, Outcome: job.StatusEventDelivered}), job.ErrInvalidTransition)
	// Canceled: none either.
	k := create(t, d, 1)
	ck, err := d.Cancel(ctx, job.CancelParams{ID: k.ID, Reason: "no"})
	if err != nil || ck.StatusEvent != job.StatusEventNone {
		t.Fatalf("Cancel: %+v, %v", ck, err)
	}
}
