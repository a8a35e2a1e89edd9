package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/diskreserve"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/dedup"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/worker"
)

// Config is what a Server runs with. DataDir is required; every other field has the default
// stated beside it, applied by EnsureDefaults, and Validate checks the result without opening
// or building anything.
type Config struct {
	// DataDir holds the index (DataDir/INDEX, DataDir/index…) and, with the embedded defaults,
	// the log (DataDir/log), the jobs (DataDir/jobs) and the apps (DataDir/apps). Required.
	DataDir string
	// Source is the delivery_log. Default: the embedded log in DataDir/log. An embedded log is
	// served in place (read as a directory source, so producers may keep appending to it), is
	// created with Partitions partitions when missing, and gets Retention applied every
	// LogRetentionEvery.
	Source engine.SourceSpec
	// Partitions is the partition count of a new embedded log. Default 8.
	Partitions int32
	// Listen is the HTTP API's address. Default 127.0.0.1:8080.
	Listen string
	// MySQLDSN, if set, is the MySQL/MariaDB database of the job and app stores; else they are
	// embedded under DataDir.
	MySQLDSN string
	// Workers is how many jobs this instance runs at once. Default 4.
	Workers int
	// MaxInFlight bounds the deliveries of one job in flight at once; within it the window adapts
	// to the webhook (worker.Options.MaxInFlight). It also sets the ordering bound: a delivery
	// never runs worker.MaxAhead(MaxInFlight) (4×) or more events ahead of the oldest one not yet
	// settled. Default 512.
	MaxInFlight int
	// InitialWindow is the window a job's deliveries start at before slow start grows it
	// (worker.Options.InitialWindow). Default worker.DefaultInitialWindow (8), small for webhooks
	// whose capacity is not known.
	InitialWindow int
	// StrictOrder delivers each job's events one at a time, in log order.
	StrictOrder bool
	// MirrorWait is how long a job waits for a mirrored topic (Source.Topics after the first) to
	// reach its window's end before replaying what it holds and ending Incomplete
	// (worker.Options.MirrorWait). Default 30s; negative: not checked.
	MirrorWait time.Duration
	// MaxJobsPerApp is the most jobs of one app running at once across every instance sharing
	// the job store (worker.Options.MaxJobsPerApp); 0 for no cap. Default 0 here; serve's flag
	// defaults to 3, one below its 4 workers, so one app never holds all of them.
	MaxJobsPerApp int
	// MaxOutage is how long a job stays paused while its webhook is down (5xx, 429, timeouts,
	// refused connections after the delivery client's attempts) before it ends INCOMPLETE; the
	// replay_job_status event is retried as long (worker.Options.MaxOutage). Default 1 hour.
	MaxOutage time.Duration
	// AllowPrivateWebhooks lets webhooks resolve to private and loopback addresses.
	AllowPrivateWebhooks bool
	// RateLimit is the replay requests per app per 15 minutes. Default 5.
	RateLimit int
	// WebhookRate is the most events per second delivered to one webhook; math.Inf(1) for no
	// limit. Default delivery.DefaultRateLimit.
	WebhookRate float64
	// LeaseTimeout is how long a job stays with an instance that stopped heartbeating. Default 30s.
	LeaseTimeout time.Duration
	// DedupCapacity is the events remembered per job to drop duplicates. Default 1<<20.
	DedupCapacity int
	// Retention is how far back replays reach, the index keeps entries and the embedded log keeps
	// segments. Default 120h.
	Retention time.Duration
	// Delivery is the base of the delivery client's options (tests shorten its backoffs); the
	// fields above override its AllowPrivate, RateLimit, Concurrency (MaxInFlight) and
	// MaxIdleConnsPerHost.
	Delivery delivery.Options
	// IndexPoll is how often the server looks for a rebuilt index. Default 5s.
	IndexPoll time.Duration
	// Secrets seals app secrets at rest in the app store (app.LoadSecretKey); nil stores them
	// unsealed.
	Secrets *app.Sealer
	// MetricsListen, when set, is the address /metrics is served on instead of Listen (an
	// operators' network, a scraper's port): the API's address then answers /metrics with 404.
	MetricsListen string
	// DiskReserve is the free space the index builder and the embedded stores leave on the data
	// directory's filesystem: below it the builder pauses (lookups scan what is not indexed),
	// store writes answer 503/67, /healthz says "degraded", and all resume by themselves once
	// space returns (package diskreserve says why). Default diskreserve.DefaultReserve
	// (256 MiB); negative checks nothing.
	DiskReserve int64
	// FS is the filesystem of the data directory's Pebble databases (the index, the embedded
	// stores). Default vfs.Default; tests report a filling disk with a diskreserve.FreeFS.
	FS vfs.FS
	// LogRetentionEvery is how often retention is applied to the embedded log. Default 10 minutes.
	LogRetentionEvery time.Duration
	// ShutdownTimeout bounds Stop when its context has no deadline. Default 60s.
	ShutdownTimeout time.Duration
	// HTTPReadTimeout bounds reading a whole request, body included (a client trickling its
	// body is cut off). Default 30s.
	HTTPReadTimeout time.Duration
	// HTTPWriteTimeout bounds a request from the end of its headers to the end of the answer.
	// Default 45s, above the API's own 30s bound on handling a request.
	HTTPWriteTimeout time.Duration
	// HTTPIdleTimeout closes a keep-alive connection idle that long. Default 30s.
	HTTPIdleTimeout time.Duration
	// MaxConns caps the API's open connections; past it new ones wait to be accepted. Default
	// 1024.
	MaxConns int
	// MaxWebhooks caps the webhooks one app may register. Default 50.
	MaxWebhooks int
	// WebhookCheckInterval is how often every webhook is re-checked with the CRC challenge (a
	// failing one is marked invalid: its replays are refused and it gets no deliveries). Default
	// 1h; negative turns the re-check off.
	WebhookCheckInterval time.Duration
	// OperatorToken, when set, is the console's operator token: it shows every app's jobs and
	// webhooks and the instance page (index lag, delivery throughput). Without it the console
	// shows each app its own.
	OperatorToken string
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills in the defaults of unset fields and returns c.
func (c *Config) EnsureDefaults() *Config {
	if c.DiskReserve == 0 {
		c.DiskReserve = diskreserve.DefaultReserve
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.HTTPReadTimeout == 0 {
		c.HTTPReadTimeout = 30 * time.Second
	}
	if c.HTTPWriteTimeout == 0 {
		c.HTTPWriteTimeout = 45 * time.Second
	}
	if c.HTTPIdleTimeout == 0 {
		c.HTTPIdleTimeout = 30 * time.Second
	}
	if c.MaxConns == 0 {
		c.MaxConns = 1024
	}
	if c.MaxWebhooks == 0 {
		c.MaxWebhooks = 50
	}
	if c.WebhookCheckInterval == 0 {
		c.WebhookCheckInterval = time.Hour
	}
	if c.Source.Kind == engine.SourceEmbedded && c.Source.Dir == "" {
		c.Source.Dir = filepath.Join(c.DataDir, "log")
	}
	if c.Source.Topic == "" {
		c.Source.Topic = "delivery_log"
	}
	if c.Partitions == 0 {
		c.Partitions = 8
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = worker.DefaultMaxInFlight
	}
	if c.InitialWindow == 0 {
		c.InitialWindow = worker.DefaultInitialWindow
	}
	if c.RateLimit == 0 {
		c.RateLimit = 5
	}
	if c.WebhookRate == 0 {
		c.WebhookRate = delivery.DefaultRateLimit
	}
	if c.LeaseTimeout == 0 {
		c.LeaseTimeout = 30 * time.Second
	}
	if c.DedupCapacity == 0 {
		c.DedupCapacity = 1 << 20
	}
	if c.Retention == 0 {
		c.Retention = 120 * time.Hour
	}
	if c.IndexPoll == 0 {
		c.IndexPoll = 5 * time.Second
	}
	if c.LogRetentionEvery == 0 {
		c.LogRetentionEvery = 10 * time.Minute
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Source.Logger = c.Logger
	return c
}

// Validate reports every missing or impossible field, all at once.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir is required"))
	}
	if err := c.Source.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("Partitions is %d, want at least 1", c.Partitions))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("Listen %q: %w", c.Listen, err))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("Workers is %d, want at least 1", c.Workers))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"HTTPReadTimeout", c.HTTPReadTimeout}, {"HTTPWriteTimeout", c.HTTPWriteTimeout}, {"HTTPIdleTimeout", c.HTTPIdleTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s is %v, want positive", d.name, d.v))
		}
	}
	if c.MaxConns < 1 {
		errs = append(errs, fmt.Errorf("MaxConns is %d, want at least 1", c.MaxConns))
	}
	if c.MaxWebhooks < 1 {
		errs = append(errs, fmt.Errorf("MaxWebhooks is %d, want at least 1", c.MaxWebhooks))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("MaxInFlight is %d, want at least 1", c.MaxInFlight))
	}
	if c.InitialWindow < 1 {
		errs = append(errs, fmt.Errorf("InitialWindow is %d, want at least 1", c.InitialWindow))
	}
	if !(c.WebhookRate > 0) {
		errs = append(errs, fmt.Errorf("WebhookRate is %v, want positive (math.Inf(1) for no limit)", c.WebhookRate))
	}
	if c.RateLimit < 1 {
		errs = append(errs, fmt.Errorf("RateLimit is %d, want at least 1", c.RateLimit))
	}
	if c.LeaseTimeout <= 0 {
		errs = append(errs, fmt.Errorf("LeaseTimeout is %v, want positive", c.LeaseTimeout))
	}
	dopts := dedup.Options{Capacity: c.DedupCapacity}
	if err := dopts.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("DedupCapacity: %w", err))
	}
	return errors.Join(errs...)
}

func (c *Config) deliveryOptions() delivery.Options {
	o := c.Delivery
	o.AllowPrivate, o.RateLimit = c.AllowPrivateWebhooks, c.WebhookRate
	inFlight := c.MaxInFlight
	if c.StrictOrder {
		inFlight = 1
	}
	o.Concurrency, o.MaxIdleConnsPerHost = inFlight, max(inFlight, 64)
	return o
}

// IsLoopback says addr (host:port) is a loopback address, where private webhooks are allowed
// by default.
func IsLoopback(addr string) bool {
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
