package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/replay/replay/replayd/job"
)

// Leasing benchmarks (design brief, benchmark 5; lease.go): lease → heartbeat → ONGOING →
// COMPLETED cycles/s with 8 concurrent workers, and takeover latency, on MariaDB/MySQL and on the
// embedded store.
//
//	go test -run '^$' -bench Lease -benchtime 3s ./bench/
//
// MySQL runs against REPLAY_TEST_MYSQL_DSN (default root@tcp(127.0.0.1:3306)/) in a fresh
// database that is dropped afterwards.

func leaseStore(b *testing.B, name string) job.Driver {
	var d job.Driver
	var closeFn func()
	var err error
	if name == "mysql" {
		d, closeFn, err = openMySQLJobs(context.Background(), "")
	} else {
		d, closeFn, err = openEmbeddedJobs(filepath.Join(b.TempDir(), "jobs"))
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(closeFn)
	return d
}

// BenchmarkLeaseCycle: one op is one job taken through lease, heartbeat (with a progress
// checkpoint), ONGOING and COMPLETED, by 8 concurrent workers.
func BenchmarkLeaseCycle(b *testing.B) {
	for _, name := range []string{"mysql", "embedded"} {
		b.Run(name, func(b *testing.B) {
			d := leaseStore(b, name)
			if err := seedJobs(context.Background(), d, b.N); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			elapsed, err := leaseCycles(context.Background(), d, b.N, leaseWorkers)
			if err != nil {
				b.Fatal(err)
			}
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
	const timeout = time.Second
	for _, name := range []string{"mysql", "embedded"} {
		b.Run(name, func(b *testing.B) {
			d := leaseStore(b, name)
			var total time.Duration
			for range b.N {
				lat, err := takeover(context.Background(), d, timeout)
				if err != nil {
					b.Fatal(err)
				}
				total += lat
			}
			avg := total / time.Duration(b.N)
			b.ReportMetric(ms(avg), "takeover-ms")
			b.ReportMetric(ms(timeout), "timeout-ms")
			b.ReportMetric(ms(avg-timeout), "excess-ms")
		})
	}
}
