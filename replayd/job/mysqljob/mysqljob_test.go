package mysqljob_test

import (
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/jobtest"
	"github.com/replay/replay/replayd/job/mysqljob"
	"github.com/replay/replay/replayd/mysqldb/mysqldbtest"
)

func freshDatabase(t testing.TB) string { return mysqldbtest.Database(t) }

func open(t testing.TB, opts mysqljob.Options) *mysqljob.Driver {
	t.Helper()
	if opts.DSN == "" {
		opts.DSN = freshDatabase(t)
	}
	d, err := mysqljob.Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("mysqljob.Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestConformance(t *testing.T) {
	jobtest.Exercise(t, func(t *testing.T) job.Driver { return open(t, mysqljob.Options{MaxOpenConns: 4}) })
}

// 16 workers over 4 connection pools ("instances") drain 5,000 jobs.
func TestContention(t *testing.T) {
	dsn := freshDatabase(t)
	var instances []job.Driver
	for range 4 {
		instances = append(instances, open(t, mysqljob.Options{DSN: dsn, MaxOpenConns: 4}))
	}
	jobtest.ExerciseContention(t, jobtest.ContentionConfig{
		Instances: instances, Workers: 16, Jobs: 5000, Timeout: 100 * time.Second,
	})
}

func TestMigrations(t *testing.T) {
	dsn := freshDatabase(t)
	ctx := t.Context()
	applied, err := mysqljob.Migrate(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := mysqljob.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || len(applied) != len(ms) || applied[0] != 1 {
		t.Fatalf("applied %v of %d migrations", applied, len(ms))
	}
	again, err := mysqljob.Migrate(ctx, dsn)
	if err != nil || len(again) != 0 {
		t.Fatalf("second Migrate applied %v, %v; want nothing", again, err)
	}
	// Open on a migrated database changes nothing; the store works.
	d := open(t, mysqljob.Options{DSN: dsn})
	var n int
	if err := d.DB().QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != len(ms) {
		t.Fatalf("schema_migrations has %d rows (%v), want %d", n, err, len(ms))
	}
	// The lease's statements are served by the index they are written for, with and without the
	// cap, on a table with rows and statistics (the plan of an empty table says nothing): the
	// read of the head and the fallback by a range of idx_replay_jobs_lease in its order, the take
	// of one candidate by its primary key.
	if _, err := d.DB().Exec(`INSERT INTO replay_jobs (id, app_id, webhook_id, kafka_partition, from_ms, to_ms, state, created_at, updated_at)
  WITH RECURSIVE n (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 44)
  SELECT 1 + a.i * 45 + b.i, 1 + b.i % 7, 1 + a.i * 45 + b.i, 0, 1, 2, 'OPEN', NOW(6), NOW(6) FROM n AS a, n AS b`); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB().Exec("ANALYZE TABLE replay_jobs"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		which, key string
		types      []string
		args       []any
	}{
		{"candidates", "idx_replay_jobs_lease", []string{"range"}, nil},
		{"range", "idx_replay_jobs_lease", []string{"range"}, []any{"w", 1, 1}},
		{"by-id", "PRIMARY", []string{"const", "range"}, []any{"w", 1, 1, 100, 0, "2026-03-02 09:00:00"}},
	} {
		for _, perApp := range []bool{false, true} {
			args := c.args
			if perApp {
				args = append(append([]any(nil), args...), 3)
			}
			for _, row := range explain(t, d.DB(), mysqljob.LeaseStatement(c.which, perApp), args...) {
				// The derived table of held jobs per app (the cap) groups a range of the lease index.
				if row["table"] == "replay_jobs" && row["select_type"] != "DERIVED" &&
					(row["key"] != c.key || !slices.Contains(c.types, row["type"]) || strings.Contains(row["extra"], "filesort")) {
					t.Fatalf("lease statement %s plan (per-app cap %v): %v", c.which, perApp, row)
				}
			}
		}
	}
}

// explain returns the rows of EXPLAIN query, each column by its lower-case name.
func explain(t *testing.T, db *sql.DB, query string, args ...any) []map[string]string {
	t.Helper()
	rows, err := db.Query("EXPLAIN "+query, args...)
	if err != nil {
		t.Fatalf("EXPLAIN %s: %v", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []map[string]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := map[string]string{}
		for i, c := range cols {
			row[strings.ToLower(c)] = vals[i].String
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Count and List by state read only the indexes that hold the states asked for (0005): on a table
// of 2,000 COMPLETED jobs and a few others, listing or counting the others reads no COMPLETED row.
func TestStateQueriesReadTheirIndexes(t *testing.T) {
	d := open(t, mysqljob.Options{})
	if _, err := d.DB().Exec(`INSERT INTO replay_jobs (id, app_id, webhook_id, kafka_partition, from_ms, to_ms, state, created_at, updated_at)
  WITH RECURSIVE n (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 49)
  SELECT 1 + i, 1 + i % 7, 1 + i, 0, 1, 2, CASE WHEN i % 500 = 1 THEN 'CANCELED' WHEN i % 500 = 2 THEN 'OPEN' WHEN i % 500 = 3 THEN 'INCOMPLETE' ELSE 'COMPLETED' END,
    NOW(6), NOW(6) FROM (SELECT a.i * 50 + b.i AS i FROM n AS a, n AS b) AS m WHERE i < 2000`); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB().Exec("ANALYZE TABLE replay_jobs"); err != nil {
		t.Fatal(err)
	}
	small := map[string]bool{"uq_replay_jobs_active_webhook": true, "idx_replay_jobs_rare_state": true}
	check := func(what, query string, args ...any) {
		t.Helper()
		for _, row := range explain(t, d.DB(), query, args...) {
			if row["table"] == "replay_jobs" && (!small[row["key"]] || row["type"] == "ALL" || row["type"] == "index") {
				t.Errorf("%s reads more than its index: %v", what, row)
			}
		}
	}
	for _, q := range mysqljob.CountStatements {
		check("Count", q)
	}
	for _, states := range [][]job.State{
		{job.StateOpen}, {job.StateCanceled}, {job.StateOpen, job.StateStarted, job.StateCanceled, job.StateIncomplete},
	} {
		for _, p := range []job.ListParams{{States: states, Limit: 10}, {States: states, AppID: 3, BeforeID: 1500, Limit: 10}} {
			q, args := mysqljob.ListQuery(p)
			check(fmt.Sprintf("List %+v", p), q, args...)
		}
	}
	c, err := d.Count(t.Context(), job.CountParams{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[job.State]int64{job.StateCompleted: 1988, job.StateCanceled: 4, job.StateOpen: 4, job.StateIncomplete: 4}
	if !maps.Equal(c, want) {
		t.Fatalf("Count = %v, want %v", c, want)
	}
}

// Several instances starting at once apply each migration once (GET_LOCK).
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn := freshDatabase(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			d, err := mysqljob.Open(t.Context(), mysqljob.Options{DSN: dsn})
			if err == nil {
				d.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestOptionsValidateReportsEverything(t *testing.T) {
	o := mysqljob.Options{LeaseTimeout: -1, MaxOpenConns: -2, ConnMaxLifetime: -3}
	err := o.Validate()
	for _, want := range []string{"DSN", "LeaseTimeout", "MaxOpenConns", "ConnMaxLifetime"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Validate() = %v, want it to mention %s", err, want)
		}
	}
	o = mysqljob.Options{DSN: "root@tcp(127.0.0.1:3306)/"}
	if err := o.EnsureDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "database") {
		t.Fatalf("a DSN without a database: %v", err)
	}
	o = mysqljob.Options{DSN: "root@tcp(127.0.0.1:3306)/replay"}
	if err := o.EnsureDefaults().Validate(); err != nil || o.LeaseTimeout != 30*time.Second || o.MaxOpenConns != 16 {
		t.Fatalf("defaults: %+v %v", o, err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	d := open(t, mysqljob.Options{})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// A retryable failure of Create's read of the new row runs the whole Create again; the retry must
// not find the first attempt's row and report ErrActiveJobExists for the job it is creating.
func TestCreateRetriedReadDoesNotConflictWithItself(t *testing.T) {
	d := open(t, mysqljob.Options{})
	calls := 0
	mysqljob.SetCreateReadHook(d, func() error {
		calls++
		if calls == 1 {
			return &mysql.MySQLError{Number: 1205, Message: "Lock wait timeout exceeded (injected)"}
		}
		return nil
	})
	ctx := t.Context()
	j, err := d.Create(ctx, job.CreateParams{AppID: 1, WebhookID: 77, FromMs: 1, ToMs: 2})
	if err != nil {
		t.Fatalf("Create with one retryable read failure: %v", err)
	}
	if calls != 2 || j.State != job.StateOpen || j.WebhookID != 77 {
		t.Fatalf("Create = %+v after %d attempts; want an OPEN job after 2", j, calls)
	}
	res, err := d.List(ctx, job.ListParams{WebhookID: 77})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Jobs) != 1 || res.Jobs[0].ID != j.ID {
		t.Fatalf("webhook 77 has %d jobs (%+v), want only %d", len(res.Jobs), res.Jobs, j.ID)
	}
	// A read that keeps failing leaves no job behind: the failed Create did not create.
	mysqljob.SetCreateReadHook(d, func() error { return errors.New("read failed (injected)") })
	if _, err := d.Create(ctx, job.CreateParams{AppID: 1, WebhookID: 78, FromMs: 1, ToMs: 2}); err == nil {
		t.Fatal("Create succeeded although its read failed")
	}
	mysqljob.SetCreateReadHook(d, nil)
	if res, err := d.List(ctx, job.ListParams{WebhookID: 78}); err != nil || len(res.Jobs) != 0 {
		t.Fatalf("a failed Create left %v behind (%v)", res, err)
	}
	if _, err := d.Create(ctx, job.CreateParams{AppID: 1, WebhookID: 78, FromMs: 1, ToMs: 2}); err != nil {
		t.Fatalf("Create after a failed Create: %v", err)
	}
}

// Every connection of the store runs at READ COMMITTED (the lease's range UPDATE deadlocked with
// heartbeats and transitions at InnoDB's default REPEATABLE READ).
func TestSessionsAreReadCommitted(t *testing.T) {
	d := open(t, mysqljob.Options{MaxOpenConns: 2})
	for range 3 { // more than one connection of the pool
		var level string
		err := d.DB().QueryRow("SELECT @@SESSION.tx_isolation").Scan(&level)
		if err != nil { // MySQL 8 names it transaction_isolation only
			err = d.DB().QueryRow("SELECT @@SESSION.transaction_isolation").Scan(&level)
		}
		if err != nil || level != "READ-COMMITTED" {
			t.Fatalf("session isolation %q, %v; want READ-COMMITTED", level, err)
		}
	}
}

// Lease hands out candidates read from the head of the queue earlier; instances that took them
// since, or a Cancel, make them stale. A stale candidate is never leased, and a lease does not
// give up while a job is due.
func TestLeaseSkipsCandidatesTakenSinceTheyWereRead(t *testing.T) {
	ctx := t.Context()
	dsn := freshDatabase(t)
	a := open(t, mysqljob.Options{DSN: dsn})
	b := open(t, mysqljob.Options{DSN: dsn})
	var ids []int64
	for i := range 5 {
		j, err := a.Create(ctx, job.CreateParams{AppID: 1, WebhookID: int64(100 + i), FromMs: 1, ToMs: 2})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	lease := func(d *mysqljob.Driver, owner string) (*job.Job, error) {
		return d.Lease(ctx, job.LeaseParams{Owner: owner, Timeout: time.Hour})
	}
	// A reads all five as candidates and takes the first.
	if l, err := lease(a, "a"); err != nil || l.ID != ids[0] {
		t.Fatalf("A's first lease: %+v, %v; want job %d", l, err, ids[0])
	}
	// B, reading the head itself, takes the next two; the fourth is canceled.
	for _, want := range ids[1:3] {
		if l, err := lease(b, "b"); err != nil || l.ID != want {
			t.Fatalf("B's lease: %+v, %v; want job %d", l, err, want)
		}
	}
	if _, err := a.Cancel(ctx, job.CancelParams{ID: ids[3], Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	// A's next candidates are B's two and the canceled one: it takes the fifth.
	if l, err := lease(a, "a"); err != nil || l.ID != ids[4] || l.LeaseOwner != "a" {
		t.Fatalf("A's second lease: %+v, %v; want job %d", l, err, ids[4])
	}
	if _, err := lease(a, "a"); !errors.Is(err, job.ErrNoJob) {
		t.Fatalf("A's lease with every job held or canceled: %v, want ErrNoJob", err)
	}
	// Nobody stole from anybody: each job has the holder that leased it, token 1.
	for i, want := range []string{"a", "b", "b", "", "a"} {
		g, err := a.Get(ctx, job.GetParams{ID: ids[i]})
		if err != nil {
			t.Fatal(err)
		}
		if g.LeaseOwner != want || (want != "" && g.FencingToken != 1) {
			t.Fatalf("job %d: owner %q token %d, want %q token 1", g.ID, g.LeaseOwner, g.FencingToken, want)
		}
	}
	// A job created after A's last read is found: A reads the head again.
	late, err := b.Create(ctx, job.CreateParams{AppID: 1, WebhookID: 200, FromMs: 1, ToMs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := lease(a, "a"); err != nil || l.ID != late.ID {
		t.Fatalf("A's lease after a new job: %+v, %v; want job %d", l, err, late.ID)
	}
}

// The hot statements run prepared; a connection the server dropped (restart, wait_timeout, KILL)
// takes its prepared statements with it, and the next call prepares them again on another.
func TestPreparedStatementsOutliveTheirConnections(t *testing.T) {
	ctx := t.Context()
	dsn := freshDatabase(t)
	d := open(t, mysqljob.Options{DSN: dsn, MaxOpenConns: 2})
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for i := range 3 {
		if _, err := d.Create(ctx, job.CreateParams{AppID: 1, WebhookID: int64(10 + i), FromMs: 1, ToMs: 2}); err != nil {
			t.Fatal(err)
		}
		l, err := d.Lease(ctx, job.LeaseParams{Owner: "w", Timeout: time.Hour})
		if err != nil {
			t.Fatalf("lease %d: %v", i, err)
		}
		if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID, FencingToken: l.FencingToken, Progress: &job.Progress{Checkpoint: int64(i)}}); err != nil {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
		if g, err := d.Get(ctx, job.GetParams{ID: l.ID}); err != nil || g.Checkpoint != int64(i) {
			t.Fatalf("get %d: %+v, %v", i, g, err)
		}
		// Kill every connection of the store's pool.
		rows, err := admin.QueryContext(ctx, "SELECT id FROM information_schema.PROCESSLIST WHERE db = DATABASE() AND id <> CONNECTION_ID()")
		if err != nil {
			t.Fatal(err)
		}
		var victims []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			victims = append(victims, id)
		}
		rows.Close()
		if len(victims) == 0 {
			t.Fatal("the store has no connection to kill")
		}
		for _, id := range victims {
			if _, err := admin.ExecContext(ctx, "KILL ?", id); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// When other instances take every candidate of both reads of the head before this one can, Lease
// falls back to the range UPDATE instead of reporting ErrNoJob while a job is due.
func TestLeaseFallsBackWhenOthersTakeEveryCandidate(t *testing.T) {
	ctx := t.Context()
	dsn := freshDatabase(t)
	a := open(t, mysqljob.Options{DSN: dsn})
	b := open(t, mysqljob.Options{DSN: dsn})
	webhook := int64(0)
	create := func() *job.Job {
		t.Helper()
		webhook++
		j, err := b.Create(ctx, job.CreateParams{AppID: 1, WebhookID: webhook, FromMs: 1, ToMs: 2})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	create()
	create()
	reads := 0
	var last *job.Job
	mysqljob.SetCandidatesHook(a, func(ids []int64) {
		reads++
		// B takes what A just read before A can; after the second read a job is due again.
		for range ids {
			if _, err := b.Lease(ctx, job.LeaseParams{Owner: "b", Timeout: time.Hour}); err != nil {
				t.Errorf("B's lease in read %d: %v", reads, err)
			}
		}
		if reads == 1 {
			create()
		} else {
			last = create()
		}
	})
	l, err := a.Lease(ctx, job.LeaseParams{Owner: "a", Timeout: time.Hour})
	if err != nil || l.ID != last.ID || l.LeaseOwner != "a" {
		t.Fatalf("A's lease: %+v, %v; want job %v after %d reads", l, err, last, reads)
	}
	if reads != 2 {
		t.Fatalf("A read the head %d times, want 2", reads)
	}
}

// A lease takes a candidate as it was read with the head of the queue, without reading the row
// back; a write between the read and the take, leaving the job due, makes the take miss, and the
// job is leased from a fresh read instead: never a stale copy (its checkpoint, counters, token).
func TestLeaseTakesNoCandidateWrittenSinceItWasRead(t *testing.T) {
	for _, c := range []struct {
		name  string
		write func(t *testing.T, d *mysqljob.Driver, other *mysqljob.Driver, id int64)
	}{
		{"released by its holder", func(t *testing.T, d, other *mysqljob.Driver, id int64) {
			// Another instance leases the job and releases it with progress: due again at once.
			l, err := other.Lease(t.Context(), job.LeaseParams{Owner: "other", Timeout: time.Hour})
			if err != nil || l.ID != id {
				t.Fatalf("other's lease: %+v, %v; want job %d", l, err, id)
			}
			if err := other.Release(t.Context(), job.ReleaseParams{ID: id, FencingToken: l.FencingToken, Progress: &job.Progress{Checkpoint: 77, Counters: job.Counters{Read: 7, Delivered: 7}}}); err != nil {
				t.Fatal(err)
			}
		}},
		{"written in the microsecond of the read row", func(t *testing.T, d, _ *mysqljob.Driver, id int64) {
			// A write whose NOW(6) equals the copy's updated_at: only row_version tells.
			if _, err := d.DB().Exec("UPDATE replay_jobs SET checkpoint = 77, row_version = row_version + 1 WHERE id = ?", id); err != nil {
				t.Fatal(err)
			}
		}},
		{"written by a build before row_version", func(t *testing.T, d, _ *mysqljob.Driver, id int64) {
			// Such a build sets updated_at and leaves row_version as it is.
			if _, err := d.DB().Exec("UPDATE replay_jobs SET checkpoint = 77, updated_at = updated_at + INTERVAL 1 MICROSECOND WHERE id = ?", id); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			dsn := freshDatabase(t)
			a := open(t, mysqljob.Options{DSN: dsn})
			b := open(t, mysqljob.Options{DSN: dsn})
			created, err := a.Create(ctx, job.CreateParams{AppID: 1, WebhookID: 5, FromMs: 1, ToMs: 2})
			if err != nil {
				t.Fatal(err)
			}
			reads := 0
			mysqljob.SetCandidatesHook(a, func(ids []int64) {
				if reads++; reads == 1 {
					if len(ids) != 1 || ids[0] != created.ID {
						t.Fatalf("first read of the head: %v, want [%d]", ids, created.ID)
					}
					c.write(t, a, b, created.ID)
				}
			})
			l, err := a.Lease(ctx, job.LeaseParams{Owner: "a", Timeout: time.Hour})
			if err != nil {
				t.Fatalf("lease: %v", err)
			}
			stored, err := a.Get(ctx, job.GetParams{ID: l.ID})
			if err != nil {
				t.Fatal(err)
			}
			if l.Checkpoint != 77 || l.FencingToken != stored.FencingToken || l.LeaseOwner != "a" || !l.UpdatedAt.Equal(stored.UpdatedAt) {
				t.Fatalf("leased %+v\nstored %+v", *l, *stored)
			}
			if reads != 2 {
				t.Fatalf("the head was read %d times, want 2 (the take of the first copy must miss)", reads)
			}
		})
	}
}

// Every write of the store moves row_version on, or a lease could take a stale copy of the row
// (TestLeaseTakesNoCandidateWrittenSinceItWasRead).
func TestEveryWriteMovesRowVersion(t *testing.T) {
	ctx := t.Context()
	d := open(t, mysqljob.Options{})
	version := func(id int64) int64 {
		t.Helper()
		var v int64
		if err := d.DB().QueryRow("SELECT row_version FROM replay_jobs WHERE id = ?", id).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	webhook := int64(0)
	leased := func() *job.Job {
		t.Helper()
		webhook++
		if _, err := d.Create(ctx, job.CreateParams{AppID: 1, WebhookID: webhook, FromMs: 1, ToMs: 2}); err != nil {
			t.Fatal(err)
		}
		l, err := d.Lease(ctx, job.LeaseParams{Owner: "w", Timeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if v := version(l.ID); v != 1 {
			t.Fatalf("row_version after the lease: %d, want 1", v)
		}
		return l
	}
	pr := &job.Progress{Checkpoint: 1}
	ongoing := func(l *job.Job) error {
		return d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateOngoing})
	}
	// Each case makes writes through the store after the lease (row_version 1); want counts them.
	for _, c := range []struct {
		name  string
		want  int64
		write func(l *job.Job) error
	}{
		{"heartbeat", 2, func(l *job.Job) error {
			return d.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID, FencingToken: l.FencingToken})
		}},
		{"heartbeat with progress", 2, func(l *job.Job) error {
			return d.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID, FencingToken: l.FencingToken, Progress: pr})
		}},
		{"ongoing", 2, ongoing},
		{"completed", 3, func(l *job.Job) error {
			return errors.Join(ongoing(l), d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateCompleted, Progress: pr}))
		}},
		{"incomplete, status event pending", 2, func(l *job.Job) error {
			return d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateIncomplete, Reason: "x", StatusPending: true})
		}},
		{"status event settled", 3, func(l *job.Job) error {
			return errors.Join(
				d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateIncomplete, Reason: "x", StatusPending: true}),
				d.SettleStatus(ctx, job.SettleStatusParams{ID: l.ID, FencingToken: l.FencingToken, Outcome: job.StatusEventDelivered}))
		}},
		{"cancel", 2, func(l *job.Job) error {
			_, err := d.Cancel(ctx, job.CancelParams{ID: l.ID, Reason: "test"})
			return err
		}},
		// Last: a released job is due again.
		{"release", 2, func(l *job.Job) error {
			return d.Release(ctx, job.ReleaseParams{ID: l.ID, FencingToken: l.FencingToken})
		}},
	} {
		l := leased()
		if err := c.write(l); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if v := version(l.ID); v != c.want {
			t.Fatalf("%s: row_version %d, want %d", c.name, v, c.want)
		}
	}
}

// A row of the head of the queue that does not decode fails the Lease that takes it, naming the
// job, as a Get of it does; the jobs after it are leased as ever.
func TestLeaseOfAnUndecodableRowFailsThatJobAlone(t *testing.T) {
	ctx := t.Context()
	d := open(t, mysqljob.Options{})
	var ids []int64
	for i := range 2 {
		j, err := d.Create(ctx, job.CreateParams{AppID: 1, WebhookID: int64(40 + i), FromMs: 1, ToMs: 2})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	if _, err := d.DB().Exec("UPDATE replay_jobs SET topic_progress = 'not json' WHERE id = ?", ids[0]); err != nil {
		t.Fatal(err)
	}
	_, getErr := d.Get(ctx, job.GetParams{ID: ids[0]})
	if getErr == nil {
		t.Fatal("Get of the undecodable job: no error")
	}
	_, err := d.Lease(ctx, job.LeaseParams{Owner: "w", Timeout: time.Hour})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(ids[0])) {
		t.Fatalf("lease of the undecodable job: %v; want an error naming job %d (Get says %v)", err, ids[0], getErr)
	}
	l, err := d.Lease(ctx, job.LeaseParams{Owner: "w", Timeout: time.Hour})
	if err != nil || l.ID != ids[1] {
		t.Fatalf("next lease: %+v, %v; want job %d", l, err, ids[1])
	}
}
