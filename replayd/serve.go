package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/replayd/api"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/embeddedapp"
	"github.com/replay/replay/replayd/app/mysqlapp"
	"github.com/replay/replay/replayd/dedup"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/embeddedjob"
	"github.com/replay/replay/replayd/job/mysqljob"
	"github.com/replay/replay/replayd/worker"
)

// serveConfig is what `replayd serve` runs with.
type serveConfig struct {
	src           sourceFlags
	listen        string
	mysqlDSN      string
	workers       int
	concurrency   int
	partitions    int32
	allowPrivate  bool
	rateLimit     int
	eventsPerSec  float64
	leaseTimeout  time.Duration
	dedupCapacity int
	retention     time.Duration
	// delivery is the base of the delivery client's options; tests shorten its backoffs.
	delivery delivery.Options
	// indexPoll is how often the server looks for a rebuilt index. Default 5s.
	indexPoll time.Duration
	// logRetentionEvery is how often the server applies --retention to the embedded log.
	// Default 10 minutes.
	logRetentionEvery time.Duration
}

func newServeCommand() *cobra.Command {
	var c serveConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the replay API, the index builder and the replay workers",
		Long: `Run the replay service: the HTTP replay API on --listen, the index builder tailing the
delivery_log, and --workers replay workers delivering jobs to webhooks.

With no flags everything is embedded under --data (default ./data): the log in DATA/log (read
in place, so 'loadgen produce' can keep writing it; an empty one is created if missing), the index
in DATA/index, jobs in DATA/jobs and apps in DATA/apps. Nothing else to install.

Production: --kafka-brokers host:9092,... (or --segments-dir for a broker's log directory) and
--mysql-dsn for the job and app stores, shared by every instance. SIGTERM or SIGINT drains: no
new leases, running jobs checkpoint and are released for another instance, then exit 0.

` + sourceFlagsHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("allow-private-webhooks") {
				c.allowPrivate = isLoopbackListen(c.listen)
			}
			if !cmd.Flags().Changed("source") {
				switch {
				case c.src.brokers != "":
					c.src.source = "kafka"
				case c.src.segmentsDir != "":
					c.src.source = "segments"
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			s, err := startServer(ctx, c, logger)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "replayd: serving on http://%s (data %s)\n", s.Addr(), c.src.data)
			<-ctx.Done()
			logger.Info("shutting down: draining jobs")
			shutdown, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			return s.Stop(shutdown)
		},
	}
	f := cmd.Flags()
	addSourceFlags(f, &c.src)
	f.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address of the HTTP API")
	f.StringVar(&c.mysqlDSN, "mysql-dsn", "", "MySQL/MariaDB data source name for the job and app stores (default: embedded stores under --data)")
	f.IntVar(&c.workers, "workers", 4, "replay jobs run at once by this instance")
	f.IntVar(&c.concurrency, "delivery-concurrency", 1, "deliveries of one job in flight at once; 1 delivers in log order")
	f.Int32Var(&c.partitions, "partitions", 8, "partition count of a new embedded log")
	f.BoolVar(&c.allowPrivate, "allow-private-webhooks", false, "let webhooks resolve to private and loopback addresses (default: allowed when --listen is a loopback address, for local demos); link-local and metadata addresses are always refused")
	f.IntVar(&c.rateLimit, "rate-limit", 5, "replay requests per app per 15 minutes")
	f.Float64Var(&c.eventsPerSec, "webhook-rate", delivery.DefaultRateLimit, "most events per second delivered to one webhook")
	f.DurationVar(&c.leaseTimeout, "lease-timeout", 30*time.Second, "how long a job stays with an instance that stopped heartbeating before another takes it over")
	f.IntVar(&c.dedupCapacity, "dedup-capacity", 1<<20, "events remembered per job to drop duplicates (about 24 bytes each)")
	f.DurationVar(&c.retention, "retention", 120*time.Hour, "how far back replays may reach and the index keeps entries (the delivery_log's retention)")
	return cmd
}

func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// server is a running replayd: every part it started, to stop in order.
type server struct {
	log    *slog.Logger
	src    engine.Source
	ix     *liveIndex
	jobs   job.Driver
	apps   app.Driver
	client *delivery.Client
	pool   *worker.Pool
	http   *http.Server
	ln     net.Listener
	// retainLog stops the embedded log's retention; nil for other sources.
	retainLog func()
	stopOnce  sync.Once
	stopErr   error
}

// Addr is the address the API listens on.
func (s *server) Addr() string { return s.ln.Addr().String() }

// startServer opens the stores, the source and the index, and starts the builder, the workers
// and the HTTP API.
func startServer(ctx context.Context, c serveConfig, logger *slog.Logger) (_ *server, err error) {
	s := &server{log: logger}
	defer func() {
		if err != nil {
			s.Stop(context.Background())
		}
	}()
	if err := os.MkdirAll(c.src.data, 0o755); err != nil {
		return nil, err
	}
	if c.src.source == "embedded" {
		// serve reads the embedded log in place, so that producers can keep appending to it.
		dir := filepath.Join(c.src.data, "log")
		if _, err := os.Stat(filepath.Join(dir, "replay-log.json")); errors.Is(err, os.ErrNotExist) {
			l, err := engine.Open(engine.Options{Dir: dir, Topic: c.src.topic, Partitions: c.partitions})
			if err != nil {
				return nil, err
			}
			l.Close()
		}
		// Only once the log exists: retention must never be the one that creates it, with the
		// default partition count.
		s.retainLog = startLogRetention(engine.Options{Dir: dir, Topic: c.src.topic, Retention: c.retention, Logger: logger, LockTimeout: -1}, c.logRetentionEvery)
		c.src.source = "segments=" + dir
	}
	if s.src, err = openSource(ctx, &c.src); err != nil {
		return nil, err
	}
	partitions, err := s.src.Partitions(ctx)
	if err != nil {
		return nil, err
	}
	if s.ix, err = openServingIndex(c.src.data, s.src, c.retention, logger); err != nil {
		return nil, fmt.Errorf("opening the index in %s: %w", c.src.data, err)
	}
	if s.jobs, s.apps, err = openStores(ctx, c); err != nil {
		return nil, err
	}
	dopts := c.delivery
	dopts.AllowPrivate, dopts.RateLimit = c.allowPrivate, c.eventsPerSec
	dopts.Concurrency, dopts.MaxIdleConnsPerHost = max(c.concurrency, 1), max(c.concurrency, 64)
	if s.client, err = delivery.New(dopts); err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerIndexLag(reg, s.ix)
	reg.MustRegister(jobsCollector{jobs: s.jobs,
		desc: prometheus.NewDesc("replay_jobs", "Replay jobs in the job store, by state (all instances').", []string{"state"}, nil)})
	host, _ := os.Hostname()
	s.pool, err = worker.New(worker.Options{
		Jobs: s.jobs, Source: s.src, Locator: s.ix,
		Targets:    s.target,
		Deliverer:  s.client,
		NewDeduper: func() worker.Deduper { return mustDedup(c.dedupCapacity) },
		Name:       fmt.Sprintf("%s:%d", host, os.Getpid()),
		Workers:    c.workers, Concurrency: c.concurrency, LeaseTimeout: c.leaseTimeout,
		Metrics: worker.NewMetrics(reg), Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	if _, err := dedup.New(dedup.Options{Capacity: c.dedupCapacity}); err != nil {
		return nil, fmt.Errorf("--dedup-capacity: %w", err)
	}
	handler, err := api.New(api.Options{
		Apps: s.apps, Jobs: s.jobs, Partitions: partitions,
		Challenge: func(ctx context.Context, url string, secret []byte) error {
			return delivery.Challenge(ctx, s.client, url, secret)
		},
		Retention: c.retention, RateLimit: c.rateLimit, Logger: logger, Registry: reg,
	})
	if err != nil {
		return nil, err
	}

	// The builder tails the log into the index for as long as the server runs, and follows a
	// rebuilt index when `replayd index rebuild` switches to one.
	poll := c.indexPoll
	if poll == 0 {
		poll = 5 * time.Second
	}
	s.ix.start(poll)
	if err := s.pool.Start(ctx); err != nil {
		return nil, err
	}
	if s.ln, err = net.Listen("tcp", c.listen); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", notifyOnAccepted(handler, s.pool))
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server stopped", "err", err)
		}
	}()
	return s, nil
}

// startLogRetention applies retention to the embedded log every interval, and once at once. The
// server only reads the log, so retention is the job of whoever holds it for writing: this opens
// it for a moment when no producer does (a producer that runs applies it itself), which deletes
// whole expired segments; the server's reads of them finish on the files they have open.
func startLogRetention(o engine.Options, every time.Duration) (stop func()) {
	if every <= 0 {
		every = 10 * time.Minute
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			l, err := engine.Open(o) // recovers, then enforces retention
			if err == nil {
				err = l.Close()
			}
			if err != nil {
				o.Logger.Debug("embedded log retention skipped: a producer has the log open", "err", err)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// openStores opens the job and app stores: MySQL when a DSN is given, else embedded under the data
// directory. Nothing is left open when it fails.
func openStores(ctx context.Context, c serveConfig) (job.Driver, app.Driver, error) {
	if c.mysqlDSN != "" {
		jobs, err := mysqljob.Open(ctx, mysqljob.Options{DSN: c.mysqlDSN, LeaseTimeout: c.leaseTimeout})
		if err != nil {
			return nil, nil, err
		}
		apps, err := mysqlapp.Open(ctx, mysqlapp.Options{DSN: c.mysqlDSN})
		if err != nil {
			jobs.Close()
			return nil, nil, err
		}
		return jobs, apps, nil
	}
	jobs, err := embeddedjob.Open(embeddedjob.Options{Dir: filepath.Join(c.src.data, "jobs"), LeaseTimeout: c.leaseTimeout})
	if err != nil {
		return nil, nil, err
	}
	apps, err := embeddedapp.Open(embeddedapp.Options{Dir: filepath.Join(c.src.data, "apps")})
	if err != nil {
		jobs.Close()
		return nil, nil, err
	}
	return jobs, apps, nil
}

func mustDedup(capacity int) *dedup.Cache {
	c, err := dedup.New(dedup.Options{Capacity: capacity})
	if err != nil {
		panic(err) // validated when the server started
	}
	return c
}

// target resolves a webhook to its URL and its app's secret.
func (s *server) target(ctx context.Context, webhookID int64) (worker.Target, error) {
	w, err := s.apps.GetWebhook(ctx, app.GetWebhookParams{ID: webhookID})
	if err != nil {
		return worker.Target{}, err
	}
	a, err := s.apps.GetApp(ctx, app.GetAppParams{ID: w.AppID})
	if err != nil {
		return worker.Target{}, err
	}
	return worker.Target{WebhookID: strconv.FormatInt(webhookID, 10), URL: w.URL, Secret: a.Secret}, nil
}

// notifyOnAccepted wakes an idle worker when a replay request was accepted, so that a job
// starts at once instead of at the next poll.
func notifyOnAccepted(next http.Handler, pool *worker.Pool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == http.StatusAccepted {
			pool.Notify()
		}
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// registerIndexLag exposes, per partition, how many offsets the index is behind the log.
func registerIndexLag(reg *prometheus.Registry, ix *liveIndex) {
	reg.MustRegister(indexLagCollector{ix: ix,
		desc: prometheus.NewDesc("replay_index_lag_offsets", "Offsets of the log not yet indexed, per partition.", []string{"partition"}, nil)})
}

type indexLagCollector struct {
	ix   *liveIndex
	desc *prometheus.Desc
}

func (c indexLagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c indexLagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lags, err := c.ix.Lag(ctx)
	if err != nil {
		return
	}
	for _, l := range lags {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.Lag), strconv.Itoa(int(l.Partition)))
	}
}

// jobsCollector counts the job store's jobs by state at each scrape.
type jobsCollector struct {
	jobs job.Driver
	desc *prometheus.Desc
}

func (c jobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c jobsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.jobs.Count(ctx, job.CountParams{})
	if err != nil {
		return
	}
	for _, st := range job.AllStates {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), st.String())
	}
}

// Stop drains and closes everything: the HTTP server stops taking requests, the workers
// checkpoint and release their jobs, the builder stops, the stores close. It is idempotent.
func (s *server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		var errs []error
		if s.http != nil {
			errs = append(errs, s.http.Shutdown(ctx))
		}
		if s.pool != nil {
			errs = append(errs, s.pool.Stop(ctx))
		}
		if s.client != nil {
			s.client.Close()
		}
		if s.retainLog != nil {
			s.retainLog()
		}
		if s.ix != nil {
			errs = append(errs, s.ix.Close())
		}
		if s.jobs != nil {
			errs = append(errs, s.jobs.Close())
		}
		if s.apps != nil {
			errs = append(errs, s.apps.Close())
		}
		if s.src != nil {
			errs = append(errs, s.src.Close())
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}
