package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/embeddedjob"
	"github.com/replay/replay/replayd/job/mysqljob"
	"github.com/replay/replay/replayd/mysqldb"
)

// leaseWorkers is how many workers lease concurrently in the cycle benchmark.
const leaseWorkers = 8

// takeoverPoll is how often the surviving worker asks for a job in the takeover benchmark.
const takeoverPoll = 10 * time.Millisecond

// benchDatabase creates a fresh database bench_<random> on base (else mysqldb.TestServer) and
// returns its DSN and a function that drops it. The error says when the server is unreachable.
func benchDatabase(ctx context.Context, base string) (string, func(), error) {
	if base == "" {
		base = mysqldb.TestServer()
	}
	dsn, drop, err := mysqldb.CreateDatabase(ctx, base, "bench")
	if err != nil {
		return "", nil, err
	}
	return dsn, func() { drop() }, nil
}

// openMySQLJobs opens the job store in a fresh database; close drops it.
func openMySQLJobs(ctx context.Context, base string) (*mysqljob.Driver, func(), error) {
	dsn, drop, err := benchDatabase(ctx, base)
	if err != nil {
		return nil, nil, err
	}
	d, err := mysqljob.Open(ctx, mysqljob.Options{DSN: dsn, MaxOpenConns: 2 * leaseWorkers})
	if err != nil {
		drop()
		return nil, nil, err
	}
	return d, func() { d.Close(); drop() }, nil
}

func openEmbeddedJobs(dir string) (*embeddedjob.Driver, func(), error) {
	d, err := embeddedjob.Open(embeddedjob.Options{Dir: dir})
	if err != nil {
		return nil, nil, err
	}
	return d, func() { d.Close(); os.RemoveAll(dir) }, nil
}

var webhookBase atomic.Int64

// seedJobs creates n OPEN jobs for distinct webhooks: for MySQL with multi-row INSERTs (the same
// rows Create makes, much faster), else with Create.
func seedJobs(ctx context.Context, d job.Driver, n int) error {
	if my, ok := d.(*mysqljob.Driver); ok {
		for done := 0; done < n; {
			k := min(1000, n-done)
			var sb strings.Builder
			sb.WriteString("INSERT INTO replay_jobs (app_id, webhook_id, kafka_partition, from_ms, to_ms, state, created_at, updated_at) VALUES ")
			for i := range k {
				if i > 0 {
					sb.WriteByte(',')
				}
				fmt.Fprintf(&sb, "(1, %d, 0, 1, 2, 'OPEN', NOW(6), NOW(6))", webhookBase.Add(1))
			}
			if _, err := my.DB().ExecContext(ctx, sb.String()); err != nil {
				return err
			}
			done += k
		}
		return nil
	}
	for range n {
		if _, err := d.Create(ctx, job.CreateParams{AppID: 1, WebhookID: webhookBase.Add(1), FromMs: 1, ToMs: 2}); err != nil {
			return err
		}
	}
	return nil
}

// leaseCycles takes n seeded jobs through lease, heartbeat (with a progress checkpoint), ONGOING
// and COMPLETED with `workers` concurrent workers, and returns the elapsed time.
func leaseCycles(ctx context.Context, d job.Driver, n, workers int) (time.Duration, error) {
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("bench-%d", w)
			for left.Add(-1) >= 0 {
				l, err := d.Lease(ctx, job.LeaseParams{Owner: owner})
				if err != nil {
					errc <- fmt.Errorf("Lease: %w", err)
					return
				}
				err = errors.Join(
					d.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID, FencingToken: l.FencingToken, Progress: &job.Progress{Checkpoint: 100, Counters: job.Counters{Read: 10, Delivered: 10}}}),
					d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateOngoing}),
					d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateCompleted}),
				)
				if err != nil {
					errc <- fmt.Errorf("job %d: %w", l.ID, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errc)
	return elapsed, <-errc
}

// floorCycles is the store's floor for the same work: n "cycles" of four autocommit single-row
// primary-key UPDATEs (as many write commits as a lease cycle makes) on a plain InnoDB table, by
// `workers` concurrent workers.
func floorCycles(ctx context.Context, db *sql.DB, n, workers int) (time.Duration, error) {
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS bench_floor (id BIGINT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB"); err != nil {
		return 0, err
	}
	if _, err := db.ExecContext(ctx, "DELETE FROM bench_floor"); err != nil {
		return 0, err
	}
	for done := 0; done < n; {
		k := min(1000, n-done)
		var sb strings.Builder
		sb.WriteString("INSERT INTO bench_floor (id, n) VALUES ")
		for i := range k {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, "(%d, 0)", done+i)
		}
		if _, err := db.ExecContext(ctx, sb.String()); err != nil {
			return 0, err
		}
		done += k
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := next.Add(1) - 1; id < int64(n); id = next.Add(1) - 1 {
				for range 4 {
					if _, err := db.ExecContext(ctx, "UPDATE bench_floor SET n = n + 1 WHERE id = ?", id); err != nil {
						errc <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errc)
	return elapsed, <-errc
}

// serverPID is the MySQL server's process id when it runs on this machine and its pid file is
// readable (@@pid_file), else 0: its CPU time is then read from /proc around each sample.
func serverPID(ctx context.Context, db *sql.DB) int {
	var file string
	if err := db.QueryRowContext(ctx, "SELECT @@pid_file").Scan(&file); err != nil {
		return 0
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	if _, err := procCPU(pid); err != nil {
		return 0
	}
	return pid
}

// takeover leases a job with the given timeout, heartbeats once and "dies"; another worker polls
// Lease every takeoverPoll until it takes the job over. It returns the store's time from the last
// heartbeat to the new lease.
func takeover(ctx context.Context, d job.Driver, timeout time.Duration) (time.Duration, error) {
	if err := seedJobs(ctx, d, 1); err != nil {
		return 0, err
	}
	a, err := d.Lease(ctx, job.LeaseParams{Owner: "dying", Timeout: timeout})
	if err != nil {
		return 0, err
	}
	if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: a.ID, FencingToken: a.FencingToken}); err != nil {
		return 0, err
	}
	last, err := d.Get(ctx, job.GetParams{ID: a.ID})
	if err != nil {
		return 0, err
	}
	var taken *job.Job
	for taken == nil {
		l, err := d.Lease(ctx, job.LeaseParams{Owner: "survivor", Timeout: time.Minute})
		switch {
		case errors.Is(err, job.ErrNoJob):
			time.Sleep(takeoverPoll)
		case err != nil:
			return 0, err
		default:
			taken = l
		}
	}
	if taken.ID != a.ID {
		return 0, fmt.Errorf("took over job %d, want %d", taken.ID, a.ID)
	}
	if err := d.Transition(ctx, job.TransitionParams{ID: taken.ID, FencingToken: taken.FencingToken, To: job.StateIncomplete, Reason: "bench"}); err != nil {
		return 0, err
	}
	return taken.HeartbeatAt.Sub(last.HeartbeatAt), nil
}

// runLease is benchmark 5: lease cycles/s with 8 workers on MariaDB (and the embedded store),
// against the server's floor for as many commits, and takeover latency against the lease timeout.
func runLease(ctx context.Context, c *Config) (*Report, error) {
	rep := &Report{Name: "lease", Title: "5. Leasing: lease + heartbeat + complete cycles with 8 workers; takeover latency"}
	rep.Setup = fmt.Sprintf("**cycles**: %d OPEN jobs per sample, %d concurrent workers each taking jobs through `Lease` → "+
		"`Heartbeat` (with a progress checkpoint) → ONGOING → COMPLETED (4 write transactions per cycle). **mysql** = "+
		"`mysqljob` on MariaDB in a fresh database `bench_<random>` (dropped afterwards); **mysql-floor** = the same server "+
		"doing 4 autocommit single-row primary-key UPDATEs per cycle with the same workers, the least any design with 4 "+
		"commits per cycle can cost; **embedded** = `embeddedjob` (Pebble, synced writes). **takeover**: a worker leases a job "+
		"with a %v lease timeout, heartbeats once and dies; another polls `Lease` every %v; latency = the store's time from "+
		"the last heartbeat to the new lease (ideal: the timeout). Variants alternate within a run.",
		c.LeaseJobs, leaseWorkers, c.LeaseTimeout, takeoverPoll)
	my, closeMy, err := openMySQLJobs(ctx, c.MySQL)
	if err != nil {
		rep.Skipped = fmt.Sprintf("MariaDB/MySQL not usable, the mysql variants did not run: %v", err)
		my = nil
	} else {
		defer closeMy()
	}
	emb, closeEmb, err := openEmbeddedJobs(filepath.Join(c.TempDir, "lease-jobs"))
	if err != nil {
		return rep, err
	}
	defer closeEmb()
	type store struct {
		name string
		d    job.Driver
	}
	stores := []store{{"embedded", emb}}
	pid := 0 // mariadbd's, when its CPU can be read
	if my != nil {
		stores = append([]store{{"mysql", my}}, stores...)
		pid = serverPID(ctx, my.DB())
	}
	// sample runs one variant's cycles and reports their rate and, with cpu, the CPU per cycle of
	// the workers and of the server (when it can be read).
	sample := func(variant string, cpu bool, cycles func() (time.Duration, error)) error {
		cs, err := startCPU(pid)
		if err != nil {
			return fmt.Errorf("server CPU: %w", err)
		}
		el, err := cycles()
		if err != nil {
			return fmt.Errorf("%s: %w", variant, err)
		}
		workers, server, err := cs.stop()
		if err != nil {
			return fmt.Errorf("server CPU: %w", err)
		}
		rep.add("cycles", variant, "cycles/s", "cycles/s", true, float64(c.LeaseJobs)/el.Seconds())
		if cpu {
			rep.add("cycles", variant, "client CPU per cycle", "µs", false, float64(workers.Microseconds())/float64(c.LeaseJobs))
			if pid != 0 {
				rep.add("cycles", variant, "server CPU per cycle", "µs", false, float64(server.Microseconds())/float64(c.LeaseJobs))
			}
		}
		return nil
	}
	for run := 0; run < c.Runs; run++ {
		for _, s := range stores {
			if err := seedJobs(ctx, s.d, c.LeaseJobs); err != nil {
				return rep, fmt.Errorf("%s: seeding: %w", s.name, err)
			}
			if err := sample(s.name, s.name == "mysql", func() (time.Duration, error) {
				return leaseCycles(ctx, s.d, c.LeaseJobs, leaseWorkers)
			}); err != nil {
				return rep, err
			}
			if s.name == "mysql" {
				if err := sample("mysql-floor", true, func() (time.Duration, error) {
					return floorCycles(ctx, my.DB(), c.LeaseJobs, leaseWorkers)
				}); err != nil {
					return rep, err
				}
			}
		}
		for _, s := range stores {
			lat, err := takeover(ctx, s.d, c.LeaseTimeout)
			if err != nil {
				return rep, fmt.Errorf("%s takeover: %w", s.name, err)
			}
			rep.add("takeover", s.name, "takeover latency", "ms", false, ms(lat))
			rep.add("takeover", s.name, "excess over the timeout", "ms", false, ms(lat-c.LeaseTimeout))
		}
		rep.add("takeover", "lease timeout", "takeover latency", "ms", false, ms(c.LeaseTimeout))
	}
	if my != nil {
		rep.compare("cycles", "mysql", "mysql-floor", "cycles/s")
		rep.Compare[len(rep.Compare)-1].IsCeilingFactor = true
		if pid != 0 {
			rep.compare("cycles", "mysql", "mysql-floor", "server CPU per cycle")
			rep.Compare[len(rep.Compare)-1].IsCeilingFactor = true
		}
		rep.compare("takeover", "mysql", "lease timeout", "takeover latency")
		rep.Compare[len(rep.Compare)-1].IsCeilingFactor = true
	}
	rep.Notes = append(rep.Notes, "What bounds the mysql cycle, measured with the CPU columns above (the server's from "+
		"/proc, 8 workers, quiet machine): a cycle is four statements, as the floor's, but each is a primary-key UPDATE of a "+
		"wide row with three stored generated columns, and the lease, the heartbeat and the end move the job's entry in the "+
		"lease index (a lease's expiry is its key), the end its active-webhook entry too, where the floor's table has no "+
		"secondary index; the server then also purges the old entries. Server and workers together spend well over the "+
		"floor's CPU per cycle on the same 2 cores, which is the cycles/s ratio. What moved it, each measured by this "+
		"benchmark: a lease taking a candidate read from the head of the queue by its primary key, instead of one "+
		"`UPDATE … ORDER BY lease_due_at LIMIT 1` whose leasers waited for each other's commit at the index head (0.33× "+
		"before); the hot statements prepared; the state index dropped for one holding only INCOMPLETE and CANCELED jobs "+
		"(migration 0005: 760 → 556 µs of server CPU per cycle, 1600 → 2033 cycles/s, in one alternating pair of runs); "+
		"the lease taking the candidate's row as read with the head of the queue, guarded by its row_version (migration "+
		"0006), instead of reading it back after the take, and ONGOING no longer renewing the lease (one index move less): "+
		"0.528× → 0.609× (medians of three alternating runs of `--only lease --runs 5` each; server CPU per cycle 612 → "+
		"568 µs, the workers' 277 → 241 µs). Tried and not kept: a held job's lease-index key rounded down to 10 s of "+
		"expiry, so that heartbeats would move it once per step: 0.50–0.57× with and without it over four alternating runs.")
	rep.compare("takeover", "embedded", "lease timeout", "takeover latency")
	rep.Compare[len(rep.Compare)-1].IsCeilingFactor = true
	return rep, nil
}
