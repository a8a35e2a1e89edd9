package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Options configures a Client. The zero value of a field means its default; EnsureDefaults fills
// them in and Validate reports every remaining problem at once. New does both.
type Options struct {
	// Timeout bounds one attempt: dialing, writing the request and reading the whole answer.
	// Default 10s.
	Timeout time.Duration

	// MaxAttempts is the number of attempts per event, the first included. Default 6.
	MaxAttempts int

	// BackoffBase and BackoffMax shape the wait before a retry: a uniformly random duration in
	// [0, min(BackoffMax, BackoffBase·2^(n-1))] after the n-th failed attempt ("full jitter").
	// Defaults 200ms and 30s.
	BackoffBase time.Duration
	BackoffMax  time.Duration

	// MaxRetryAfter caps an honoured Retry-After (seconds or HTTP-date, on 429 and 503): the
	// retry waits min(Retry-After, MaxRetryAfter) instead of the jittered backoff. Default 60s.
	MaxRetryAfter time.Duration

	// RateLimit is the most events per second sent to one webhook by this process, over all its
	// jobs; RateBurst is how many may go back to back. Every attempt, retries included, takes a
	// token. Defaults 2500/s and 100. math.Inf(1) disables the limit.
	RateLimit float64
	RateBurst int

	// Concurrency is how many deliveries of one job may be in flight at once. 1 (the default)
	// delivers in log order; above 1, completions come back out of order and the job tracks its
	// checkpoint with InOrder. The Client itself does not spawn workers; this sizes its pool.
	Concurrency int

	// MaxIdleConnsPerHost is how many keep-alive connections to one webhook host are kept open
	// between requests. Default 64; must be at least Concurrency.
	MaxIdleConnsPerHost int

	// AllowPrivate lets deliveries reach private (10/8, 172.16/12, 192.168/16, 100.64/10,
	// fc00::/7), loopback, unspecified and multicast addresses. Off by default; the single-process
	// localhost demo turns it on. Link-local and cloud metadata addresses are refused regardless.
	AllowPrivate bool

	// UserAgent is sent on every request. Default "replayd-webhooks/1".
	UserAgent string

	// TLSConfig configures the connections to https webhooks (and the CRC challenge's): nil
	// means the system's roots. Its ServerName, when empty, is each webhook's host; it is never
	// modified.
	TLSConfig *tls.Config

	// Now, Sleep and Jitter are the clock, timer and randomness seams, for tests. Now feeds the
	// rate limiter, Retry-After dates and the latencies in Result; Sleep waits d or until ctx is
	// done (returning ctx.Err()); Jitter returns a uniform random duration in [0, max]. Defaults
	// time.Now, a timer, and math/rand/v2. The per-attempt Timeout always runs on real time.
	Now    func() time.Time
	Sleep  func(ctx context.Context, d time.Duration) error
	Jitter func(max time.Duration) time.Duration
}

// Defaults.
const (
	DefaultTimeout             = 10 * time.Second
	DefaultMaxAttempts         = 6
	DefaultBackoffBase         = 200 * time.Millisecond
	DefaultBackoffMax          = 30 * time.Second
	DefaultMaxRetryAfter       = 60 * time.Second
	DefaultRateLimit           = 2500
	DefaultRateBurst           = 100
	DefaultConcurrency         = 1
	DefaultMaxIdleConnsPerHost = 64
	DefaultUserAgent           = "replayd-webhooks/1"
)

// EnsureDefaults fills every zero field with its default and returns o. Negative values are left
// for Validate to report.
func (o *Options) EnsureDefaults() *Options {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.BackoffBase == 0 {
		o.BackoffBase = DefaultBackoffBase
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.MaxRetryAfter == 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if o.RateLimit == 0 {
		o.RateLimit = DefaultRateLimit
	}
	if o.RateBurst == 0 {
		o.RateBurst = DefaultRateBurst
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = max(DefaultMaxIdleConnsPerHost, o.Concurrency)
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	if o.Jitter == nil {
		o.Jitter = jitter
	}
	return o
}

// Validate reports every problem with o at once (errors.Join), or nil. Call it after
// EnsureDefaults: a zero field is a problem here.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("delivery options: "+format, args...))
	}
	if o.Timeout <= 0 {
		bad("Timeout %v must be positive", o.Timeout)
	}
	if o.MaxAttempts < 1 {
		bad("MaxAttempts %d must be at least 1", o.MaxAttempts)
	}
	if o.BackoffBase <= 0 {
		bad("BackoffBase %v must be positive", o.BackoffBase)
	}
	if o.BackoffMax < o.BackoffBase {
		bad("BackoffMax %v must be at least BackoffBase %v", o.BackoffMax, o.BackoffBase)
	}
	if o.MaxRetryAfter < 0 {
		bad("MaxRetryAfter %v must not be negative", o.MaxRetryAfter)
	}
	if !(o.RateLimit > 0) { // also catches NaN
		bad("RateLimit %v must be positive", o.RateLimit)
	}
	if o.RateBurst < 1 {
		bad("RateBurst %d must be at least 1", o.RateBurst)
	}
	if o.Concurrency < 1 {
		bad("Concurrency %d must be at least 1", o.Concurrency)
	}
	if o.MaxIdleConnsPerHost < o.Concurrency {
		bad("MaxIdleConnsPerHost %d must be at least Concurrency %d, or connections are not reused", o.MaxIdleConnsPerHost, o.Concurrency)
	}
	if o.UserAgent == "" {
		bad("UserAgent must not be empty")
	} else if !httpguts.ValidHeaderFieldValue(o.UserAgent) {
		bad("UserAgent %q is not a valid header value (no control characters such as line breaks)", o.UserAgent)
	}
	if o.Now == nil || o.Sleep == nil || o.Jitter == nil {
		bad("Now, Sleep and Jitter must be set (call EnsureDefaults)")
	}
	return errors.Join(errs...)
}

// sleep is the default Sleep: a real timer that gives up when ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// jitter is the default Jitter: uniform in [0, upTo].
func jitter(upTo time.Duration) time.Duration {
	if upTo <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(upTo) + 1))
}
