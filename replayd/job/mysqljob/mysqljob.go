// Package mysqljob is the production job store: job.Driver on MySQL 8 / MariaDB 10.6+ (InnoDB),
// shared by any number of replayd instances, each lease a conditional UPDATE of a job read from the head of the lease queue.
package mysqljob

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/mysqldb"
)

// Driver is the MySQL job store. Create it with Open; it is safe for concurrent use.
type Driver struct {
	*mysqldb.Store // DB, Do, Ping, Close
	db             *sql.DB
	opts           Options
	cands          candidates // the head of the lease queue, see Lease
	// testHookCreateRead, set by tests only (export_test.go) before the driver is used, runs in
	// Create between the INSERT and the read of the new row; its error stands for that read's.
	testHookCreateRead func() error
	// testHookCandidates, set by tests only, runs after each read of the lease queue's head with
	// the ids read.
	testHookCandidates func(ids []int64)
}

var _ job.Driver = (*Driver)(nil)

// Open connects to the database named by opts.DSN and, unless opts.SkipMigrations, applies pending
// schema migrations. It does not modify opts.
func Open(ctx context.Context, opts Options) (*Driver, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	st, err := migrations.OpenStore(ctx, opts.conn(), mysqldb.StoreOptions{
		Name: "mysqljob", Retry: opts.Retry, ErrClosed: job.ErrClosed, ErrUnavailable: job.ErrUnavailable, Bare: []error{job.ErrNoJob},
	})
	if err != nil {
		return nil, err
	}
	return &Driver{Store: st, db: st.DB(), opts: opts}, nil
}

const jobColumns = `id, app_id, webhook_id, kafka_partition, from_ms, to_ms, state, reason,
  created_at, updated_at, started_at, finished_at, lease_owner, fencing_token, heartbeat_at,
  lease_expires_at, lease_timeout_us, checkpoint, events_read, events_delivered,
  duplicates_dropped, events_failed, first_undelivered_ms, batches_unreadable, topic_progress,
  status_event, events_redelivered`

type scanner interface{ Scan(dest ...any) error }

// scanJob scans a row of jobColumns, then into extra the columns that follow them. A column
// whose value does not decode (a topic_progress, a state the code does not know) is an
// undecodableError, returned with the job as far as it was decoded.
func scanJob(s scanner, extra ...any) (*job.Job, error) {
	var (
		j                                     job.Job
		state                                 string
		started, finished, heartbeat, expires sql.NullTime
		timeoutUS                             int64
		firstUndelivered                      sql.NullInt64
		topics                                []byte
		statusEvent                           string
	)
	err := s.Scan(append([]any{&j.ID, &j.AppID, &j.WebhookID, &j.Partition, &j.FromMs, &j.ToMs, &state, &j.Reason,
		&j.CreatedAt, &j.UpdatedAt, &started, &finished, &j.LeaseOwner, &j.FencingToken, &heartbeat,
		&expires, &timeoutUS, &j.Checkpoint, &j.Counters.Read, &j.Counters.Delivered,
		&j.Counters.DuplicatesDropped, &j.Counters.Failed, &firstUndelivered, &j.Counters.Unreadable, &topics,
		&statusEvent, &j.Counters.Redelivered}, extra...)...)
	if err != nil {
		return nil, err
	}
	if j.Topics, err = job.DecodeTopics(topics); err != nil {
		return &j, undecodableError{fmt.Errorf("job %d: %w", j.ID, err)}
	}
	if j.State, err = job.ParseState(state); err != nil {
		return &j, undecodableError{err}
	}
	if j.StatusEvent, err = job.ParseStatusEvent(statusEvent); err != nil {
		return &j, undecodableError{fmt.Errorf("job %d: %w", j.ID, err)}
	}
	j.StartedAt, j.FinishedAt, j.HeartbeatAt, j.LeaseExpiresAt = started.Time, finished.Time, heartbeat.Time, expires.Time
	j.LeaseTimeout = time.Duration(timeoutUS) * time.Microsecond
	if firstUndelivered.Valid {
		v := firstUndelivered.Int64
		j.FirstUndeliveredMs = &v
	}
	return &j, nil
}

// undecodableError is a row scanJob read whole but could not decode.
type undecodableError struct{ error }

func (e undecodableError) Unwrap() error { return e.error }

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// prepared is the querier of the driver's hot reads: prepared statements (mysqldb.Store.QueryRow).
type prepared struct{ *mysqldb.Store }

func (p prepared) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return p.QueryRow(ctx, query, args...)
}

func getJob(ctx context.Context, q querier, id, appID int64) (*job.Job, error) {
	query := "SELECT " + jobColumns + " FROM replay_jobs WHERE id = ?"
	args := []any{id}
	if appID != 0 {
		query += " AND app_id = ?"
		args = append(args, appID)
	}
	j, err := scanJob(q.QueryRowContext(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("job %d: %w", id, job.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return j, nil
}

// activeStatesSQL is the SQL list of job.ActiveStates.
const activeStatesSQL = "('OPEN', 'STARTED', 'ONGOING')"

// Create implements job.Driver.
func (d *Driver) Create(ctx context.Context, p job.CreateParams) (*job.Job, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var j *job.Job
	err := d.Do(ctx, "create", func(ctx context.Context) error {
		// The INSERT and the read of the new row are one transaction: if the read fails (and the
		// whole is retried), the INSERT is rolled back with it, so a retry cannot trip over the
		// job it just made and report ErrActiveJobExists for it.
		tx, err := d.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck
		var id int64
		for try := 0; ; try++ {
			id = job.NewID(time.Now())
			_, err = tx.ExecContext(ctx, `INSERT INTO replay_jobs
  (id, app_id, webhook_id, kafka_partition, from_ms, to_ms, state, created_at, updated_at)
  VALUES (?, ?, ?, ?, ?, ?, 'OPEN', NOW(6), NOW(6))`, id, p.AppID, p.WebhookID, p.Partition, p.FromMs, p.ToMs)
			if err == nil {
				break
			}
			if mysqldb.IsDuplicateKey(err, "uq_replay_jobs_active_webhook") {
				return fmt.Errorf("webhook %d: %w", p.WebhookID, job.ErrActiveJobExists)
			}
			if !mysqldb.IsDuplicateKey(err, "PRIMARY") || try == 4 {
				return err
			}
			// The id is taken (once in four million in a millisecond): another.
		}
		if d.testHookCreateRead != nil {
			if err := d.testHookCreateRead(); err != nil {
				return err
			}
		}
		if j, err = getJob(ctx, tx, id, 0); err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		return nil, err
	}
	return j, nil
}

// A lease is a conditional primary-key UPDATE of a job read from the head of the lease queue
// beforehand: the jobs due first, in lease order, are read once with their rows (leaseCandidates,
// one range scan of idx_replay_jobs_lease) and handed to this driver's Lease calls one each, and
// each call takes its job with UPDATE … WHERE id = ? AND row_version = ? AND updated_at = ? AND
// lease_due_at <= NOW(6). lease_due_at is what makes the lease exclusive: a job another instance
// took since the read (or that was canceled) is no longer due, matches nothing, and the call goes
// on to the next one. row_version (and updated_at, for writers built before it, see
// migrations/0006) is what makes the copy true: the take matches only a row nobody wrote since it
// was read, so the leased job is the copy with the lease's changes, and the row is not read back.
// The statement hands the store's clock back in its answer (LAST_INSERT_ID), so the times the
// lease set are the stored ones exactly.
//
// Why not one UPDATE … ORDER BY lease_due_at LIMIT 1: every leaser then starts at the head of the
// index, the second waits for the first's commit (the redo log's fsync included) on the row at the
// head, and leases serialise. Measured (bench lease, 8 workers on MariaDB 10.11): 8 such leasers
// reached 2,535 leases/s where 1 reached 2,062/s, and the statement cost the server 377 µs of CPU
// against 45 µs for a primary-key UPDATE. Workers of one driver never contend for a candidate
// here, so their commits group; only instances that read the same head meet, on a row each.
// Why not read the row back after the take (MariaDB has no UPDATE … RETURNING): it was one
// statement in five of a job's life; without it (and with ONGOING no longer renewing the lease)
// bench lease went from 0.528× to 0.609× the floor's cycles/s (see ARCHITECTURE.md).
//
// Lease order is kept within one driver: candidates are handed out in (lease_due_at, id) order and
// a job that becomes due after the read sorts after them. A candidate list older than
// candidateMaxAge is read again, so a driver that was idle does not spend its next leases on jobs
// long taken by others.
const (
	// candidateBatch is how many candidates one read of the head takes: enough that the read is a
	// small share of a lease at 8 to 16 workers, few enough that instances reading the same head
	// waste little on each other's jobs.
	candidateBatch  = 32
	candidateMaxAge = time.Second
	// candidateRounds bounds the reads of the head in one Lease when every candidate was taken by
	// other instances first; the call then falls back to the range UPDATE, which cannot miss.
	candidateRounds = 2
)

// bumpVersion is in the SET clause of every UPDATE of replay_jobs (migrations/0006): a lease takes
// a copy of the row only if the row's version is still the copy's.
const bumpVersion = "row_version = row_version + 1"

// leaseSet is the SET clause of a lease: OPEN becomes STARTED, the fencing token moves on and the
// lease runs for ? µs from the store's clock. The second %s is added to the token's new value.
const leaseSet = `UPDATE replay_jobs%s SET
  state = IF(state = 'OPEN', 'STARTED', state),
  started_at = COALESCE(started_at, NOW(6)),
  fencing_token = fencing_token + 1%s,
  lease_owner = ?,
  heartbeat_at = NOW(6),
  lease_timeout_us = ?,
  lease_expires_at = NOW(6) + INTERVAL ? MICROSECOND,
  updated_at = NOW(6), ` + bumpVersion + `
WHERE `

// leaseByID takes one candidate if it is still due and unchanged since it was read. %s is the
// per-app cap's condition, if any. LAST_INSERT_ID(…) hands the statement's NOW(6) back in its
// answer as Unix µs (the session's time zone is UTC, see mysqldb.config); LEAST(…, 0) adds
// nothing to the token.
var leaseByID = fmt.Sprintf(leaseSet, "", " + LEAST(LAST_INSERT_ID(TIMESTAMPDIFF(MICROSECOND, '1970-01-01', NOW(6))), 0)") +
	`id = ? AND row_version = ? AND updated_at = ? AND lease_due_at <= NOW(6)%s`

// leaseCandidates reads the head of the lease queue, the rows whole: idx_replay_jobs_lease
// (lease_due_at, id), a stored generated column that is created_at for OPEN jobs,
// lease_expires_at for STARTED/ONGOING ones (and finished ones whose status event is pending) and
// NULL otherwise, so this is a range scan of that index that stops after candidateBatch rows due
// (see migrations/0001_replay_jobs.sql and 0004). A plain consistent read: it locks nothing.
var leaseCandidates = "SELECT " + jobColumns + `, row_version FROM replay_jobs FORCE INDEX (idx_replay_jobs_lease)
WHERE lease_due_at <= NOW(6)%s ORDER BY lease_due_at, id LIMIT %d`

// leaseRange, the fallback, takes the job that has been leasable longest in one statement: an
// UPDATE … ORDER BY lease_due_at, id LIMIT 1 through the same index (forced: the statement changes
// lease_due_at, and the optimizer otherwise scans the primary key and sorts). LAST_INSERT_ID(id)
// hands the leased id back in the statement's answer (LEAST(…, 0) adds nothing to the token).
var leaseRange = fmt.Sprintf(leaseSet, " FORCE INDEX (idx_replay_jobs_lease)", " + LEAST(LAST_INSERT_ID(id), 0)") +
	`lease_due_at <= NOW(6)%s
ORDER BY lease_due_at, id LIMIT 1`

// perAppCap skips the apps with at least ? jobs held: held jobs are those whose lease_due_at
// (their lease expiry) is still ahead, a range of the same index, and that are still running (a
// finished job delivering its status event does not count: the event is short, or waits without
// a worker). The derived table is materialized before the update (MySQL refuses a subquery on
// the table being updated).
const perAppCap = `
  AND app_id NOT IN (SELECT app_id FROM (SELECT app_id FROM replay_jobs WHERE lease_due_at > NOW(6)
    AND state IN ('STARTED', 'ONGOING') GROUP BY app_id HAVING COUNT(*) >= ?) AS busy)`

// The lease statements without and with the per-app cap, formatted once.
var (
	leaseByIDStatement        = fmt.Sprintf(leaseByID, "")
	leaseByIDStatementPerApp  = fmt.Sprintf(leaseByID, perAppCap)
	leaseCandidatesStatement  = fmt.Sprintf(leaseCandidates, "", candidateBatch)
	leaseCandidatesPerApp     = fmt.Sprintf(leaseCandidates, perAppCap, candidateBatch)
	leaseRangeStatement       = fmt.Sprintf(leaseRange, "")
	leaseRangeStatementPerApp = fmt.Sprintf(leaseRange, perAppCap)
)

// candidate is a due job as the read of the head found it, with its row_version. A row that did
// not decode is taken all the same and read back after the take (readBack), whose error is then
// that job's alone, as it would be for a Get: one bad row in the head must not stop every lease.
type candidate struct {
	job      *job.Job
	version  int64
	readBack bool
}

// leased is the candidate as its take left it (leaseSet), now being the statement's NOW(6): what
// a read of the row after the take returns.
func (c candidate) leased(owner string, timeoutUS int64, now time.Time) *job.Job {
	j := *c.job
	if j.State == job.StateOpen {
		j.State = job.StateStarted
	}
	if j.StartedAt.IsZero() {
		j.StartedAt = now
	}
	j.FencingToken++
	j.LeaseOwner = owner
	j.HeartbeatAt, j.UpdatedAt = now, now
	j.LeaseTimeout = time.Duration(timeoutUS) * time.Microsecond
	j.LeaseExpiresAt = now.Add(j.LeaseTimeout)
	return &j
}

// candidates is the head of the lease queue as this driver last read it, handed out in order.
type candidates struct {
	mu     sync.Mutex
	list   []candidate
	perApp int       // the cap the list was read under: a Lease with another cap reads again
	readAt time.Time // this process's clock: only the list's age is measured with it
}

// next returns the next candidate for a Lease under cap perApp, reading the head again (with
// read) when the list is used up, stale or read under another cap and the call has rounds left.
// It returns job.ErrNoJob when the head, just read, holds no job due, and ok false without an
// error when the call used up its rounds.
func (c *candidates) next(ctx context.Context, perApp int, rounds *int, read func(context.Context, int) ([]candidate, error)) (_ candidate, ok bool, _ error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.list) == 0 || c.perApp != perApp || time.Since(c.readAt) > candidateMaxAge {
		if *rounds == 0 {
			return candidate{}, false, nil
		}
		*rounds--
		// Read under the lock: the Lease calls that find the list empty at the same time wait for
		// this one read instead of each making their own.
		list, err := read(ctx, perApp)
		if err != nil {
			c.list = nil
			return candidate{}, false, err
		}
		c.list, c.perApp, c.readAt = list, perApp, time.Now()
		if len(list) == 0 {
			return candidate{}, false, job.ErrNoJob
		}
	}
	cand := c.list[0]
	c.list[0] = candidate{}
	c.list = c.list[1:]
	return cand, true, nil
}

// readCandidates reads up to candidateBatch due jobs in lease order.
func (d *Driver) readCandidates(ctx context.Context, perApp int) ([]candidate, error) {
	query, args := leaseCandidatesStatement, []any(nil)
	if perApp > 0 {
		query, args = leaseCandidatesPerApp, []any{perApp}
	}
	rows, err := d.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := make([]candidate, 0, candidateBatch)
	for rows.Next() {
		var c candidate
		c.job, err = scanJob(rows, &c.version)
		var undecodable undecodableError
		if errors.As(err, &undecodable) {
			c.readBack = true
		} else if err != nil {
			return nil, err
		}
		list = append(list, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if d.testHookCandidates != nil {
		ids := make([]int64, len(list))
		for i, c := range list {
			ids[i] = c.job.ID
		}
		d.testHookCandidates(ids)
	}
	return list, nil
}

// Lease implements job.Driver: a candidate from the head of the queue is taken by a conditional
// UPDATE of its row (see candidateBatch). When others took every candidate first, the range
// UPDATE takes the job instead, and the row is read back, as it is for a candidate that did not
// decode: nobody else can lease the job between the two unless its lease already ran out (a lease
// shorter than a round trip), which the read notices: another owner holds it, and the lease is
// ErrNoJob.
func (d *Driver) Lease(ctx context.Context, p job.LeaseParams) (*job.Job, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = d.opts.LeaseTimeout
	}
	timeoutUS := timeout.Microseconds()
	set := []any{p.Owner, timeoutUS, timeoutUS}
	byID, rangeQuery, capArgs := leaseByIDStatement, leaseRangeStatement, []any(nil)
	if p.MaxPerApp > 0 {
		byID, rangeQuery, capArgs = leaseByIDStatementPerApp, leaseRangeStatementPerApp, []any{p.MaxPerApp}
	}
	var j *job.Job
	err := d.Do(ctx, "lease", func(ctx context.Context) error {
		var id int64 // taken, to be read back: a candidate that did not decode, or the range UPDATE's
		for rounds := candidateRounds; id == 0; {
			cand, ok, err := d.cands.next(ctx, p.MaxPerApp, &rounds, d.readCandidates)
			if err != nil {
				return err
			}
			if !ok {
				break // others took every candidate first: the range UPDATE below
			}
			res, err := d.Exec(ctx, byID, append(append(append([]any(nil), set...), cand.job.ID, cand.version, cand.job.UpdatedAt), capArgs...)...)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				if cand.readBack {
					id = cand.job.ID
					break
				}
				nowUS, err := res.LastInsertId()
				if err != nil {
					return err
				}
				j = cand.leased(p.Owner, timeoutUS, time.UnixMicro(nowUS).UTC())
				return nil
			}
		}
		if id == 0 {
			res, err := d.Exec(ctx, rangeQuery, append(append([]any(nil), set...), capArgs...)...)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return job.ErrNoJob
			}
			if id, err = res.LastInsertId(); err != nil {
				return err
			}
		}
		var err error
		if j, err = getJob(ctx, prepared{d.Store}, id, 0); err != nil {
			return err
		}
		if j.LeaseOwner != p.Owner {
			return job.ErrNoJob // leased, then taken by another before it could be read
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return j, nil
}

// progressSet returns the SET clause fragment and arguments that checkpoint pr (nil: nothing).
func progressSet(pr *job.Progress) (string, []any) {
	if pr == nil {
		return "", nil
	}
	var fu any
	if pr.FirstUndeliveredMs != nil {
		fu = *pr.FirstUndeliveredMs
	}
	set := `, checkpoint = ?, events_read = ?, events_delivered = ?, duplicates_dropped = ?,
  events_failed = ?, first_undelivered_ms = ?, batches_unreadable = ?, events_redelivered = ?`
	args := []any{pr.Checkpoint, pr.Counters.Read, pr.Counters.Delivered, pr.Counters.DuplicatesDropped, pr.Counters.Failed, fu, pr.Counters.Unreadable, pr.Counters.Redelivered}
	if len(pr.Topics) > 0 {
		set += ", topic_progress = ?"
		args = append(args, job.EncodeTopics(pr.Topics))
	}
	return set, args
}

// underLeaseSQL is job.Job.UnderLease: held, or finished with its status event pending.
const underLeaseSQL = `(state IN ('STARTED', 'ONGOING') OR (state IN ('COMPLETED', 'INCOMPLETE') AND status_event = 'pending'))`

// leasedWhere is the condition of a fenced write that may checkpoint pr: progress only for a job
// still running, any job under lease otherwise.
func leasedWhere(pr *job.Progress) string {
	if pr != nil {
		return ` WHERE id = ? AND fencing_token = ? AND state IN ('STARTED', 'ONGOING')`
	}
	return ` WHERE id = ? AND fencing_token = ? AND ` + underLeaseSQL
}

// Heartbeat implements job.Driver.
func (d *Driver) Heartbeat(ctx context.Context, p job.HeartbeatParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	set, args := progressSet(p.Progress)
	query := `UPDATE replay_jobs SET heartbeat_at = NOW(6),
  lease_expires_at = NOW(6) + INTERVAL lease_timeout_us MICROSECOND, updated_at = NOW(6), ` + bumpVersion + set + leasedWhere(p.Progress)
	args = append(args, p.ID, p.FencingToken)
	return d.Do(ctx, "heartbeat", func(ctx context.Context) error {
		return d.fencedUpdate(ctx, query, args, p.ID, p.FencingToken, "heartbeat")
	})
}

// Release implements job.Driver. Setting lease_expires_at to NOW(6) sets the stored lease_due_at
// too, so the job is in the lease query's range at once, among the expired leases.
func (d *Driver) Release(ctx context.Context, p job.ReleaseParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	set, args := progressSet(p.Progress)
	query := `UPDATE replay_jobs SET fencing_token = fencing_token + 1, lease_expires_at = NOW(6),
  updated_at = NOW(6), ` + bumpVersion + set + leasedWhere(p.Progress)
	args = append(args, p.ID, p.FencingToken)
	return d.Do(ctx, "release", func(ctx context.Context) error {
		return d.fencedUpdate(ctx, query, args, p.ID, p.FencingToken, "release")
	})
}

// Transition implements job.Driver.
func (d *Driver) Transition(ctx context.Context, p job.TransitionParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	set, pargs := progressSet(p.Progress)
	args := []any{p.To.String()}
	query := `UPDATE replay_jobs SET state = ?, updated_at = NOW(6), ` + bumpVersion
	switch {
	case p.To.Terminal() && p.StatusPending:
		// The lease goes on for the status event (lease_due_at follows lease_expires_at, 0004).
		query += `, finished_at = NOW(6), reason = ?, status_event = 'pending', heartbeat_at = NOW(6),
  lease_expires_at = NOW(6) + INTERVAL lease_timeout_us MICROSECOND`
		args = append(args, p.Reason)
	case p.To.Terminal():
		query += `, finished_at = NOW(6), lease_expires_at = NULL, reason = ?`
		args = append(args, p.Reason)
	}
	// ONGOING leaves the lease as it is (job.Driver.Transition): moving lease_expires_at would move
	// the job's entry in the lease index once more in its life, for nothing.
	query += set
	args = append(args, pargs...)
	var in []string
	for _, s := range job.TransitionSources(p.To) {
		in = append(in, "'"+s.String()+"'")
	}
	query += ` WHERE id = ? AND fencing_token = ? AND state IN (` + strings.Join(in, ", ") + `)`
	args = append(args, p.ID, p.FencingToken)
	return d.Do(ctx, "transition to "+p.To.String(), func(ctx context.Context) error {
		return d.fencedUpdate(ctx, query, args, p.ID, p.FencingToken, "to "+p.To.String())
	})
}

// SettleStatus implements job.Driver.
func (d *Driver) SettleStatus(ctx context.Context, p job.SettleStatusParams) error {
	if err := p.Validate(); err != nil {
		return err
	}
	query := `UPDATE replay_jobs SET status_event = ?, lease_expires_at = NULL, updated_at = NOW(6), ` + bumpVersion + `
WHERE id = ? AND fencing_token = ? AND state IN ('COMPLETED', 'INCOMPLETE') AND status_event = 'pending'`
	args := []any{p.Outcome.String(), p.ID, p.FencingToken}
	return d.Do(ctx, "settle status event", func(ctx context.Context) error {
		return d.fencedUpdate(ctx, query, args, p.ID, p.FencingToken, "status event")
	})
}

// fencedUpdate runs a conditional UPDATE … WHERE id = ? AND fencing_token = ? AND state IN (…)
// and, when it matched nothing, reads the row to say why: ErrNotFound, ErrLeaseLost (the token
// moved on, or the lease ended with the job) or ErrInvalidTransition.
func (d *Driver) fencedUpdate(ctx context.Context, query string, args []any, id, token int64, what string) error {
	res, err := d.Exec(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 1 {
		return nil
	}
	var (
		state   string
		current int64
		owner   string
	)
	err = d.db.QueryRowContext(ctx, "SELECT state, fencing_token, lease_owner FROM replay_jobs WHERE id = ?", id).Scan(&state, &current, &owner)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("job %d: %w", id, job.ErrNotFound)
	}
	if err != nil {
		return err
	}
	return job.DiagnoseFencedFailure(id, token, current, state, owner, what)
}

// Get implements job.Driver.
func (d *Driver) Get(ctx context.Context, p job.GetParams) (*job.Job, error) {
	var j *job.Job
	err := d.Do(ctx, "get", func(ctx context.Context) error {
		var err error
		j, err = getJob(ctx, prepared{d.Store}, p.ID, p.AppID)
		return err
	})
	return j, err
}

// Count implements job.Driver. For one app, idx_replay_jobs_app finds its rows. For all, in one
// snapshot: the active states through uq_replay_jobs_active_webhook, INCOMPLETE and CANCELED
// through idx_replay_jobs_rare_state, and COMPLETED as the table's count less theirs (see
// migrations/0005_rare_state.sql: no index moves a job's entry at every transition).
func (d *Driver) Count(ctx context.Context, p job.CountParams) (map[job.State]int64, error) {
	out := map[job.State]int64{}
	err := d.Do(ctx, "count", func(ctx context.Context) error {
		clear(out)
		if p.AppID != 0 {
			return countStates(ctx, d.db, out, "SELECT state, COUNT(*) FROM replay_jobs WHERE app_id = ? GROUP BY state", p.AppID)
		}
		// REPEATABLE READ: the three counts are of one snapshot, so they add up.
		tx, err := d.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck
		if err := countStates(ctx, tx, out, countActive); err != nil {
			return err
		}
		if err := countStates(ctx, tx, out, countRare); err != nil {
			return err
		}
		var total int64
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM replay_jobs").Scan(&total); err != nil {
			return err
		}
		for _, n := range out {
			total -= n
		}
		if total > 0 {
			out[job.StateCompleted] = total
		}
		return tx.Commit()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// The counts of the states Count does not derive, each through the index that holds just them.
const (
	countActive = `SELECT state, COUNT(*) FROM replay_jobs FORCE INDEX (uq_replay_jobs_active_webhook)
WHERE active_webhook_id IS NOT NULL GROUP BY state`
	countRare = `SELECT rare_state, COUNT(*) FROM replay_jobs FORCE INDEX (idx_replay_jobs_rare_state)
WHERE rare_state IS NOT NULL GROUP BY rare_state`
)

// countStates adds the (state, count) rows of query to out.
func countStates(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, out map[job.State]int64, query string, args ...any) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return err
		}
		st, err := job.ParseState(name)
		if err != nil {
			return err
		}
		out[st] += n
	}
	return rows.Err()
}

// List implements job.Driver. The app and webhook filters are served by idx_replay_jobs_app and
// idx_replay_jobs_webhook (each (column, id), so the keyset condition and order are index order).
// A state filter without COMPLETED reads only the indexes that hold those states (listQuery);
// one with COMPLETED, the bulk of the table, filters rows in id order.
func (d *Driver) List(ctx context.Context, p job.ListParams) (*job.ListResult, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	query, args := listQuery(p)
	var out *job.ListResult
	err = d.Do(ctx, "list", func(ctx context.Context) error {
		rows, err := d.db.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		out = &job.ListResult{}
		for rows.Next() {
			j, err := scanJob(rows)
			if err != nil {
				return err
			}
			out.Jobs = append(out.Jobs, j)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	if len(out.Jobs) > p.Limit {
		out.Jobs = out.Jobs[:p.Limit]
		out.NextBeforeID = out.Jobs[p.Limit-1].ID
	}
	return out, nil
}

// listQuery is List's SELECT: the newest p.Limit+1 jobs that pass p's filters, below the keyset.
// When the states asked for are only active ones (OPEN, STARTED, ONGOING) and rare ones
// (INCOMPLETE, CANCELED), it is a UNION of a part per kind, each reading the index that holds
// just those jobs (uq_replay_jobs_active_webhook, idx_replay_jobs_rare_state; see
// migrations/0005_rare_state.sql) and each limited, so that listing the canceled jobs of a table
// of finished ones does not read the finished ones.
func listQuery(p job.ListParams) (string, []any) {
	var where []string
	var args []any
	if p.AppID != 0 {
		where = append(where, "app_id = ?")
		args = append(args, p.AppID)
	}
	if p.WebhookID != 0 {
		where = append(where, "webhook_id = ?")
		args = append(args, p.WebhookID)
	}
	if p.BeforeID > 0 {
		where = append(where, "id < ?")
		args = append(args, p.BeforeID)
	}
	part := func(index string, cond []string, cargs []any) (string, []any) {
		q := "SELECT " + jobColumns + " FROM replay_jobs"
		if index != "" {
			q += " FORCE INDEX (" + index + ")"
		}
		if cond = append(cond, where...); len(cond) > 0 {
			q += " WHERE " + strings.Join(cond, " AND ")
		}
		return q + " ORDER BY id DESC LIMIT ?", append(append(cargs, args...), p.Limit+1)
	}
	in := func(states []job.State) (string, []any) {
		ph := make([]string, len(states))
		vals := make([]any, len(states))
		for i, s := range states {
			ph[i], vals[i] = "?", s.String()
		}
		return "(" + strings.Join(ph, ", ") + ")", vals
	}
	if len(p.States) == 0 {
		return part("", nil, nil)
	}
	var active, rare []job.State
	for _, s := range p.States {
		switch {
		case s == job.StateCompleted:
			list, vals := in(p.States)
			return part("", []string{"state IN " + list}, vals)
		case s == job.StateIncomplete || s == job.StateCanceled:
			rare = append(rare, s)
		default:
			active = append(active, s)
		}
	}
	var parts []string
	var all []any
	if len(active) > 0 {
		list, vals := in(active)
		q, a := part("uq_replay_jobs_active_webhook", []string{"active_webhook_id IS NOT NULL", "state IN " + list}, vals)
		parts, all = append(parts, q), append(all, a...)
	}
	if len(rare) > 0 {
		list, vals := in(rare)
		q, a := part("idx_replay_jobs_rare_state", []string{"rare_state IN " + list}, vals)
		parts, all = append(parts, q), append(all, a...)
	}
	if len(parts) == 1 {
		return parts[0], all
	}
	return "(" + strings.Join(parts, ") UNION ALL (") + ") ORDER BY id DESC LIMIT ?", append(all, p.Limit+1)
}

// Cancel implements job.Driver.
func (d *Driver) Cancel(ctx context.Context, p job.CancelParams) (*job.Job, error) {
	query := `UPDATE replay_jobs SET state = 'CANCELED', reason = ?, fencing_token = fencing_token + 1,
  finished_at = NOW(6), lease_expires_at = NULL, updated_at = NOW(6), ` + bumpVersion + `
WHERE id = ? AND state IN ` + activeStatesSQL
	args := []any{p.Reason, p.ID}
	if p.AppID != 0 {
		query += " AND app_id = ?"
		args = append(args, p.AppID)
	}
	var j *job.Job
	err := d.Do(ctx, "cancel", func(ctx context.Context) error {
		if _, err := d.db.ExecContext(ctx, query, args...); err != nil {
			return err
		}
		var err error
		if j, err = getJob(ctx, d.db, p.ID, p.AppID); err != nil {
			return err
		}
		return job.CheckCanceled(j)
	})
	if err != nil {
		return nil, err
	}
	return j, nil
}
