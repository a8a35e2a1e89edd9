package main

import (
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkTwoDC: one replay job of 10,000 unique events through worker.Pool to a counting
// deliverer, from one topic holding each once (local-only) vs from the local and a mirrored
// topic holding them with a quarter in both (merged: merge by timestamp and dedup across
// topics) and split with none in both (merged-disjoint). One op is one whole job.
//
//	go test -run '^$' -bench TwoDC -benchtime 5x ./bench/
func BenchmarkTwoDC(b *testing.B) {
	ctx := context.Background()
	const n = 10_000
	for _, v := range []struct {
		name   string
		topics int
		both   float64
	}{{"local-only", 1, 0}, {"merged", 2, twoDCShare}, {"merged-disjoint", 2, 0}} {
		e, err := newTwoDCEnv(ctx, filepath.Join(b.TempDir(), v.name), n, v.topics, v.both)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(v.name, func(b *testing.B) {
			for b.Loop() {
				_, got, err := e.replay(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if got != n {
					b.Fatalf("delivered %d of %d", got, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/event")
		})
		e.close()
	}
}
