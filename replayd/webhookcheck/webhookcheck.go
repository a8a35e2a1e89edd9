// Package webhookcheck re-checks every registered webhook with the CRC challenge on a schedule, as
// the platform's webhook API does: a webhook that no longer answers is marked invalid (its
// replays are refused with 400/214 and its deliveries stop) until a check passes again, on
// schedule or on demand (PUT /1.1/account_activity/webhooks/{id}.json).
package webhookcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/replay/replay/replayd/app"
)

// Options configure a Checker. Apps and Challenge are required.
type Options struct {
	// Apps is the app store whose webhooks are checked and updated.
	Apps app.Driver
	// Challenge runs one CRC challenge (replayd passes delivery.Challenge bound to its client, so
	// the dial-time guard applies).
	Challenge func(ctx context.Context, url string, secrets ...[]byte) error
	// Interval is the time between two rounds. Default 1 hour.
	Interval time.Duration
	// Timeout bounds one challenge. Default 10s.
	Timeout time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills in the zero fields and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.Interval == 0 {
		o.Interval = time.Hour
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports every problem with o (call EnsureDefaults first).
func (o *Options) Validate() error {
	var errs []string
	if o.Apps == nil {
		errs = append(errs, "Apps is required")
	}
	if o.Challenge == nil {
		errs = append(errs, "Challenge is required")
	}
	if o.Interval <= 0 {
		errs = append(errs, fmt.Sprintf("Interval must be positive, got %v", o.Interval))
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Sprintf("Timeout must be positive, got %v", o.Timeout))
	}
	if len(errs) > 0 {
		return fmt.Errorf("webhookcheck: invalid options: %s", strings.Join(errs, "; "))
	}
	return nil
}

// Result is what one round found.
type Result struct {
	Checked, Valid, Invalid int
	// Changed are the webhooks whose validity the round changed.
	Changed []*app.Webhook
}

// Checker runs rounds of checks. Start it once; Stop is idempotent.
type Checker struct {
	opts Options

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	rounds chan Result // for tests: each finished round, when not full
}

// New returns a Checker for opts (defaults filled in, then validated).
func New(opts Options) (*Checker, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Checker{opts: opts, rounds: make(chan Result, 1)}, nil
}

// Start runs a round every Interval, the first one Interval after Start, until Stop or ctx ends.
func (c *Checker) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return errors.New("webhookcheck: already started")
	}
	ctx, c.cancel = context.WithCancel(ctx)
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		t := time.NewTicker(c.opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			res, err := c.CheckAll(ctx)
			if err != nil && ctx.Err() == nil {
				c.opts.Logger.Warn("webhook re-check round failed", "err", err, "checked", res.Checked)
			}
			select {
			case c.rounds <- res:
			default:
			}
		}
	}()
	return nil
}

// Stop ends the rounds and waits for the one running. It is idempotent.
func (c *Checker) Stop() {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Rounds delivers the result of each scheduled round when the previous one was taken (tests).
func (c *Checker) Rounds() <-chan Result { return c.rounds }

// CheckAll checks every webhook of every app once and records each outcome. A store error ends
// the round; a webhook deleted meanwhile is skipped.
func (c *Checker) CheckAll(ctx context.Context) (Result, error) {
	var res Result
	apps, err := c.opts.Apps.ListApps(ctx, app.ListAppsParams{})
	if err != nil {
		return res, err
	}
	for _, a := range apps {
		hooks, err := c.opts.Apps.ListWebhooks(ctx, app.ListWebhooksParams{AppID: a.ID})
		if err != nil {
			return res, err
		}
		for _, wh := range hooks {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			cctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
			cerr := c.opts.Challenge(cctx, wh.URL, a.Secrets(time.Now())...)
			cancel()
			if ctx.Err() != nil {
				return res, ctx.Err() // stopping: an interrupted challenge says nothing
			}
			valid := cerr == nil
			updated, err := c.opts.Apps.SetWebhookValid(ctx, app.SetWebhookValidParams{ID: wh.ID, AppID: a.ID, Valid: valid})
			if errors.Is(err, app.ErrNotFound) {
				continue
			}
			if err != nil {
				return res, err
			}
			res.Checked++
			if valid {
				res.Valid++
			} else {
				res.Invalid++
			}
			if valid != wh.Valid {
				res.Changed = append(res.Changed, updated)
				level, msg := slog.LevelInfo, "webhook passed its CRC check again: valid"
				if !valid {
					level, msg = slog.LevelWarn, "webhook failed its CRC check: marked invalid"
				}
				c.opts.Logger.Log(ctx, level, msg, "app_id", a.ID, "webhook_id", wh.ID, "url", wh.URL, "err", cerr)
			}
		}
	}
	return res, nil
}
