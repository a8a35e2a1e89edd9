package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/embeddedapp"
	"github.com/replay/replay/replayd/app/mysqlapp"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/mysqldb/mysqldbtest"
	"github.com/replay/replay/replayd/receiver"
	"github.com/replay/replay/replayd/server"
	"github.com/replay/replay/replayd/testwait"
	"github.com/replay/replay/replayd/worker"
	"github.com/replay/replay/segment"
)

// e2e is a replayd on embedded defaults, an app, and a sink registered as its webhook.
type e2e struct {
	t       *testing.T
	data    string
	srv     *server.Server
	token   string
	secret  []byte
	sink    *receiver.Sink
	sinkURL string
	webhook int64
	events  []producedEvent
}

type producedEvent struct {
	webhook int64
	id      string
	ts      int64
	body    string
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testServeConfig(data string) server.Config {
	return server.Config{
		DataDir: data,
		Listen:  "127.0.0.1:0", Workers: 2, Partitions: 4, AllowPrivateWebhooks: true, RateLimit: 5,
		WebhookRate: 100000, LeaseTimeout: 30 * time.Second, DedupCapacity: 1 << 16, Retention: 120 * time.Hour,
		Delivery: delivery.Options{BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, MaxAttempts: 12, Timeout: 800 * time.Millisecond},
	}
}

// startServer is what `replayd serve` does: New, then Start.
func startServer(ctx context.Context, c server.Config, logger *slog.Logger) (*server.Server, error) {
	c.Logger = logger
	s, err := server.New(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		s.Stop(context.Background())
		return nil, err
	}
	return s, nil
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startE2E(t *testing.T, cfg func(*server.Config)) *e2e {
	t.Helper()
	return startE2EWith(t, cfg, nil)
}

// startE2EWith is startE2E with the app prepared by prepare before the server starts (an
// option set, a secret rotated), which also says what the sink is (nil: a sink holding the
// app's secret).
func startE2EWith(t *testing.T, cfg func(*server.Config), prepare func(d app.Driver, a *app.App) *receiver.Sink) *e2e {
	t.Helper()
	e := &e2e{t: t, data: t.TempDir()}
	// The app exists before the server opens the embedded app store.
	apps, err := embeddedapp.Open(embeddedapp.Options{Dir: filepath.Join(e.data, "apps")})
	if err != nil {
		t.Fatal(err)
	}
	created, err := apps.CreateApp(t.Context(), app.CreateAppParams{Name: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	e.token, e.secret = created.Token, created.App.Secret
	if prepare != nil {
		e.sink = prepare(apps, created.App)
	}
	apps.Close()
	c := testServeConfig(e.data)
	if cfg != nil {
		cfg(&c)
	}
	if e.srv, err = startServer(t.Context(), c, quietLogger()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.srv.Stop(context.Background()) })
	if e.sink == nil {
		e.sink = receiver.New(e.secret, nil)
	}
	hs := httptest.NewServer(e.sink)
	t.Cleanup(hs.Close)
	e.sinkURL = hs.URL + "/webhook"
	var reg struct {
		ID    string `json:"id"`
		Valid bool   `json:"valid"`
	}
	code := e.call("POST", "/1.1/account_activity/webhooks.json?url="+url.QueryEscape(e.sinkURL), &reg)
	if code != 200 || !reg.Valid {
		t.Fatalf("webhook registration: %d %+v", code, reg)
	}
	e.webhook, _ = strconv.ParseInt(reg.ID, 10, 64)
	return e
}

// call makes an API call with the app's token and decodes the JSON answer into out.
func (e *e2e) call(method, path string, out any) int {
	e.t.Helper()
	req, _ := http.NewRequest(method, "http://"+e.srv.Addr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil && len(body) > 0 {
		if err := json.Unmarshal(body, out); err != nil {
			e.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode
}

// produce appends events for the registered webhook and for others to the embedded log while
// the server runs: re-produced duplicates, and timestamps up to two minutes out of order.
func (e *e2e) produce(n int, start time.Time, span time.Duration) {
	e.t.Helper()
	l, err := engine.Open(engine.Options{Dir: filepath.Join(e.data, "log"), MaxBatchBytes: 4096, Retention: -1})
	if err != nil {
		e.t.Fatal(err)
	}
	defer l.Close()
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	var recs []engine.Record
	for i := 0; i < n; i++ {
		wh := e.webhook
		if rng.IntN(3) > 0 {
			wh = 1000 + rng.Int64N(40) // other webhooks, some in the same partition
		}
		ts := start.Add(span*time.Duration(i)/time.Duration(n)).UnixMilli() - rng.Int64N(120_000)
		id := fmt.Sprintf("%d", 1461000000000000000+int64(len(e.events)))
		body := fmt.Sprintf(`{"for_user_id":"2244994945","tweet_create_events":[{"id_str":%q,"timestamp_ms":"%d"}]}`, id, ts)
		ev := producedEvent{webhook: wh, id: id, ts: ts, body: body}
		copies := 1
		if rng.IntN(8) == 0 {
			copies = 2
		}
		for c := 0; c < copies; c++ {
			e.events = append(e.events, ev)
			recs = append(recs, engine.Record{Key: []byte(strconv.FormatInt(wh, 10)), Value: []byte(body), Timestamp: ts,
				Headers: []segment.Header{{Key: []byte("event-id"), Value: []byte(id)}}})
		}
	}
	for i := 0; i < len(recs); i += 100 {
		if _, err := l.Append(e.t.Context(), recs[i:min(i+100, len(recs))]); err != nil {
			e.t.Fatal(err)
		}
	}
}

// want is the webhook's unique events in [from, to), in log order.
func (e *e2e) want(from, to time.Time) []string {
	seen := map[string]bool{}
	var out []string
	for _, ev := range e.events {
		if ev.webhook == e.webhook && ev.ts >= from.UnixMilli() && ev.ts < to.UnixMilli() && !seen[ev.id] {
			seen[ev.id] = true
			out = append(out, ev.body)
		}
	}
	return out
}

func (e *e2e) replay(from, to time.Time) (jobID string, code int) {
	var resp struct {
		JobID string `json:"job_id"`
	}
	code = e.call("POST", fmt.Sprintf("/1.1/account_activity/replay/webhooks/%d/subscriptions/all.json?from_date=%s&to_date=%s",
		e.webhook, from.UTC().Format("200601021504"), to.UTC().Format("200601021504")), &resp)
	return resp.JobID, code
}

func (e *e2e) waitStatus(jobID string) receiver.Status {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 90*time.Second)
	defer cancel()
	st, err := e.sink.WaitStatus(ctx, jobID)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// replayComplete asks for a replay of [from, to) and waits for its status event: the test fails
// unless the request was accepted (what names the replay in the message) and the job ended
// Complete. It returns the job id and the status event.
func (e *e2e) replayComplete(from, to time.Time, what string) (string, receiver.Status) {
	e.t.Helper()
	jobID, code := e.replay(from, to)
	if code != http.StatusAccepted {
		e.t.Fatalf("%s: %d", what, code)
	}
	st := e.waitStatus(jobID)
	if st.State != "Complete" {
		e.t.Fatalf("%s: status event %+v", what, st)
	}
	return jobID, st
}

// End to end on embedded defaults: the sink receives exactly the window's unique events, in log
// order, each correctly signed, then the completion event; nothing of another webhook, nothing
// outside the window.
func TestServeReplaysAWindowEndToEnd(t *testing.T) {
	e := startE2E(t, nil)
	now := time.Now().UTC().Truncate(time.Minute)
	e.produce(3000, now.Add(-3*time.Hour), 2*time.Hour)
	from, to := now.Add(-150*time.Minute), now.Add(-90*time.Minute)
	jobID, st := e.replayComplete(from, to, "replay request")
	if st.Description != "Job completed successfully" || st.WebhookID != strconv.FormatInt(e.webhook, 10) {
		t.Fatalf("status event %+v", st)
	}
	got := e.sink.Deliveries()
	want := e.want(from, to)
	if len(want) < 100 {
		t.Fatalf("the window holds only %d events", len(want))
	}
	// Every event of the window once, signed, none the ordering bound (MaxAhead) or more ahead of
	// its place in log order (the default window; TestServeStrictOrder holds the strict order).
	if err := receiver.CheckReplay(got, want, worker.MaxAhead(worker.DefaultMaxInFlight)); err != nil {
		t.Fatal(err)
	}
	if e.sink.BadSignatures() != 0 {
		t.Fatalf("%d deliveries had bad signatures", e.sink.BadSignatures())
	}
	var j struct {
		State  string           `json:"state"`
		Counts map[string]int64 `json:"counts"`
	}
	if code := e.call("GET", "/replay/jobs/"+jobID, &j); code != 200 || j.State != "COMPLETED" || j.Counts["delivered"] != int64(len(want)) || j.Counts["duplicates_dropped"] == 0 {
		t.Fatalf("GET job: %d %+v", code, j)
	}
	// The metrics count the job, its events and the index's lag.
	resp, err := http.Get("http://" + e.srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`replay_jobs{state="COMPLETED"} 1`, `replay_jobs{state="OPEN"} 0`,
		fmt.Sprintf("replay_events_delivered_total %d", len(want)), `replay_jobs_finished_total{state="COMPLETED"} 1`,
		`replay_index_lag_offsets{partition="0"}`, "replay_delivery_seconds_count"} {
		if !strings.Contains(string(metrics), want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
	// A second replay of the same webhook is accepted now that the first is over.
	if _, code := e.replay(from, to); code != http.StatusAccepted {
		t.Fatalf("second replay: %d", code)
	}
}

// A webhook that fails (5xx, 429 with Retry-After) and then recovers gets everything; one that
// never recovers ends Incomplete, saying what was not delivered.
func TestServeWebhookFailures(t *testing.T) {
	e := startE2E(t, func(c *server.Config) { c.MaxOutage = 2 * time.Second })
	now := time.Now().UTC().Truncate(time.Minute)
	e.produce(600, now.Add(-2*time.Hour), time.Hour)
	from, to := now.Add(-2*time.Hour-5*time.Minute), now.Add(-50*time.Minute)

	// 5xx, 429 with Retry-After, attempts that time out, and connection resets, all retried.
	e.sink.SetFaults(receiver.Faults{ErrorRate: 0.15, ThrottleRate: 0.1, RetryAfter: time.Millisecond,
		TimeoutRate: 0.03, TimeoutHold: time.Second, ResetRate: 0.05})
	e.replayComplete(from, to, "replay to a flaky webhook")
	want := e.want(from, to)
	got := e.sink.Deliveries()
	if len(got) != len(want)+1 {
		t.Fatalf("flaky webhook got %d deliveries, want %d + status", len(got), len(want))
	}

	e.sink.SetFaults(receiver.Faults{ErrorRate: 1})
	jobID, code := e.replay(from, to)
	if code != http.StatusAccepted {
		t.Fatalf("replay: %d", code)
	}
	var j struct {
		State              string           `json:"state"`
		Reason             string           `json:"reason"`
		Counts             map[string]int64 `json:"counts"`
		FirstUndeliveredAt string           `json:"first_undelivered_at"`
	}
	testwait.For(t, 60*time.Second, "the job to end INCOMPLETE", func() bool {
		e.call("GET", "/replay/jobs/"+jobID, &j)
		return j.State == "INCOMPLETE"
	})
	if j.State != "INCOMPLETE" || j.Counts["failed"] != int64(len(want)) || j.FirstUndeliveredAt == "" {
		t.Fatalf("dead webhook: job %+v, want INCOMPLETE with %d failed", j, len(want))
	}
	if want := fmt.Sprintf("%d of %d events were not delivered", len(want), len(want)); !contains(j.Reason, want) || !contains(j.Reason, "500") ||
		!contains(j.Reason, "the webhook was down from") || !contains(j.Reason, "for longer than 2s") {
		t.Fatalf("reason %q does not say what was not delivered and why", j.Reason)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// `replayd index rebuild` while the server runs: the server moves to the rebuilt index without a
// restart, and replays keep working through it.
func TestServeFollowsARebuiltIndex(t *testing.T) {
	e := startE2E(t, func(c *server.Config) { c.IndexPoll = 10 * time.Millisecond })
	now := time.Now().UTC().Truncate(time.Minute)
	e.produce(1000, now.Add(-2*time.Hour), time.Hour)
	before := e.srv.Index().Dir()
	src, err := engine.SourceSpec{Kind: engine.SourceSegments, Dir: filepath.Join(e.data, "log")}.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := index.RebuildIndex(t.Context(), index.RebuildOptions{DataDir: e.data, Source: src, Logger: quietLogger()}); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	live, _, err := index.LiveDir(e.data)
	if err != nil || live == before {
		t.Fatalf("rebuild did not switch the live index: %s, %v", live, err)
	}
	testwait.For(t, 30*time.Second, "the server to use the index switched to "+live, func() bool { return e.srv.Index().Dir() == live })
	from, to := now.Add(-2*time.Hour-5*time.Minute), now.Add(-50*time.Minute)
	e.replayComplete(from, to, "replay")
	if got, want := len(e.sink.Deliveries()), len(e.want(from, to))+1; got != want {
		t.Fatalf("%d deliveries through the rebuilt index, want %d", got, want)
	}
}

// The server applies retention to the embedded log it reads in place: segments older than
// --retention go, and the log start moves past them.
func TestServeAppliesEmbeddedLogRetention(t *testing.T) {
	data := t.TempDir()
	l, err := engine.Open(engine.Options{Dir: filepath.Join(data, "log"), Partitions: 1, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-10 * 24 * time.Hour)
	for i := 0; i < 3; i++ { // three segments of old events (SegmentAge 1h apart), one recent
		if _, err := l.Append(t.Context(), []engine.Record{{Key: []byte("1"), Value: []byte("{}"), Timestamp: old.Add(time.Duration(i) * 2 * time.Hour).UnixMilli()}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Append(t.Context(), []engine.Record{{Key: []byte("1"), Value: []byte("{}")}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	c := testServeConfig(data)
	c.LogRetentionEvery = 10 * time.Millisecond
	srv, err := startServer(t.Context(), c, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())
	var b engine.Bounds
	testwait.For(t, 30*time.Second, "the expired segments to be deleted (bounds 3..4)", func() bool {
		var err error
		if b, err = srv.Source().Bounds(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
		return b.Start == 3 && b.End == 4
	})
}

// A source that cannot be opened is an error that names it, not a crash while cleaning up.
func TestServeUnreachableKafka(t *testing.T) {
	c := testServeConfig(t.TempDir())
	brokers := freePort(t) // nothing listens there
	c.Source = engine.SourceSpec{Kind: engine.SourceKafka, Brokers: []string{brokers}}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	_, err := startServer(ctx, c, quietLogger())
	if err == nil || !strings.Contains(err.Error(), brokers) {
		t.Fatalf("startServer with an unreachable cluster: %v", err)
	}
}

// TestServeStrictOrder: with StrictOrder the webhook gets the window's events in log order.
func TestServeStrictOrder(t *testing.T) {
	e := startE2E(t, func(c *server.Config) { c.StrictOrder = true })
	now := time.Now().UTC().Truncate(time.Minute)
	e.produce(1500, now.Add(-3*time.Hour), 2*time.Hour)
	from, to := now.Add(-150*time.Minute), now.Add(-90*time.Minute)
	e.replayComplete(from, to, "replay request")
	// A bound of one: each event at its place in log order.
	if err := receiver.CheckReplay(e.sink.Deliveries(), e.want(from, to), 1); err != nil {
		t.Fatal(err)
	}
}

// Events are replayable as soon as their minute has passed: an event of the last minute,
// appended while the server runs, is replayed right after through the API (the public API wants
// to_date ten minutes old; this one takes a to_date of now).
func TestServeReplaysTheLastMinute(t *testing.T) {
	e := startE2E(t, nil)
	// The minute that passed last: an event at its last millisecond, appended now (as a late
	// event lands), and to_date = the current minute, at most a minute old.
	minute := time.Now().UTC().Truncate(time.Minute)
	from, to := minute.Add(-time.Minute), minute
	l, err := engine.Open(engine.Options{Dir: filepath.Join(e.data, "log"), Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"for_user_id":"2244994945","tweet_create_events":[{"id_str":"1461999999999999999"}]}`
	// The producer keeps the log open, as `loadgen produce` or a real-time path would.
	defer l.Close()
	if _, err = l.Append(t.Context(), []engine.Record{{Key: []byte(strconv.FormatInt(e.webhook, 10)), Value: []byte(body), Timestamp: to.UnixMilli() - 1}}); err != nil {
		t.Fatal(err)
	}
	e.replayComplete(from, to, "replay of the minute that just passed")
	got := e.sink.Deliveries()
	if len(got) != 2 || got[0].EventID != "1461999999999999999" {
		t.Fatalf("deliveries %+v, want the event just appended, then the status event", got)
	}
}

// An app with Standard Webhooks whose secret was rotated with an overlap: a webhook that still
// holds the previous secret passes the CRC challenge and gets every event of a replay signed so
// that it verifies both the Twitter signature (its previous-secret header) and the Standard
// Webhooks headers, timestamp included; one that holds the new secret verifies them too.
func TestServeStandardWebhooksThroughARotation(t *testing.T) {
	for _, holds := range []string{"previous", "new"} {
		t.Run("the webhook holds the "+holds+" secret", func(t *testing.T) {
			e := startE2EWith(t, nil, func(d app.Driver, a *app.App) *receiver.Sink {
				if _, err := d.SetStandardWebhooks(t.Context(), app.SetStandardWebhooksParams{ID: a.ID, Enabled: true}); err != nil {
					t.Fatal(err)
				}
				rotated, err := d.RotateSecret(t.Context(), app.RotateSecretParams{ID: a.ID, Overlap: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				secret := rotated.Secret
				if holds == "previous" {
					secret = a.Secret
				}
				return receiver.NewWithOptions(receiver.Options{Secret: secret, StandardWebhooks: true, KeepDeliveries: true, RecordBodies: true})
			})
			now := time.Now().UTC().Truncate(time.Minute)
			e.produce(400, now.Add(-2*time.Hour), time.Hour)
			from, to := now.Add(-2*time.Hour-5*time.Minute), now.Add(-50*time.Minute)
			e.replayComplete(from, to, "replay")
			if err := receiver.CheckReplay(e.sink.Deliveries(), e.want(from, to), worker.MaxAhead(worker.DefaultMaxInFlight)); err != nil {
				t.Fatal(err)
			}
			if n := e.sink.BadSignatures(); n != 0 {
				t.Fatalf("%d deliveries refused by a receiver holding the %s secret", n, holds)
			}
		})
	}
}

// The same on Kafka and MySQL, the production pair: an event of the minute that just passed,
// produced to the topic while the server runs, is replayed right after.
func TestServeReplaysTheLastMinuteOnKafka(t *testing.T) {
	ctx := t.Context()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "delivery_log"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	dsn := mysqldbtest.Database(t)
	apps, err := mysqlapp.Open(ctx, mysqlapp.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	created, err := apps.CreateApp(ctx, app.CreateAppParams{Name: "fresh"})
	apps.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := testServeConfig(t.TempDir())
	c.Source = engine.SourceSpec{Kind: engine.SourceKafka, Brokers: cluster.ListenAddrs(), Topic: "delivery_log"}
	c.MySQLDSN = dsn
	srv, err := startServer(ctx, c, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())
	e := &e2e{t: t, srv: srv, token: created.Token, secret: created.App.Secret, sink: receiver.New(created.App.Secret, nil)}
	hs := httptest.NewServer(e.sink)
	defer hs.Close()
	var reg struct {
		ID string `json:"id"`
	}
	if code := e.call("POST", "/1.1/account_activity/webhooks.json?url="+url.QueryEscape(hs.URL+"/webhook"), &reg); code != 200 {
		t.Fatalf("webhook registration: %d", code)
	}
	e.webhook, _ = strconv.ParseInt(reg.ID, 10, 64)
	// Some older traffic first, indexed by the time the fresh event comes.
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("delivery_log"),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	minute := time.Now().UTC().Truncate(time.Minute)
	key := []byte(reg.ID)
	old := &kgo.Record{Key: key, Value: []byte(`{"for_user_id":"1","tweet_create_events":[{"id_str":"1"}]}`), Timestamp: minute.Add(-time.Hour)}
	if err := cl.ProduceSync(ctx, old).FirstErr(); err != nil {
		t.Fatal(err)
	}
	body := `{"for_user_id":"1","tweet_create_events":[{"id_str":"1461999999999999998"}]}`
	fresh := &kgo.Record{Key: key, Value: []byte(body), Timestamp: minute.Add(-time.Millisecond)}
	if err := cl.ProduceSync(ctx, fresh).FirstErr(); err != nil {
		t.Fatal(err)
	}
	jobID, code := e.replay(minute.Add(-time.Minute), minute)
	if code != http.StatusAccepted {
		t.Fatalf("replay of the minute that just passed: %d", code)
	}
	if st := e.waitStatus(jobID); st.State != "Complete" {
		t.Fatalf("status %+v", st)
	}
	if got := e.sink.Deliveries(); len(got) != 2 || got[0].EventID != "1461999999999999998" {
		t.Fatalf("deliveries %+v, want the event just produced, then the status event", got)
	}
}
