package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/job"
)

// Locator finds the batches that hold a webhook's events in a time window: the index. It must
// never miss a batch; a superset costs only reading.
type Locator interface {
	Locate(ctx context.Context, partition int32, webhookKey []byte, fromMs, toMs int64) ([]int64, error)
}

// StreamLocator is a Locator that hands its answer over in ascending chunks as it finds them
// (index.Index.LookupStream; together the chunks are Locate's answer): a job starts delivering
// before the whole window is located. emit must not keep the lookup waiting long: the index is
// held while it runs.
type StreamLocator interface {
	Locator
	LocateStream(ctx context.Context, partition int32, webhookKey []byte, fromMs, toMs int64, emit func(offsets []int64) error) error
}

// Target is where a job's events go.
type Target = delivery.Target

// Deliverer POSTs one signed event to a target, retrying as its own policy says; an error means
// the event was not delivered and will not be by retrying now. *delivery.Client is one.
type Deliverer interface {
	Deliver(ctx context.Context, t Target, body []byte) (delivery.Result, error)
}

// Deduper remembers event identities within a job: Seen records h and reports whether it was
// already there.
type Deduper interface {
	Seen(h uint64) bool
}

// Releaser is a Deduper that can be given back once its job is done with it.
type Releaser interface {
	Release()
}

// ErrUndeliverable is what Options.Targets wraps when a webhook can no longer be delivered to (it
// failed its CRC check, or was deleted): a job stops delivering to it and ends Incomplete.
var ErrUndeliverable = errors.New("worker: the webhook can no longer be delivered to")

// DefaultMaxInFlight is Options.MaxInFlight's default: at the default per-webhook rate (2,500/s)
// a webhook 100 ms away needs 250 deliveries in flight.
const DefaultMaxInFlight = 512

// DefaultInitialWindow is Options.InitialWindow's default: the window a job's deliveries start
// at before slow start doubles it per round trip of clean answers. It is small on purpose: a
// job's first requests go to a webhook whose capacity nobody has seen yet, and a fragile one
// (a small server, a function with few warm instances) gets at most 8 at once, then twice as many
// each round trip only while it answers every one at once. The cost is the ramp on a fast
// webhook: 6 round trips to 512 (at 20 ms about 0.1 s, a fifth of a 10,000-event job at a
// raised limit). An operator whose webhooks are known to take it raises it (--initial-window);
// a webhook that cannot still halves the window at its first 429, 5xx or timeout.
const DefaultInitialWindow = 8

// DefaultMaxOutage is Options.MaxOutage's default.
const DefaultMaxOutage = time.Hour

// Options configure a Pool. Jobs, Source, Locator, Targets, Deliverer and NewDeduper are required.
type Options struct {
	Jobs    job.Driver
	Source  engine.Source
	Locator Locator
	// Targets resolves a job's webhook to its URL and its app's secret. An error wrapping
	// ErrUndeliverable (the webhook was marked invalid or deleted) also stops a running job: the
	// heartbeat asks again each time.
	Targets func(ctx context.Context, webhookID int64) (Target, error)
	// Deliverer sends events.
	Deliverer Deliverer
	// NewDeduper makes the dedup cache of one job. When the cache has a Release method
	// (Releaser), the job calls it once it reads no more, so the cache's memory can serve
	// another job.
	NewDeduper func() Deduper
	// Name identifies this process in lease owners. Default "<hostname>:<pid>".
	Name string
	// Workers is how many jobs run at once. Default 4.
	Workers int
	// MaxInFlight bounds the deliveries of one job in flight at once. Within it the window adapts
	// to the webhook (see window): it grows while deliveries succeed at their first attempt and
	// halves after one that needed a retry or failed. It also sets the ordering bound: a delivery
	// never runs MaxAhead(MaxInFlight) (4×, 2048 by default) or more events (in log order) ahead
	// of the oldest one not yet settled. Default 512: at the default per-webhook rate (2,500/s) a
	// webhook 100 ms away needs 250 in flight.
	MaxInFlight int
	// InitialWindow is the window a job's deliveries start at (at most MaxInFlight); slow start
	// doubles it per round trip of deliveries that succeed at their first attempt. Default
	// DefaultInitialWindow (8; why there).
	InitialWindow int
	// StrictOrder delivers one event at a time, in log order (a window of one).
	StrictOrder bool
	// PollInterval is how long an idle worker waits before asking for a job again (Notify wakes
	// it sooner). Default 500ms.
	PollInterval time.Duration
	// LeaseTimeout is how long a job stays ours without a heartbeat; after it another instance
	// takes the job over. Default 30s.
	LeaseTimeout time.Duration
	// HeartbeatInterval is how often a running job heartbeats and checkpoints. Default 1s, or a
	// third of LeaseTimeout when that is shorter.
	HeartbeatInterval time.Duration
	// LeaseMargin is how much earlier than the store a worker considers its lease over: a worker
	// delivers only until the moment its last successful renewal was sent plus LeaseTimeout less
	// LeaseMargin, on its own monotonic clock, so it has stopped before another instance can take
	// the job. Default a tenth of LeaseTimeout.
	LeaseMargin time.Duration
	// MirrorWait is how long a job waits for each mirrored topic (every topic of an
	// engine.Topics Source but the first) to hold a record at or after the window's end before
	// it reads what is there and ends Incomplete naming the topic and the time range that may be
	// missing. Default 30s; negative: not checked.
	MirrorWait time.Duration
	// MaxJobsPerApp, when positive, is the most jobs of one app held at once across every
	// instance on the job store (job.LeaseParams.MaxPerApp): an app's queue cannot take every
	// worker while another app's jobs wait. Default 0, no cap.
	MaxJobsPerApp int
	// MaxOutage is how long a job waits, paused, for its webhook to answer again (outage.go)
	// before it ends INCOMPLETE saying since when the webhook was down; the replay_job_status
	// event is retried as long. Default 1 hour.
	MaxOutage time.Duration
	// OutageRetryMin and OutageRetryMax bound the backoff of the delivery that probes a webhook
	// that is down. Defaults 1s and 30s.
	OutageRetryMin, OutageRetryMax time.Duration
	// Metrics receives counters. Default: NewMetrics(nil), registered nowhere.
	Metrics *Metrics
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills in the defaults of unset fields.
func (o *Options) EnsureDefaults() *Options {
	if o.Name == "" {
		host, _ := os.Hostname()
		o.Name = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.InitialWindow == 0 {
		o.InitialWindow = DefaultInitialWindow
	}
	if o.PollInterval == 0 {
		o.PollInterval = 500 * time.Millisecond
	}
	if o.LeaseTimeout == 0 {
		o.LeaseTimeout = 30 * time.Second
	}
	if o.HeartbeatInterval == 0 {
		// Every second: the checkpoint rides on the heartbeat, and what a takeover delivers
		// again is what was delivered past the last checkpoint (the deliveries in flight and up
		// to one interval of them). One row write per running job per second is nothing to a
		// store; a third of the lease (10 s by default) was 25,000 events at the default rate.
		o.HeartbeatInterval = min(o.LeaseTimeout/3, time.Second)
	}
	if o.LeaseMargin == 0 {
		o.LeaseMargin = o.LeaseTimeout / 10
	}
	if o.MaxOutage == 0 {
		o.MaxOutage = DefaultMaxOutage
	}
	if o.OutageRetryMin == 0 {
		o.OutageRetryMin = time.Second
	}
	if o.OutageRetryMax == 0 {
		o.OutageRetryMax = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MirrorWait == 0 {
		o.MirrorWait = 30 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	return o
}

// Validate reports every missing or impossible field.
func (o *Options) Validate() error {
	var errs []error
	if o.Jobs == nil {
		errs = append(errs, errors.New("Jobs is required"))
	}
	if o.Source == nil {
		errs = append(errs, errors.New("Source is required"))
	}
	if o.Locator == nil {
		errs = append(errs, errors.New("Locator is required"))
	}
	if o.Targets == nil {
		errs = append(errs, errors.New("Targets is required"))
	}
	if o.Deliverer == nil {
		errs = append(errs, errors.New("Deliverer is required"))
	}
	if o.NewDeduper == nil {
		errs = append(errs, errors.New("NewDeduper is required"))
	}
	if o.Workers < 1 {
		errs = append(errs, fmt.Errorf("Workers is %d, want at least 1", o.Workers))
	}
	if o.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("MaxInFlight is %d, want at least 1", o.MaxInFlight))
	}
	if o.InitialWindow < 1 {
		errs = append(errs, fmt.Errorf("InitialWindow is %d, want at least 1", o.InitialWindow))
	}
	if o.HeartbeatInterval >= o.LeaseTimeout {
		errs = append(errs, fmt.Errorf("HeartbeatInterval %v must be shorter than LeaseTimeout %v", o.HeartbeatInterval, o.LeaseTimeout))
	}
	if o.MaxJobsPerApp < 0 {
		errs = append(errs, fmt.Errorf("MaxJobsPerApp is %d, want 0 (no cap) or more", o.MaxJobsPerApp))
	}
	if o.MaxOutage < 0 || o.OutageRetryMin < 0 || o.OutageRetryMax < o.OutageRetryMin {
		errs = append(errs, fmt.Errorf("MaxOutage %v, OutageRetryMin %v, OutageRetryMax %v: want positive, with OutageRetryMin <= OutageRetryMax", o.MaxOutage, o.OutageRetryMin, o.OutageRetryMax))
	}
	if o.LeaseMargin < 0 || o.HeartbeatInterval+o.LeaseMargin >= o.LeaseTimeout {
		errs = append(errs, fmt.Errorf("HeartbeatInterval %v plus LeaseMargin %v must be shorter than LeaseTimeout %v (and LeaseMargin not negative): a renewal must come before the lease runs out here", o.HeartbeatInterval, o.LeaseMargin, o.LeaseTimeout))
	}
	return errors.Join(errs...)
}

// IndexLocator locates events through the index, which scans what it has not indexed yet.
func IndexLocator(ix *index.Index, src engine.Source) Locator { return indexLocator{ix, src} }

type indexLocator struct {
	ix  *index.Index
	src engine.Source
}

func (l indexLocator) Locate(ctx context.Context, p int32, key []byte, from, to int64) ([]int64, error) {
	r, err := l.ix.LookupPartition(ctx, l.src, p, key, from, to)
	return r.Offsets, err
}

func (l indexLocator) LocateStream(ctx context.Context, p int32, key []byte, from, to int64, emit func([]int64) error) error {
	_, err := l.ix.LookupStream(ctx, l.src, p, key, from, to, emit)
	return err
}
