package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuick runs the whole suite with small data into a temporary directory, so that CI (go test
// -race ./...) keeps `go run ./bench` working: every benchmark must produce numbers (MariaDB
// included: CI has it), and BENCH.md and the plots must be written.
func TestQuick(t *testing.T) {
	dir := t.TempDir()
	c := &Config{Sizes: testSizes(), Quick: true, Runs: 5, Command: "go test -run TestQuick ./bench/",
		BenchMD: filepath.Join(dir, "BENCH.md"), PlotDir: filepath.Join(dir, "plots"), TempDir: dir}
	start := time.Now()
	reports, err := runSuite(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("suite ran in %v", time.Since(start))
	if len(reports) != len(benchmarks) {
		t.Fatalf("%d reports, want %d", len(reports), len(benchmarks))
	}
	for _, rep := range reports {
		if rep.Skipped != "" {
			t.Errorf("%s skipped: %s", rep.Name, rep.Skipped)
		}
		if len(rep.Results) == 0 || len(rep.Compare) == 0 {
			t.Errorf("%s: %d results, %d comparisons", rep.Name, len(rep.Results), len(rep.Compare))
		}
		want := c.Runs
		if rep.Name == "large" {
			want = 1 // one sample of each window, whatever --runs (large.go)
		}
		for _, r := range rep.Results {
			if len(r.Samples) != want {
				t.Errorf("%s %s %s %s: %d samples, want %d", rep.Name, r.Case, r.Variant, r.Metric, len(r.Samples), want)
			}
		}
		for _, cmp := range rep.Compare {
			if x := rep.ratio(cmp.Case, cmp.Metric, cmp.Ours, cmp.Baseline); !(x > 0) {
				t.Errorf("%s %s %s: ratio %v", rep.Name, cmp.Case, cmp.Metric, x)
			}
		}
	}
	md, err := os.ReadFile(c.BenchMD)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Summary", "| CPU |", "Go", "go test -run TestQuick", "replay-time.svg", "1. Seek and replay", "6. Delivery"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("BENCH.md lacks %q", want)
		}
	}
	for _, p := range []string{"replay-time.svg", "replay-bytes.svg", "replay-first-event.svg"} {
		if fi, err := os.Stat(filepath.Join(c.PlotDir, p)); err != nil || fi.Size() < 1000 {
			t.Errorf("plot %s: %v", p, err)
		}
	}
}

// testSizes are smaller than QuickSizes: the test runs under -race on 2 shared cores.
func testSizes() Sizes {
	s := QuickSizes()
	s.IndexEvents, s.IndexWebhooks = 20_000, 500
	s.ScanRecords, s.ScanMinTime = 512, 5*time.Millisecond
	s.DedupDistinct, s.DedupTrace, s.DedupCapacity = 20_000, 40_000, 1<<15
	s.LeaseJobs, s.LeaseTimeout = 40, 100*time.Millisecond
	s.DeliveryEvents, s.LargeEvents = 200, 2000
	s.TwoDCEvents = 500
	s.KafkaEvents, s.KafkaScanRecords = 8000, 4000
	return s
}
