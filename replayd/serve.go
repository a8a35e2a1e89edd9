package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/replay/replay/index/diskreserve"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/server"
	"github.com/replay/replay/replayd/worker"
)

func newServeCommand() *cobra.Command {
	var (
		src     sourceFlags
		c       server.Config
		reserve string
		keyFile string
		// operatorTokenFile is --operator-token-file.
		operatorTokenFile string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the replay API, the index builder and the replay workers",
		Long: `Run the replay service: the HTTP replay API on --listen, the index builder tailing the
delivery_log, and --workers replay workers delivering jobs to webhooks.

With no flags everything is embedded under --data (default ./data): the log in DATA/log (read
in place, so 'loadgen produce' can keep writing it; an empty one is created if missing), the index
in DATA/index, jobs in DATA/jobs and apps in DATA/apps. Nothing else to install.

The console is at http://LISTEN/console: an app's bearer token shows that app's replay jobs
and webhooks; the operator token (--operator-token-file, or $REPLAYD_OPERATOR_TOKEN) shows every
app's and the instance's index lag and delivery throughput.

Production: --kafka-brokers host:9092,... (or --segments-dir for a broker's log directory) and
--mysql-dsn for the job and app stores, shared by every instance. SIGTERM or SIGINT drains: no
new leases, running jobs checkpoint and are released for another instance, then exit 0.

` + sourceFlagsHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if !cmd.Flags().Changed("allow-private-webhooks") {
				c.AllowPrivateWebhooks = server.IsLoopback(c.Listen)
			}
			switch {
			case c.WebhookRate == 0:
				c.WebhookRate = math.Inf(1) // the flag's documented "no limit"
			case c.WebhookRate < 0 || math.IsNaN(c.WebhookRate):
				return fmt.Errorf("--webhook-rate %v: want events per second, or 0 for no limit", c.WebhookRate)
			}
			if c.Secrets, err = app.LoadSecretKey(keyFile); err != nil {
				return err
			}
			if c.DiskReserve, err = diskreserve.Parse(reserve); err != nil {
				return fmt.Errorf("--disk-reserve: %w", err)
			}
			if c.DiskReserve == 0 {
				c.DiskReserve = -1 // the flag's documented "no reserve"
			}
			if !cmd.Flags().Changed("source") {
				switch {
				case src.brokers != "":
					src.source = "kafka"
				case src.segmentsDir != "":
					src.source = "segments"
				}
			}
			spec, err := src.spec()
			if err != nil {
				return err
			}
			c.DataDir, c.Source = src.data, spec
			if c.OperatorToken, err = operatorToken(cmd, operatorTokenFile); err != nil {
				return err
			}
			c.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			ctx := cmd.Context() // canceled by SIGINT or SIGTERM (main)
			s, err := server.New(ctx, c)
			if err != nil {
				return err
			}
			if err := s.Start(ctx); err != nil {
				s.Stop(context.Background())
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "replayd: serving on http://%s (data %s)\n", s.Addr(), c.DataDir)
			<-ctx.Done()
			c.Logger.Info("shutting down: draining jobs")
			return s.Stop(context.Background())
		},
	}
	f := cmd.Flags()
	addSourceFlags(f, &src)
	f.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "address of the HTTP API")
	f.StringVar(&c.MetricsListen, "metrics-listen", "", "serve /metrics on this address instead of on --listen (which then answers it 404); empty: on --listen")
	f.StringVar(&c.MySQLDSN, "mysql-dsn", "", "MySQL/MariaDB data source name for the job and app stores (default: embedded stores under --data)")
	f.IntVar(&c.Workers, "workers", 4, "replay jobs run at once by this instance")
	f.IntVar(&c.MaxInFlight, "max-in-flight", worker.DefaultMaxInFlight, "most deliveries of one job in flight at once: the window adapts to the webhook below it (grows while deliveries succeed at once, halves on 429, 5xx, timeouts), and no delivery runs 4 times this many events or more ahead of the oldest one not yet settled")
	f.IntVar(&c.InitialWindow, "initial-window", worker.DefaultInitialWindow, "deliveries of a job in flight at its start, doubled every round trip while the webhook answers them all at once, up to --max-in-flight: small so that a webhook of unknown capacity is not hit hard; raise it for webhooks known to take more (at 20 ms the default's ramp to 512 takes 6 round trips)")
	f.IntVar(&c.MaxJobsPerApp, "max-jobs-per-app", 3, "most jobs of one app running at once across all instances sharing the job store, so one app cannot take every worker while another waits (a fleet raises it: instances × workers − 1, say); 0 for no cap")
	f.DurationVar(&c.MaxOutage, "max-outage", worker.DefaultMaxOutage, "how long a job stays paused while its webhook is down (5xx, 429, timeouts, refused connections) before it ends INCOMPLETE saying since when; the replay_job_status event is retried as long")
	f.BoolVar(&c.StrictOrder, "strict-order", false, "deliver each job's events one at a time, in log order (as --max-in-flight 1)")
	f.IntVar(&c.MaxInFlight, "delivery-concurrency", worker.DefaultMaxInFlight, "")
	f.MarkDeprecated("delivery-concurrency", "use --max-in-flight (the window now adapts below it), or --strict-order for one at a time")
	f.Int32Var(&c.Partitions, "partitions", 8, "partition count of a new embedded log")
	f.DurationVar(&c.MirrorWait, "mirror-wait", 30*time.Second, "with --topics, how long a job waits for each mirrored topic to hold an event at or after its window's end before it replays what is there and ends Incomplete naming the topic and the time range that may be missing; negative: not checked")
	f.BoolVar(&c.AllowPrivateWebhooks, "allow-private-webhooks", false, "let webhooks resolve to private and loopback addresses (default: allowed when --listen is a loopback address, for local demos); link-local and metadata addresses are always refused")
	f.IntVar(&c.RateLimit, "app-rate-limit", 5, "replay requests per app per 15 minutes")
	f.IntVar(&c.RateLimit, "rate-limit", 5, "")
	f.MarkDeprecated("rate-limit", "use --app-rate-limit")
	f.Float64Var(&c.WebhookRate, "webhook-rate", delivery.DefaultRateLimit, "most events per second delivered to one webhook by this instance, over all its jobs; 0 for no limit")
	f.DurationVar(&c.HTTPReadTimeout, "http-read-timeout", 30*time.Second, "bound on reading a whole request, body included")
	f.DurationVar(&c.HTTPWriteTimeout, "http-write-timeout", 45*time.Second, "bound on a request from the end of its headers to the end of the answer")
	f.DurationVar(&c.HTTPIdleTimeout, "http-idle-timeout", 30*time.Second, "an idle keep-alive connection is closed after this")
	f.IntVar(&c.MaxConns, "max-connections", 1024, "most open connections to the API; past it new ones wait")
	f.IntVar(&c.MaxWebhooks, "max-webhooks", 50, "most webhooks one app may register")
	f.DurationVar(&c.WebhookCheckInterval, "webhook-check-interval", time.Hour, "how often every webhook is re-checked with the CRC challenge (a failing one is marked invalid until a check passes); negative: never")
	f.DurationVar(&c.LeaseTimeout, "lease-timeout", 30*time.Second, "how long a job stays with an instance that stopped heartbeating before another takes it over")
	f.IntVar(&c.DedupCapacity, "dedup-capacity", 1<<20, "events remembered per job to drop duplicates (about 24 bytes each)")
	f.StringVar(&c.OperatorToken, "operator-token", "", "the console's operator token, which shows every app's jobs and webhooks and the instance page (default: --operator-token-file, else $REPLAYD_OPERATOR_TOKEN; none: each app sees only its own). A flag's value is visible to every user of the machine (ps): prefer the file or the environment")
	f.StringVar(&operatorTokenFile, "operator-token-file", "", "a file holding the console's operator token (surrounding whitespace ignored)")
	f.DurationVar(&c.Retention, "retention", 120*time.Hour, "how far back replays may reach and the index keeps entries (the delivery_log's retention)")
	f.StringVar(&keyFile, "secret-key-file", "", secretKeyFlagHelp)
	f.StringVar(&reserve, "disk-reserve", diskreserve.Format(diskreserve.DefaultReserve), "free space the index and the embedded stores leave on the data directory's disk: below it the index builder pauses (replays still exact, scanning what is not indexed), store writes answer 503, /healthz says degraded, and all resume when space returns; 0 for none")
	return cmd
}

// operatorToken is the console's operator token: --operator-token, else the contents of
// --operator-token-file, else $REPLAYD_OPERATOR_TOKEN. Giving both flags is an error.
func operatorToken(cmd *cobra.Command, file string) (string, error) {
	flag := cmd.Flags().Lookup("operator-token").Value.String()
	switch {
	case cmd.Flags().Changed("operator-token") && file != "":
		return "", errors.New("--operator-token and --operator-token-file both given: use one")
	case cmd.Flags().Changed("operator-token"):
		return flag, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--operator-token-file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("--operator-token-file: %s holds no token", file)
		}
		return tok, nil
	}
	return os.Getenv("REPLAYD_OPERATOR_TOKEN"), nil
}
