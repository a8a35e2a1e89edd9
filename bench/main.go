// Command bench runs the seven benchmarks that decide whether the design works (design brief,
// "Benchmarks that decide whether the design works"), each side by side with its baseline on the
// same data in one run, repeated, and writes BENCH.md with medians, min/max, ratios, the targets
// and plots.
//
//	go run ./bench                 # the full run, about ten minutes on 2 cores
//	go run ./bench --quick         # a small version, under a minute
//	go run ./bench --only replay,dedup --runs 7 --out /tmp/b
//
// The same code backs the Go benchmarks in bench/*_test.go (go test -bench), and TestQuick runs
// the quick suite so that CI keeps it working.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/replay/replay/segment"
)

// Sizes are the data sizes of one suite.
type Sizes struct {
	// replay and build: events of the shared index data set (2 partitions, 5k Zipf webhooks plus
	// four hot ones in partition 0).
	IndexEvents   int
	IndexWebhooks int
	// scan: records of the in-memory segment, the codecs, and the least time one sample takes.
	ScanRecords int
	ScanCodecs  []segment.Codec
	ScanMinTime time.Duration
	// dedup: distinct identities and lookups of the trace; Capacity of the bounded caches.
	DedupDistinct, DedupTrace, DedupCapacity int
	// lease: jobs per cycle sample; the lease timeout of the takeover samples.
	LeaseJobs    int
	LeaseTimeout time.Duration
	// delivery: events of the replayed webhook.
	DeliveryEvents int
	// large: events of the large replay's webhook (over 5 days; a quarter of them replayed too).
	LargeEvents int
	// twodc: unique events of the replayed webhook (three times as many of others beside).
	TwoDCEvents int
	// kafka: events of the data set copied into the real broker (replay's, smaller); records of
	// partition 0 the throughput case scans (and kfake holds in memory).
	KafkaEvents, KafkaScanRecords int
}

// FullSizes fit about ten minutes on a 2-core machine.
func FullSizes() Sizes {
	return Sizes{
		IndexEvents: 4_000_000, IndexWebhooks: 5000,
		ScanRecords: 64 * 1024, ScanMinTime: 500 * time.Millisecond,
		ScanCodecs:    []segment.Codec{segment.CodecNone, segment.CodecSnappy, segment.CodecLZ4, segment.CodecZstd, segment.CodecGzip},
		DedupDistinct: 1_000_000, DedupTrace: 2_000_000, DedupCapacity: 1 << 20,
		LeaseJobs: 5000, LeaseTimeout: time.Second,
		DeliveryEvents: 10_000, LargeEvents: 1_000_000,
		KafkaEvents: 400_000, KafkaScanRecords: 100_000,
		TwoDCEvents: 50_000,
	}
}

// QuickSizes run in well under a minute.
func QuickSizes() Sizes {
	return Sizes{
		IndexEvents: 40_000, IndexWebhooks: 1000,
		ScanRecords: 2048, ScanMinTime: 20 * time.Millisecond,
		ScanCodecs:    []segment.Codec{segment.CodecSnappy},
		DedupDistinct: 100_000, DedupTrace: 200_000, DedupCapacity: 1 << 17,
		LeaseJobs: 200, LeaseTimeout: 200 * time.Millisecond,
		DeliveryEvents: 1000, LargeEvents: 20_000,
		KafkaEvents: 20_000, KafkaScanRecords: 10_000,
		TwoDCEvents: 2000,
	}
}

// Config is one suite run.
type Config struct {
	Sizes
	Quick   bool
	Runs    int
	Only    map[string]bool // empty: all
	BenchMD string          // path of BENCH.md
	PlotDir string          // where plots go
	TempDir string          // where data sets go (removed afterwards)
	MySQL   string          // base DSN, without a database
	// ProfileDir, if set, receives CPU profiles of the processes the delivery benchmark starts
	// (its sinks, the large replay's replayd) and of this one (bench.pprof).
	ProfileDir string
	Command    string // the command line, for the report
	Log        *slog.Logger

	idx     *indexData // the replay and build data set, made once
	cleanup []func()
}

// benchmark is one of the six.
type benchmark struct {
	name string
	run  func(ctx context.Context, c *Config) (*Report, error)
}

var benchmarks = []benchmark{
	{"replay", runReplay},
	{"scan", runScan},
	{"build", runBuild},
	{"dedup", runDedup},
	{"lease", runLease},
	{"delivery", runDelivery},
	{"large", runLarge},
	{"kafka", runKafka},
	{"twodc", runTwoDC},
}

// runSuite runs the selected benchmarks and writes the report. A benchmark that fails is reported
// as failed in BENCH.md and makes runSuite return an error after the report is written.
func runSuite(ctx context.Context, c *Config) ([]*Report, error) {
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if c.Runs < 1 {
		return nil, fmt.Errorf("--runs %d: want at least 1", c.Runs)
	}
	for name := range c.Only {
		known := false
		for _, b := range benchmarks {
			known = known || b.name == name
		}
		if !known {
			return nil, fmt.Errorf("--only: no benchmark %q", name)
		}
	}
	tmp, err := os.MkdirTemp(c.TempDir, "replay-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	c.TempDir = tmp
	defer c.closeAll()
	if err := os.MkdirAll(c.PlotDir, 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	var reports []*Report
	var failed []string
	for _, b := range benchmarks {
		if len(c.Only) > 0 && !c.Only[b.name] {
			continue
		}
		c.Log.Info("benchmark", "name", b.name)
		t0 := time.Now()
		rep, err := b.run(ctx, c)
		if rep == nil {
			rep = &Report{Name: b.name, Title: b.name}
		}
		rep.Elapsed = time.Since(t0)
		if err != nil {
			rep.failures = append(rep.failures, err.Error())
			failed = append(failed, fmt.Sprintf("%s: %v", b.name, err))
		}
		c.Log.Info("benchmark done", "name", b.name, "elapsed", rep.Elapsed.Round(time.Millisecond), "skipped", rep.Skipped, "err", err)
		reports = append(reports, rep)
	}
	if err := writeReport(c, reports, time.Since(start)); err != nil {
		return reports, err
	}
	if len(failed) > 0 {
		return reports, fmt.Errorf("benchmarks failed: %s", strings.Join(failed, "; "))
	}
	return reports, nil
}

func main() {
	runChildIfAsked()
	// The one signal context of the command: SIGINT or SIGTERM cancels cmd.Context().
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	var (
		quick     bool
		out, only string
		runs      int
		mysqlDSN  string
		profile   string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run the design's seven benchmarks against their baselines and write BENCH.md and plots",
		Long: `Run the seven benchmarks of the design brief, each side by side with its baseline on the same
data in one run, and write BENCH.md (machine, command, medians with min/max, ratios, the targets
met or not) and log-log plots. They run as nine parts (--only): 1 seek and replay is replay (local
segments) and kafka (a real Kafka broker, started from the jars engine/kafkatest/fetch-kafka.sh
fetches; skipped, saying so, without them: the index and targeted fetches vs the seed's
consumer); 2 scan; 3 build; 4 dedup; 5 lease (MariaDB, --mysql-dsn); 6 delivery and large (the
1M-event replay); 7 twodc.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := &Config{Sizes: FullSizes(), Quick: quick, Runs: runs, MySQL: mysqlDSN, ProfileDir: profile}
			if profile != "" {
				if err := os.MkdirAll(profile, 0o755); err != nil {
					return err
				}
				stop, err := startCPUProfile(filepath.Join(profile, "bench.pprof"))
				if err != nil {
					return err
				}
				defer stop()
			}
			if quick {
				c.Sizes = QuickSizes()
			}
			c.Command = "go run ./bench"
			if len(os.Args) > 1 {
				c.Command += " " + strings.Join(os.Args[1:], " ")
			}
			if only != "" {
				c.Only = map[string]bool{}
				for _, n := range strings.Split(only, ",") {
					c.Only[strings.TrimSpace(n)] = true
				}
			}
			if out != "" {
				c.BenchMD, c.PlotDir = filepath.Join(out, "BENCH.md"), filepath.Join(out, "plots")
			} else {
				root, err := repoRoot()
				if err != nil {
					return err
				}
				c.BenchMD, c.PlotDir = filepath.Join(root, "BENCH.md"), filepath.Join(root, "bench", "plots")
			}
			if _, err := runSuite(cmd.Context(), c); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "wrote", c.BenchMD)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&quick, "quick", false, "run a small version of every benchmark (under a minute)")
	f.StringVar(&out, "out", "", "write BENCH.md and plots/ into this directory (default: BENCH.md at the repository root and bench/plots/)")
	f.StringVar(&only, "only", "", "comma-separated benchmarks to run: replay,scan,build,dedup,lease,delivery,large,kafka,twodc (default all)")
	f.IntVar(&runs, "runs", 5, "samples per variant")
	f.StringVar(&profile, "cpuprofile", "", "write CPU profiles into this directory: bench.pprof of this process (the delivery benchmark's replayds and bare client run in it), sink-*.pprof of its sinks, serve-*.pprof of the large replay's replayds")
	f.StringVar(&mysqlDSN, "mysql-dsn", "", "MariaDB/MySQL DSN without a database (default $REPLAY_TEST_MYSQL_DSN or root@tcp(127.0.0.1:3306)/)")
	f.StringVar(&mysqlDSN, "mysql", "", "")
	f.MarkDeprecated("mysql", "use --mysql-dsn")
	return cmd
}

// repoRoot is the directory holding go.mod, from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s: run from the repository", dir)
		}
	}
}
