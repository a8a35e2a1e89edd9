// Package server is the replay daemon as a library: a Server opens the source, the live index,
// the job and app stores and the delivery client, and runs the index builder, the embedded
// log's retention, the worker pool and the HTTP API until Stop. `replayd serve` and `replayd
// demo` turn flags into a Config and call New, Start and Stop; tests and benchmarks do the same.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/netutil"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/index/diskreserve"
	"github.com/replay/replay/replayd/api"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/embeddedapp"
	"github.com/replay/replay/replayd/app/mysqlapp"
	"github.com/replay/replay/replayd/console"
	"github.com/replay/replay/replayd/dedup"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/embeddedjob"
	"github.com/replay/replay/replayd/job/mysqljob"
	"github.com/replay/replay/replayd/webhookcheck"
	"github.com/replay/replay/replayd/worker"
)

// Server is a replayd: every part it opened and started, to stop in order.
//
// Lifecycle: New opens the parts (nothing runs yet; on error nothing is left open); Start runs
// the builder, the log retention, the workers and the HTTP API; Stop drains and closes
// everything. Stop is idempotent and may be called without Start.
type Server struct {
	c      Config
	src    engine.Source
	ix     *index.Live
	jobs   job.Driver
	apps   app.Driver
	client *delivery.Client
	pool   *worker.Pool
	// dedups holds the dedup caches jobs released, reset, for the next jobs (newDeduper).
	dedups sync.Pool
	reg    *prometheus.Registry
	api    http.Handler
	http   *http.Server
	ln     net.Listener
	// metricsHTTP serves /metrics on Config.MetricsListen, when set.
	metricsHTTP *http.Server
	metricsLn   net.Listener
	checks      *webhookcheck.Checker // nil when the re-check is off
	cons        *console.Console
	// retention applies retention to the embedded logs (one per topic); none for other sources.
	retention []*logRetention

	stopOnce sync.Once
	stopErr  error
}

// New validates c and opens what the server reads and writes: for an embedded source the log
// (created if missing), then the source, the live index, the stores and the delivery client.
func New(ctx context.Context, c Config) (_ *Server, err error) {
	c.EnsureDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{c: c}
	defer func() {
		if err != nil {
			s.Stop(context.Background())
		}
	}()
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return nil, err
	}
	spec := c.Source
	if spec.Kind == engine.SourceEmbedded {
		// The embedded log is read in place, so that producers can keep appending to it; with
		// several topics, each topic's log is (engine.EmbeddedTopicDir beside the first).
		var srcs []engine.Source
		for i := range spec.TopicNames() {
			ts := spec.ForTopic(i)
			if _, err := os.Stat(filepath.Join(ts.Dir, "replay-log.json")); errors.Is(err, os.ErrNotExist) {
				l, err := engine.OpenContext(ctx, engine.Options{Dir: ts.Dir, Topic: ts.Topic, Partitions: c.Partitions, Logger: c.Logger})
				if err != nil {
					return nil, err
				}
				l.Close()
			}
			// Only once the log exists: retention must never be the one that creates it, with the
			// default partition count.
			s.retention = append(s.retention, &logRetention{
				opts:  engine.Options{Dir: ts.Dir, Topic: ts.Topic, Retention: c.Retention, Logger: c.Logger, LockTimeout: -1},
				every: c.LogRetentionEvery,
			})
			ts.Kind = engine.SourceSegments
			src, err := ts.Open(ctx)
			if err != nil {
				for _, o := range srcs {
					o.Close()
				}
				return nil, err
			}
			srcs = append(srcs, src)
		}
		if len(srcs) == 1 {
			s.src = srcs[0]
		} else {
			ts, err := engine.NewTopics(ctx, srcs...)
			if err != nil {
				for _, o := range srcs {
					o.Close()
				}
				return nil, err
			}
			s.src = ts
		}
	} else if s.src, err = spec.Open(ctx); err != nil {
		return nil, err
	}
	// A webhook's partition is of each topic's count (every topic has the same).
	partitions, err := engine.TopicsOf(s.src).PerTopic(ctx)
	if err != nil {
		return nil, err
	}
	if s.ix, err = index.OpenLive(index.LiveOptions{DataDir: c.DataDir, Source: s.src, Retention: c.Retention, Poll: c.IndexPoll, FS: c.FS, DiskReserve: c.DiskReserve, Logger: c.Logger}); err != nil {
		return nil, fmt.Errorf("opening the index in %s: %w", c.DataDir, err)
	}
	// An index of other topics (one, or another list) would answer for the wrong partitions:
	// refuse to start, saying to rebuild it, rather than fail every replay.
	if err := s.ix.CheckSource(ctx); errors.Is(err, index.ErrTopics) {
		return nil, err
	}
	if s.jobs, s.apps, err = openStores(ctx, c); err != nil {
		return nil, err
	}
	if s.client, err = delivery.New(c.deliveryOptions()); err != nil {
		return nil, err
	}
	s.reg = newRegistry(s.ix, s.src, s.jobs, c)
	host, _ := os.Hostname()
	metrics := worker.NewMetrics(s.reg)
	s.pool, err = worker.New(worker.Options{
		Jobs: s.jobs, Source: s.src, Locator: s.ix,
		Targets:    s.target,
		Deliverer:  s.client,
		NewDeduper: s.newDeduper,
		Name:       fmt.Sprintf("%s:%d", host, os.Getpid()),
		Workers:    c.Workers, MaxInFlight: c.MaxInFlight, InitialWindow: c.InitialWindow, StrictOrder: c.StrictOrder, LeaseTimeout: c.LeaseTimeout, MaxOutage: c.MaxOutage, MaxJobsPerApp: c.MaxJobsPerApp,
		MirrorWait: c.MirrorWait,
		Metrics:    metrics, Logger: c.Logger,
	})
	if err != nil {
		return nil, err
	}
	challenge := func(ctx context.Context, url string, secrets ...[]byte) error {
		return delivery.Challenge(ctx, s.client, url, secrets...)
	}
	handler, err := api.New(api.Options{
		Apps: s.apps, Jobs: s.jobs, Partitions: partitions, Challenge: challenge, MaxWebhooks: c.MaxWebhooks,
		Retention: c.Retention, RateLimit: c.RateLimit, Logger: c.Logger, Registry: s.reg,
		Degraded: s.degraded, MetricsElsewhere: c.MetricsListen != "",
	})
	if err != nil {
		return nil, err
	}
	if c.WebhookCheckInterval > 0 {
		if s.checks, err = webhookcheck.New(webhookcheck.Options{Apps: s.apps, Challenge: challenge, Interval: c.WebhookCheckInterval, Logger: c.Logger}); err != nil {
			return nil, err
		}
	}
	if s.cons, err = console.New(console.Options{
		Apps: s.apps, Jobs: s.jobs, Locator: s.ix, Lag: s.ix.Lag, OperatorToken: c.OperatorToken, Logger: c.Logger,
		Delivered: func() int64 {
			var m dto.Metric
			if metrics.EventsDelivered.Write(&m) != nil {
				return 0
			}
			return int64(m.GetCounter().GetValue())
		},
	}); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/console", s.cons)
	mux.Handle("/console/", s.cons)
	mux.Handle("/", notifyOnAccepted(handler, s.pool))
	s.api = mux
	return s, nil
}

// degraded is what /healthz lists while the server serves but not fully: the index builder
// stopped (and is retried), the data directory's disk below its reserve.
func (s *Server) degraded() []string {
	var out []string
	if h := s.ix.Health(); h.Degraded {
		out = append(out, fmt.Sprintf("index builder stopped %s ago after %d failures in a row, retrying (lookups scan what is not indexed): %s",
			time.Since(h.Since).Round(time.Second), h.Failures, h.Err))
	}
	if err := diskreserve.Check(s.c.FS, s.c.DataDir, s.c.DiskReserve); err != nil {
		out = append(out, "data directory: "+err.Error()+" (the index builder pauses, store writes answer 503)")
	}
	return out
}

// Start runs the index builder (following a rebuilt index when `replayd index rebuild`
// switches to one), the embedded log's retention, the workers and the HTTP API on Config.Listen.
func (s *Server) Start(ctx context.Context) error {
	if err := s.ix.Start(ctx); err != nil {
		return err
	}
	for _, r := range s.retention {
		r.Start()
	}
	if err := s.pool.Start(ctx); err != nil {
		return err
	}
	if s.checks != nil {
		if err := s.checks.Start(ctx); err != nil {
			return err
		}
	}
	if err := s.cons.Start(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.c.Listen)
	if err != nil {
		return err
	}
	s.ln = ln
	// Every phase of a connection is bounded, and so is their number: idle and slow clients cannot
	// pile up goroutines and file descriptors.
	s.http = &http.Server{Handler: s.api, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: s.c.HTTPReadTimeout, WriteTimeout: s.c.HTTPWriteTimeout, IdleTimeout: s.c.HTTPIdleTimeout}
	ln = netutil.LimitListener(ln, s.c.MaxConns)
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.c.Logger.Error("http server stopped", "err", err)
		}
	}()
	if s.c.MetricsListen != "" {
		mln, err := net.Listen("tcp", s.c.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		s.metricsLn = mln
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
		s.metricsHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: s.c.HTTPReadTimeout, WriteTimeout: s.c.HTTPWriteTimeout, IdleTimeout: s.c.HTTPIdleTimeout}
		go func() {
			if err := s.metricsHTTP.Serve(netutil.LimitListener(mln, 64)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.c.Logger.Error("metrics http server stopped", "err", err)
			}
		}()
	}
	return nil
}

// MetricsAddr is the address /metrics is served on once started: Config.MetricsListen's, or
// Addr when that is empty.
func (s *Server) MetricsAddr() string {
	if s.metricsLn != nil {
		return s.metricsLn.Addr().String()
	}
	return s.Addr()
}

// Addr is the address the API listens on, once started.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Source is the source the server reads.
func (s *Server) Source() engine.Source { return s.src }

// Index is the live index the server looks events up in.
func (s *Server) Index() *index.Live { return s.ix }

// openStores opens the job and app stores: MySQL when a DSN is given, else embedded under the data
// directory. Nothing is left open when it fails.
func openStores(ctx context.Context, c Config) (job.Driver, app.Driver, error) {
	if c.MySQLDSN != "" {
		jobs, err := mysqljob.Open(ctx, mysqljob.Options{DSN: c.MySQLDSN, LeaseTimeout: c.LeaseTimeout})
		if err != nil {
			return nil, nil, err
		}
		apps, err := mysqlapp.Open(ctx, mysqlapp.Options{DSN: c.MySQLDSN, Secrets: c.Secrets})
		if err != nil {
			jobs.Close()
			return nil, nil, err
		}
		return jobs, apps, nil
	}
	jobs, err := embeddedjob.Open(embeddedjob.Options{Dir: filepath.Join(c.DataDir, "jobs"), LeaseTimeout: c.LeaseTimeout, FS: c.FS, DiskReserve: c.DiskReserve, Logger: c.Logger})
	if err != nil {
		return nil, nil, err
	}
	apps, err := embeddedapp.Open(embeddedapp.Options{Dir: filepath.Join(c.DataDir, "apps"), FS: c.FS, DiskReserve: c.DiskReserve, Secrets: c.Secrets, Logger: c.Logger})
	if err != nil {
		jobs.Close()
		return nil, nil, err
	}
	return jobs, apps, nil
}

// newDeduper makes a job's dedup cache, or reuses one an earlier job released (reset): a fresh
// cache's 24 MiB (the default capacity) are new pages, each faulted in as the first event lands
// on it, about 1.5 µs an event over a 10,000-event job's; a reused one costs a clear. The pool
// lets go of idle caches at the garbage collections after (sync.Pool: two), so an idle server
// does not hold them. Config.Validate checked the options, so New cannot fail.
func (s *Server) newDeduper() worker.Deduper {
	if c, ok := s.dedups.Get().(*dedup.Cache); ok {
		return &pooledDedup{Cache: c, pool: &s.dedups}
	}
	c, err := dedup.New(dedup.Options{Capacity: s.c.DedupCapacity})
	if err != nil {
		// Unreachable after Validate; a default-sized cache keeps the job exact.
		s.c.Logger.Error("dedup cache", "err", err)
		c, _ = dedup.New(dedup.Options{})
	}
	return &pooledDedup{Cache: c, pool: &s.dedups}
}

// pooledDedup is a job's dedup cache, reset and put back in the pool when the job releases it.
type pooledDedup struct {
	*dedup.Cache
	pool *sync.Pool
}

func (p *pooledDedup) Release() {
	c := p.Cache
	p.Cache = nil // a use after the release fails loudly
	c.Reset()
	p.pool.Put(c)
}

// target resolves a webhook to its URL and its app's secret.
func (s *Server) target(ctx context.Context, webhookID int64) (worker.Target, error) {
	w, err := s.apps.GetWebhook(ctx, app.GetWebhookParams{ID: webhookID})
	if errors.Is(err, app.ErrNotFound) {
		return worker.Target{}, fmt.Errorf("webhook %d was deleted: %w", webhookID, worker.ErrUndeliverable)
	}
	if err != nil {
		return worker.Target{}, err
	}
	if !w.Valid {
		return worker.Target{}, fmt.Errorf("webhook %d is marked invalid: it failed its CRC check (PUT /1.1/account_activity/webhooks/%d.json checks it again): %w", webhookID, webhookID, worker.ErrUndeliverable)
	}
	a, err := s.apps.GetApp(ctx, app.GetAppParams{ID: w.AppID})
	if err != nil {
		return worker.Target{}, err
	}
	t := worker.Target{WebhookID: strconv.FormatInt(webhookID, 10), URL: w.URL, Secret: a.Secret, StandardWebhooks: a.StandardWebhooks}
	if secrets := a.Secrets(time.Now()); len(secrets) > 1 {
		t.PreviousSecret = secrets[1] // a rotation's overlap: signed with both
	}
	return t, nil
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

// Stop drains and closes everything: the HTTP server stops taking requests, the workers
// checkpoint and release their jobs, the builder stops, the stores close. It is idempotent:
// later calls return the first one's result. A ctx without a deadline gets
// Config.ShutdownTimeout.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.c.ShutdownTimeout)
			defer cancel()
		}
		var errs []error
		if s.http != nil {
			errs = append(errs, s.http.Shutdown(ctx))
		}
		if s.metricsHTTP != nil {
			errs = append(errs, s.metricsHTTP.Shutdown(ctx))
		}
		if s.checks != nil {
			s.checks.Stop()
		}
		if s.cons != nil {
			s.cons.Stop()
		}
		if s.pool != nil {
			errs = append(errs, s.pool.Stop(ctx))
		}
		if s.client != nil {
			s.client.Close()
		}
		for _, r := range s.retention {
			r.Stop()
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
