package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/replay/replay/loadgen/replay"
	"github.com/replay/replay/loadgen/verify"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/receiver"
)

// sinkFlags are the flags that configure a sink (loadgen sink, and loadgen replay's in-process sink).
type sinkFlags struct {
	secret, record string
	bodies         bool
	standard       bool
	tolerance      time.Duration
	faults         receiver.Faults
}

func (s *sinkFlags) add(cmd *cobra.Command, prefix string) {
	f := cmd.Flags()
	f.StringVar(&s.secret, "secret", os.Getenv("LOADGEN_SECRET"), "the app secret (as 'replayd apps create' printed it) that signs deliveries and CRC answers (default $LOADGEN_SECRET)")
	f.StringVar(&s.record, "record", "", "append every delivery to this file as JSON lines (what 'loadgen verify' reads)")
	f.BoolVar(&s.bodies, "record-bodies", false, "put the delivered bodies into the record too (large)")
	f.BoolVar(&s.standard, "standard-webhooks", false, "also require and verify the Standard Webhooks headers (webhook-id, webhook-timestamp within --tolerance, webhook-signature) with --secret, for an app created with --standard-webhooks")
	f.DurationVar(&s.tolerance, "tolerance", delivery.DefaultTolerance, "with --standard-webhooks: how far webhook-timestamp may be from this clock before a request is refused as stale or replayed")
	f.Float64Var(&s.faults.ErrorRate, prefix+"error-rate", 0, "fraction of deliveries answered 500")
	f.Float64Var(&s.faults.ThrottleRate, prefix+"throttle-rate", 0, "fraction of deliveries answered 429 with Retry-After")
	f.DurationVar(&s.faults.RetryAfter, prefix+"retry-after", time.Second, "the Retry-After of throttled answers (whole seconds)")
	f.DurationVar(&s.faults.Latency, prefix+"latency", 0, "added to every answer")
	f.Float64Var(&s.faults.TimeoutRate, prefix+"timeout-rate", 0, "fraction of deliveries held --timeout-hold (longer than the client waits), then 503")
	f.DurationVar(&s.faults.TimeoutHold, prefix+"timeout-hold", 30*time.Second, "how long a timed-out delivery is held")
	f.Float64Var(&s.faults.ResetRate, prefix+"reset-rate", 0, "fraction of deliveries whose connection is reset (TCP RST) instead of answered")
}

// start listens on addr and serves a sink; stop flushes and closes the record.
func (s *sinkFlags) start(addr string) (sk *receiver.Sink, addrOut net.Addr, stop func() error, err error) {
	if s.secret == "" {
		return nil, nil, nil, errors.New("--secret is required: the app secret that 'replayd apps create' printed")
	}
	if err := s.faults.Validate(); err != nil {
		return nil, nil, nil, err
	}
	if s.tolerance <= 0 {
		return nil, nil, nil, fmt.Errorf("--tolerance %v: want a positive duration", s.tolerance)
	}
	o := receiver.Options{Secret: []byte(s.secret), RecordBodies: s.bodies, StandardWebhooks: s.standard, Tolerance: s.tolerance}
	var f *os.File
	var bw *bufio.Writer
	if s.record != "" {
		if f, err = os.OpenFile(s.record, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return nil, nil, nil, err
		}
		bw = bufio.NewWriterSize(f, 1<<20)
		o.Record = bw
	}
	sk = receiver.NewWithOptions(o)
	sk.SetFaults(s.faults)
	srv, err := receiver.Listen(addr, sk, time.Second) // the record is flushed at least every second
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, nil, nil, err
	}
	stop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Stop(ctx)
		if f != nil {
			err = errors.Join(err, f.Close())
		}
		return err
	}
	return sk, srv.Addr(), stop, nil
}

func newSinkCommand() *cobra.Command {
	var sf sinkFlags
	var listen string
	cmd := &cobra.Command{
		Use:   "sink",
		Short: "Run a webhook receiver that checks signatures, records deliveries and injects faults",
		Long: `Run a webhook receiver for replays on --listen. It answers the CRC challenge
(GET ?crc_token=) and verifies x-twitter-webhooks-signature on every POST with --secret (a bad
one is answered 401, counted and recorded as such); --standard-webhooks verifies the Standard
Webhooks headers too. Deliveries are routed by URL path, so one sink serves many webhooks:
register http://HOST:PORT/webhooks/<name> for each. Every delivery is appended to --record as a
JSON line: time, path, event id, size, signature validity, whether it is a duplicate (same event
id on the same path before), and replay_job_status events.

Faults are injected with the flags below or at runtime:
  curl -XPOST http://HOST:PORT/_sink/faults -d '{"error_rate":0.1,"throttle_rate":0.05,"retry_after":"1s","latency":"20ms","timeout_rate":0.01,"timeout_hold":"30s","reset_rate":0.01}'
Control endpoints: GET /_sink/stats (counts; per path first/last delivery, webhook and jobs;
answers given), GET|POST /_sink/faults, GET /_sink/jobs/{job_id}?wait=30s (a job's status and
deliveries, 404 until its status event arrived). SIGINT/SIGTERM stop it, flushing the record.`,
		Example: `  loadgen sink --listen 127.0.0.1:9000 --secret "$SECRET" --record deliveries.jsonl`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sk, ln, stop, err := sf.start(listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "loadgen sink: listening on http://%s (webhook URLs: http://%s/webhooks/<name>)\n", ln, ln)
			ctx := cmd.Context() // canceled by SIGINT or SIGTERM (main)
			<-ctx.Done()
			err = stop()
			st := sk.Stats()
			fmt.Fprintf(cmd.OutOrStdout(), "loadgen sink: %d deliveries (%d duplicates), %d bad signatures, answers %v\n", st.Deliveries, st.Duplicates, st.BadSignatures, st.Responses)
			return err
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9000", "address to listen on")
	sf.add(cmd, "")
	return cmd
}

func newReplayCommand() *cobra.Command {
	var (
		api, token, webhooks, from, to, sinkURL, sinkListen string
		requests, concurrency                               int
		timeout                                             time.Duration
		sf                                                  sinkFlags
	)
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Submit replay requests through the API and measure them at the sink",
		Long: `Submit replay requests (POST /1.1/account_activity/replay/webhooks/{id}/subscriptions/all.json)
to --api with --token, --requests in all, round robin over --webhook-ids, --concurrency at once (one
webhook's jobs never overlap: the API allows one active job per webhook). Each job is waited for
at the sink until its replay_job_status event arrives: an external 'loadgen sink' at --sink
(through its GET /_sink/jobs/{id}), or a sink run in this process on --sink-listen (then
--secret, --record and the fault flags apply to it; the webhooks must be registered with URLs
on that address).

Per job it reports time to first event (submission → the first delivery at the sink), total time
(submission → the status event) and events/s (events / total time), then p50/p90/p99/max across
jobs. Times at the sink are the sink's clock: run it on the same machine, or expect skew. The
API's rate limit (replayd serve --app-rate-limit, default 5 per 15 minutes) counts every request.
Exits 1 when a request failed or a job did not complete.`,
		Example: `  loadgen replay --api http://127.0.0.1:8080 --token "$TOKEN" --webhook-ids 1095098195724595200 \
      --from 202605010900 --to 202605011100 --sink http://127.0.0.1:9000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if token == "" {
				return errors.New("--token is required (the app's bearer token)")
			}
			hooks := splitList(webhooks)
			if len(hooks) == 0 {
				return errors.New("--webhook-ids is required")
			}
			f, err := verify.ParseTime(from)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			t, err := verify.ParseTime(to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			if f.Truncate(time.Minute) != f || t.Truncate(time.Minute) != t {
				return errors.New("--from and --to must be whole minutes (the API's precision)")
			}
			o := replay.Options{API: api, Token: token, Webhooks: hooks, From: f, To: t, Requests: requests, Concurrency: concurrency, Timeout: timeout}
			switch {
			case sinkListen != "" && sinkURL != "":
				return errors.New("give --sink (an external sink) or --sink-listen (one in this process), not both")
			case sinkListen != "":
				sk, ln, stop, err := sf.start(sinkListen)
				if err != nil {
					return err
				}
				defer stop()
				fmt.Fprintf(cmd.ErrOrStderr(), "loadgen replay: sink listening on http://%s\n", ln)
				o.Wait = sk.WaitJob
			case sinkURL != "":
				o.Wait = replay.HTTPWaiter(&http.Client{}, sinkURL)
			default:
				return errors.New("--sink URL or --sink-listen ADDR is required: the jobs are measured at the sink")
			}
			ctx := cmd.Context() // canceled by SIGINT or SIGTERM (main)
			rs := replay.Run(ctx, o)
			replay.Write(cmd.OutOrStdout(), rs)
			if s := replay.Summarize(rs); s.Failed > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&api, "api", "http://127.0.0.1:8080", "base URL of the replay API (replayd serve)")
	fl.StringVar(&token, "token", os.Getenv("LOADGEN_TOKEN"), "the app's bearer token (default $LOADGEN_TOKEN)")
	fl.StringVar(&webhooks, "webhook-ids", "", "comma-separated webhook ids to replay")
	fl.StringVar(&webhooks, "webhooks", "", "")
	fl.MarkDeprecated("webhooks", "use --webhook-ids (--webhooks is a webhook count in produce)")
	fl.StringVar(&from, "from", "", "window start, inclusive: YYYYMMDDhhmm (UTC) or RFC3339")
	fl.StringVar(&to, "to", "", "window end, exclusive: YYYYMMDDhhmm (UTC) or RFC3339")
	fl.IntVar(&requests, "requests", 0, "replay requests in all (default: one per webhook)")
	fl.IntVar(&concurrency, "concurrency", 1, "requests in flight at once")
	fl.DurationVar(&timeout, "job-timeout", 10*time.Minute, "how long to wait for one job's status event")
	fl.StringVar(&sinkURL, "sink", "", "base URL of a running 'loadgen sink', e.g. http://127.0.0.1:9000")
	fl.StringVar(&sinkListen, "sink-listen", "", "run a sink in this process on this address instead")
	sf.add(cmd, "sink-")
	cmd.MarkFlagRequired("from")
	cmd.MarkFlagRequired("to")
	return cmd
}

func newVerifyCommand() *cobra.Command {
	var manifestPath, record, webhook, from, to, path, job, dcs string
	var limit int
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Prove a replay delivered exactly the unique events of a webhook and window",
		Long: `Compare the ground truth of 'loadgen produce --manifest' with a sink's --record: the
replay of --webhook over [--from, --to) must have delivered every unique event (by event id) that
was produced for the webhook with a timestamp in the window, each once, nothing else, every
delivery correctly signed. Lists the first --limit missing, extra (saying why: another webhook,
outside the window, not in the manifest) and duplicated events with their counts, and exits 1
on any.

The webhook's deliveries are those on the sink path where its replay_job_status arrived (or
--path); of those, the last job's (deliveries after the previous status event on the path, up to
the job's own), or --job's. A sink that recorded no status event on the path: every delivery on
it is checked.`,
		Example: `  loadgen verify --manifest run.manifest --record deliveries.jsonl --webhook 1095098195724595200 \
      --from 202605010900 --to 202605011100`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := verify.ParseTime(from)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			t, err := verify.ParseTime(to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			rf, err := os.Open(record)
			if err != nil {
				return err
			}
			rec, err := verify.ReadRecord(rf)
			rf.Close()
			if err != nil {
				return err
			}
			var dcList []int
			for _, d := range splitList(dcs) {
				n, err := strconv.Atoi(d)
				if err != nil || n < 1 {
					return fmt.Errorf("--dcs %q: want datacenter numbers from 1, e.g. 1,2", dcs)
				}
				dcList = append(dcList, n-1)
			}
			open := func() (io.ReadCloser, error) { return os.Open(manifestPath) }
			r, err := verify.Run(verify.Options{Webhook: webhook, From: f, To: t, Path: path, Job: job, Limit: limit, DCs: dcList}, open, rec)
			if err != nil {
				return err
			}
			r.Write(cmd.OutOrStdout())
			if !r.OK() {
				return exitError{1}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&manifestPath, "manifest", "", "the manifest 'loadgen produce --manifest' wrote")
	fl.StringVar(&record, "record", "", "the sink's record file (loadgen sink --record)")
	fl.StringVar(&webhook, "webhook", "", "the replayed webhook's id")
	fl.StringVar(&from, "from", "", "window start, inclusive: YYYYMMDDhhmm (UTC) or RFC3339")
	fl.StringVar(&to, "to", "", "window end, exclusive: YYYYMMDDhhmm (UTC) or RFC3339")
	fl.StringVar(&path, "path", "", "the sink path of the webhook's deliveries (default: where its status events arrived)")
	fl.StringVar(&job, "job", "", "the job whose deliveries to check (default: the last on the path)")
	fl.IntVar(&limit, "limit", 20, "how many missing, extra and duplicated events to list")
	fl.StringVar(&dcs, "dcs", "", "for a two-datacenter run (produce --topics or --dc-kafka-brokers): the datacenters whose topics the replay read, numbered from 1 (default all: a replay over the local and the mirrored topics expects every event of any of them once)")
	for _, n := range []string{"manifest", "record", "webhook", "from", "to"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}
