package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/job"
)

// Options configure the HTTP API. Apps, Jobs, Partitions and Challenge are required; every other
// field has the default stated beside it, applied by EnsureDefaults.
type Options struct {
	// Apps is the app store: bearer tokens, secrets, webhooks. Required.
	Apps app.Driver
	// Jobs is the job store replay requests are written to. Required.
	Jobs job.Driver
	// Partitions is delivery_log's partition count: a job's partition is
	// engine.PartitionFor(webhook id in decimal, Partitions). Required, positive.
	Partitions int32
	// Challenge runs the CRC challenge against a webhook URL being registered, with the app's
	// secret (the HMAC key, app.App.Secret); nil error means the URL answered correctly. Required
	// (replayd passes delivery.Challenge bound to its HTTP client).
	Challenge func(ctx context.Context, url string, secrets ...[]byte) error
	// ChallengeTimeout bounds one challenge. Default 10s.
	ChallengeTimeout time.Duration
	// Now is the clock replay windows and the rate limit are judged by. Default time.Now.
	Now func() time.Time
	// Retention is how far back from_date may reach (delivery_log's retention). Default 5 days.
	Retention time.Duration
	// RateLimit is the number of replay requests an app may make per RateWindow. Default 5.
	RateLimit int
	// RateWindow is the rate limit's window. Default 15 minutes.
	RateWindow time.Duration
	// RegistrationLimit is the number of webhook registrations (POST webhooks.json, whatever
	// their outcome) an app may make per RegistrationWindow: each runs a CRC challenge, an
	// outbound request the caller chooses. Default 15.
	RegistrationLimit int
	// RegistrationWindow is the registration limit's window. Default 15 minutes.
	RegistrationWindow time.Duration
	// MaxWebhooks caps the webhooks one app may have registered. Default 50.
	MaxWebhooks int
	// RequestTimeout bounds the handling of one request (store calls and the challenge); a store
	// that does not answer in time is reported as 503/67. Default 30s.
	RequestTimeout time.Duration
	// MaxBodyBytes bounds request bodies (the API takes its arguments in the query; bodies are
	// not read). Default 64 KiB.
	MaxBodyBytes int64
	// Logger receives one structured line per request and the details of server-side errors.
	// Default slog.Default().
	Logger *slog.Logger
	// Degraded, when set, lists what is wrong while the server still serves (the index builder
	// stopped, the disk below its reserve): GET /healthz answers 200 with status "degraded" and
	// these. Default none.
	Degraded func() []string
	// Registry, when set, receives the API's metrics and is served on GET /metrics.
	Registry *prometheus.Registry
	// MetricsElsewhere says Registry is served on another address (server.Config.MetricsListen):
	// GET /metrics is not served here.
	MetricsElsewhere bool
}

// EnsureDefaults fills in the zero fields with their defaults and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.ChallengeTimeout == 0 {
		o.ChallengeTimeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Retention == 0 {
		o.Retention = 5 * 24 * time.Hour
	}
	if o.RateLimit == 0 {
		o.RateLimit = 5
	}
	if o.RateWindow == 0 {
		o.RateWindow = 15 * time.Minute
	}
	if o.RegistrationLimit == 0 {
		o.RegistrationLimit = 15
	}
	if o.RegistrationWindow == 0 {
		o.RegistrationWindow = 15 * time.Minute
	}
	if o.MaxWebhooks == 0 {
		o.MaxWebhooks = 50
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 64 << 10
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports every problem with o at once (call EnsureDefaults first).
func (o *Options) Validate() error {
	var errs []string
	if o.Apps == nil {
		errs = append(errs, "Apps is required")
	}
	if o.Jobs == nil {
		errs = append(errs, "Jobs is required")
	}
	if o.Partitions <= 0 {
		errs = append(errs, fmt.Sprintf("Partitions must be positive, got %d", o.Partitions))
	}
	if o.Challenge == nil {
		errs = append(errs, "Challenge is required")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ChallengeTimeout", o.ChallengeTimeout}, {"Retention", o.Retention}, {"RateWindow", o.RateWindow}, {"RegistrationWindow", o.RegistrationWindow}, {"RequestTimeout", o.RequestTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Sprintf("%s must be positive, got %v", d.name, d.v))
		}
	}
	if o.RateLimit <= 0 {
		errs = append(errs, fmt.Sprintf("RateLimit must be positive, got %d", o.RateLimit))
	}
	if o.RegistrationLimit <= 0 {
		errs = append(errs, fmt.Sprintf("RegistrationLimit must be positive, got %d", o.RegistrationLimit))
	}
	if o.MaxWebhooks <= 0 {
		errs = append(errs, fmt.Sprintf("MaxWebhooks must be positive, got %d", o.MaxWebhooks))
	}
	if o.MaxBodyBytes <= 0 {
		errs = append(errs, fmt.Sprintf("MaxBodyBytes must be positive, got %d", o.MaxBodyBytes))
	}
	if o.Now == nil || o.Logger == nil {
		errs = append(errs, "Now and Logger must be set")
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("api: invalid options: %w", errors.New(strings.Join(errs, "; ")))
}
