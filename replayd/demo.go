package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/replayd/api"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/embeddedapp"
	"github.com/replay/replay/replayd/receiver"
	"github.com/replay/replay/replayd/server"
	"github.com/replay/replay/replayd/traffic"
	"github.com/replay/replay/replayd/worker"
	"github.com/replay/replay/segment"
)

func newDemoCommand() *cobra.Command {
	var data, listen, sinkListen string
	var events int
	var exit bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Show a replay end to end: sample events, the service, a webhook, a replay",
		Long: `Run the replay service on its embedded defaults and show it working, with nothing to install:

  1. create an app (its bearer token and signing secret) in DATA/apps;
  2. start 'replayd serve' in this process on --listen, and a webhook receiver on --sink-listen
     that answers the CRC challenge and checks every signature;
  3. register the receiver as the app's webhook through the API (POST webhooks.json);
  4. append sample events (several webhooks, duplicates, timestamps out of order) to DATA/log;
  5. ask for a replay of the webhook's last two hours but one (POST .../replay/...);
  6. wait for the replay_job_status event, check that exactly the window's unique events
     arrived, and print what was delivered.

Then it prints the curl calls to do the same by hand, and keeps the service and the receiver
running until interrupted (--exit stops at once).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context() // canceled by SIGINT or SIGTERM (main)
			return runDemo(ctx, cmd.OutOrStdout(), data, listen, sinkListen, events, exit)
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "./data", "data directory (the service's embedded log, index, jobs and apps)")
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "address of the replay API")
	f.StringVar(&sinkListen, "sink-listen", "127.0.0.1:0", "address of the demo webhook receiver (port 0: any free port)")
	f.IntVar(&events, "events", 20000, "sample events to append")
	f.BoolVar(&exit, "exit", false, "exit after the demo replay instead of serving until interrupted")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, data, listen, sinkListen string, events int, exit bool) error {
	step := func(format string, args ...any) { fmt.Fprintf(out, "==> "+format+"\n", args...) }

	step("creating an app in %s", filepath.Join(data, "apps"))
	apps, err := embeddedapp.Open(embeddedapp.Options{Dir: filepath.Join(data, "apps")})
	if err != nil {
		return fmt.Errorf("%w (is a 'replayd serve' using %s already running? stop it first)", err, data)
	}
	created, err := apps.CreateApp(ctx, app.CreateAppParams{Name: "demo"})
	apps.Close()
	if err != nil {
		return err
	}
	token, secret := created.Token, created.App.Secret

	srv, err := server.New(ctx, server.Config{
		DataDir: data, Listen: listen, Workers: 2, AllowPrivateWebhooks: true, WebhookRate: 2500,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	defer srv.Stop(context.Background())
	if err := srv.Start(ctx); err != nil {
		return err
	}
	base := "http://" + srv.Addr()
	step("replay service listening on %s (data in %s)", base, data)

	recv := receiver.New(secret, nil)
	rs, err := receiver.Listen(sinkListen, recv, 0)
	if err != nil {
		return err
	}
	defer rs.Stop(context.Background())
	webhookURL := "http://" + rs.Addr().String() + "/webhook"
	step("webhook receiver listening on %s", webhookURL)

	call := func(method, path string, into any) error {
		return api.Call(ctx, http.DefaultClient, base, token, method, path, into)
	}
	var hook struct {
		ID string `json:"id"`
	}
	if err := call("POST", "/1.1/account_activity/webhooks.json?url="+url.QueryEscape(webhookURL), &hook); err != nil {
		return err
	}
	step("registered webhook %s (the receiver answered the CRC challenge)", hook.ID)
	webhookID, _ := strconv.ParseInt(hook.ID, 10, 64)

	now := time.Now().UTC().Truncate(time.Minute)
	from, to := now.Add(-150*time.Minute), now.Add(-30*time.Minute)
	produced, err := appendDemoEvents(ctx, filepath.Join(data, "log"), webhookID, events, 4*time.Hour, now)
	if err != nil {
		return err
	}
	want := produced.unique(0, from.UnixMilli(), to.UnixMilli())
	step("appended %d sample events for 40 webhooks over the last 4 hours (%d of them for ours, %d re-produced duplicates)",
		len(produced.events), produced.count(0), produced.duplicates())

	var job struct {
		JobID string `json:"job_id"`
	}
	path := fmt.Sprintf("/1.1/account_activity/replay/webhooks/%s/subscriptions/all.json?from_date=%s&to_date=%s",
		hook.ID, from.Format("200601021504"), to.Format("200601021504"))
	start := time.Now()
	if err := call("POST", path, &job); err != nil {
		return err
	}
	step("replay job %s: from %s to %s", job.JobID, from.Format(time.RFC3339), to.Format(time.RFC3339))
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	status, err := recv.WaitStatus(waitCtx, job.JobID)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	got := recv.Deliveries()
	var firstAt time.Time
	delivered := 0
	for _, d := range got {
		if !json.Valid(d.Body) || string(d.Body[:min(len(d.Body), 20)]) == `{"replay_job_status"` {
			continue
		}
		if firstAt.IsZero() {
			firstAt = d.At
		}
		delivered++
	}
	step("replay_job_status: %s (%s), after %v", status.State, status.Description, elapsed.Round(time.Millisecond))
	if !firstAt.IsZero() {
		fmt.Fprintf(out, "    first event %v after the request; %d events delivered, every signature valid: %t\n",
			firstAt.Sub(start).Round(time.Millisecond), delivered, recv.BadSignatures() == 0)
	}
	for i, d := range got[:min(3, len(got))] {
		body := string(d.Body)
		if len(body) > 160 {
			body = body[:160] + "…"
		}
		fmt.Fprintf(out, "    delivery %d: %s\n", i+1, body)
	}
	var jobState json.RawMessage
	if err := call("GET", "/replay/jobs/"+job.JobID, &jobState); err == nil {
		fmt.Fprintf(out, "    GET /replay/jobs/%s: %s\n", job.JobID, jobState)
	}
	if err := checkDemo(got, want); err != nil {
		return fmt.Errorf("the replay did not deliver what it should have: %w", err)
	}
	step("checked: exactly the %d unique events of the window arrived, none more than %d places before its place in log order, then the status event", len(want), worker.MaxAhead(worker.DefaultMaxInFlight)-1)

	fmt.Fprintf(out, `
By hand, against this running service (token and secret of the demo app):

  TOKEN=%s
  curl -s -H "Authorization: Bearer $TOKEN" %s/1.1/account_activity/webhooks.json
  curl -s -X POST -H "Authorization: Bearer $TOKEN" \
    '%s%s'
  curl -s -H "Authorization: Bearer $TOKEN" %s/replay/jobs/JOB_ID

The console is at %s/console (log in with the token).
The receiver verifies signatures with the app secret %s.
Create your own app with 'replayd apps create NAME' before starting 'replayd serve'.
`, token, base, base, fmt.Sprintf("/1.1/account_activity/replay/webhooks/%s/subscriptions/all.json?from_date=%s&to_date=%s", hook.ID, from.Format("200601021504"), to.Format("200601021504")), base, base, secret)
	if exit {
		return nil
	}
	step("serving until interrupted (Ctrl-C)")
	<-ctx.Done()
	return nil
}

// demoEvents are the sample events appended to the log, in log order.
type demoEvents struct {
	ids    []string // webhook ids by traffic.Event.Webhook; ours is 0
	events []traffic.Event
}

func (es demoEvents) count(webhook int) int {
	n := 0
	for _, e := range es.events {
		if e.Webhook == webhook && !e.Duplicate {
			n++
		}
	}
	return n
}

func (es demoEvents) duplicates() int {
	n := 0
	for _, e := range es.events {
		if e.Duplicate {
			n++
		}
	}
	return n
}

// unique is what a replay of webhook in [from, to) must deliver: its unique events, in log order.
func (es demoEvents) unique(webhook int, from, to int64) []string {
	seen := map[uint64]bool{}
	var out []string
	for _, e := range es.events {
		if e.Webhook == webhook && e.Timestamp >= from && e.Timestamp < to && !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, string(e.Body))
		}
	}
	return out
}

// appendDemoEvents appends n events of loadgen's traffic generator over [end-span, end) to the
// embedded log: 40 webhooks, ours the hottest, one in ten re-produced, timestamps up to two
// minutes out of order.
func appendDemoEvents(ctx context.Context, dir string, webhook int64, n int, span time.Duration, end time.Time) (demoEvents, error) {
	es := demoEvents{ids: []string{strconv.FormatInt(webhook, 10)}}
	for i := int64(0); i < 39; i++ {
		es.ids = append(es.ids, strconv.FormatInt(1095098195724595200+i, 10))
	}
	g, err := traffic.New(traffic.Config{Events: n, WebhookIDs: es.ids, Skew: 1, DupRate: 0.1,
		Jitter: 2 * time.Minute, Span: span, End: end, Seed: uint64(webhook)})
	if err != nil {
		return es, err
	}
	l, err := engine.OpenContext(ctx, engine.Options{Dir: dir, Retention: -1})
	if err != nil {
		return es, err
	}
	defer l.Close()
	var recs []engine.Record
	for e, ok := g.Next(); ok; e, ok = g.Next() {
		es.events = append(es.events, e)
		recs = append(recs, engine.Record{Key: []byte(es.ids[e.Webhook]), Value: e.Body, Timestamp: e.Timestamp,
			Headers: []segment.Header{{Key: []byte(traffic.EventIDHeader), Value: strconv.AppendUint(nil, e.ID, 10)}}})
	}
	for i := 0; i < len(recs); i += 500 {
		if _, err := l.Append(ctx, recs[i:min(i+500, len(recs))]); err != nil {
			return es, err
		}
	}
	return es, nil
}

// checkDemo compares the deliveries with what the replay should have sent: every unique event
// of the window exactly once and signed, none the ordering bound or more ahead of its place in
// log order ("chronologically, as best as possible"; worker.MaxAhead of the default window
// bounds it), then the status event.
func checkDemo(got []receiver.Delivery, want []string) error {
	return receiver.CheckReplay(got, want, worker.MaxAhead(worker.DefaultMaxInFlight))
}
