package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/embeddedjob"
	"github.com/replay/replay/replayd/job/mysqljob"
)

// Leasing benchmarks (design brief, benchmark 5): lease → heartbeat → ONGOING → COMPLETED cycles/s
// with 8 concurrent workers, and takeover latency, on MariaDB/MySQL and on the embedded store.
//
//	go test -run '^$' -bench Lease -benchtime 3s ./bench/
//
// MySQL runs against REPLAY_TEST_MYSQL_DSN (default root@tcp(127.0.0.1:3306)/) in a fresh
// database that is dropped afterwards.

const leaseWorkers = 8

type leaseStore struct {
	name string
	open func(b *testing.B) job.Driver
	// seed creates n OPEN jobs for distinct webhooks (outside the timed region).
	seed func(b *testing.B, d job.Driver, n int)
}

var webhookBase atomic.Int64

func leaseStores() []leaseStore {
	return []leaseStore{
		{name: "mysql", open: openBenchMySQL, seed: seedMySQL},
		{name: "embedded", open: func(b *testing.B) job.Driver {
			d, err := embeddedjob.Open(embeddedjob.Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { d.Close() })
			return d
		}, seed: seedWithCreate},
	}
}

func openBenchMySQL(b *testing.B) job.Driver {
	base := os.Getenv("REPLAY_TEST_MYSQL_DSN")
	if base == "" {
		base = "root@tcp(127.0.0.1:3306)/"
	}
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		b.Fatalf("REPLAY_TEST_MYSQL_DSN: %v", err)
	}
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		b.Fatal(err)
	}
	rnd := make([]byte, 6)
	rand.Read(rnd)
	name := "replay_bench_" + hex.EncodeToString(rnd)
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		admin.Close()
		b.Fatalf("MariaDB/MySQL at %s: %v", cfg.Addr, err)
	}
	b.Cleanup(func() {
		admin.Exec("DROP DATABASE IF EXISTS " + name)
		admin.Close()
	})
	cfg.DBName = name
	d, err := mysqljob.Open(context.Background(), mysqljob.Options{DSN: cfg.FormatDSN(), MaxOpenConns: 2 * leaseWorkers})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

// seedMySQL inserts n jobs with multi-row INSERTs: the same rows Create makes, much faster.
func seedMySQL(b *testing.B, d job.Driver, n int) {
	db := d.(*mysqljob.Driver).DB()
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
		if _, err := db.Exec(sb.String()); err != nil {
			b.Fatal(err)
		}
		done += k
	}
}

func seedWithCreate(b *testing.B, d job.Driver, n int) {
	for range n {
		if _, err := d.Create(context.Background(), job.CreateParams{AppID: 1, WebhookID: webhookBase.Add(1), FromMs: 1, ToMs: 2}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLeaseCycle: one op is one job taken through lease, heartbeat (with a progress
// checkpoint), ONGOING and COMPLETED, by 8 concurrent workers.
func BenchmarkLeaseCycle(b *testing.B) {
	for _, s := range leaseStores() {
		b.Run(s.name, func(b *testing.B) {
			d := s.open(b)
			s.seed(b, d, b.N)
			ctx := context.Background()
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := range leaseWorkers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					owner := fmt.Sprintf("bench-%d", w)
					for left.Add(-1) >= 0 {
						l, err := d.Lease(ctx, job.LeaseParams{Owner: owner})
						if err != nil {
							b.Errorf("Lease: %v", err)
							return
						}
						err = errors.Join(
							d.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID, FencingToken: l.FencingToken, Progress: &job.Progress{Checkpoint: 100, Counters: job.Counters{Read: 10, Delivered: 10}}}),
							d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateOngoing}),
							d.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateCompleted}),
						)
						if err != nil {
							b.Errorf("job %d: %v", l.ID, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "cycles/s")
		})
	}
}

// BenchmarkLeaseTakeover: one op is a worker leasing a job with a 1s lease timeout, heartbeating
// once and dying, while another worker polls Lease every 10ms until it takes the job over. It
// reports the takeover latency (the store's time from the last heartbeat to the new lease) next
// to the configured timeout; the excess is the polling interval plus the store's round trips.
func BenchmarkLeaseTakeover(b *testing.B) {
	const (
		timeout = time.Second
		poll    = 10 * time.Millisecond
	)
	for _, s := range leaseStores() {
		b.Run(s.name, func(b *testing.B) {
			d := s.open(b)
			ctx := context.Background()
			var total time.Duration
			for range b.N {
				b.StopTimer()
				s.seed(b, d, 1)
				b.StartTimer()
				a, err := d.Lease(ctx, job.LeaseParams{Owner: "dying", Timeout: timeout})
				if err != nil {
					b.Fatal(err)
				}
				if err := d.Heartbeat(ctx, job.HeartbeatParams{ID: a.ID, FencingToken: a.FencingToken}); err != nil {
					b.Fatal(err)
				}
				last, err := d.Get(ctx, job.GetParams{ID: a.ID})
				if err != nil {
					b.Fatal(err)
				}
				var taken *job.Job
				for taken == nil {
					l, err := d.Lease(ctx, job.LeaseParams{Owner: "survivor", Timeout: time.Minute})
					switch {
					case errors.Is(err, job.ErrNoJob):
						time.Sleep(poll)
					case err != nil:
						b.Fatal(err)
					default:
						taken = l
					}
				}
				if taken.ID != a.ID {
					b.Fatalf("took over job %d, want %d", taken.ID, a.ID)
				}
				total += taken.HeartbeatAt.Sub(last.HeartbeatAt)
				if err := d.Transition(ctx, job.TransitionParams{ID: taken.ID, FencingToken: taken.FencingToken, To: job.StateIncomplete, Reason: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
			avg := total / time.Duration(b.N)
			b.ReportMetric(float64(avg)/float64(time.Millisecond), "takeover-ms")
			b.ReportMetric(float64(timeout)/float64(time.Millisecond), "timeout-ms")
			b.ReportMetric(float64(avg-timeout)/float64(time.Millisecond), "excess-ms")
		})
	}
}
