package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/replayd/api"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/embeddedapp"
	"github.com/replay/replay/replayd/dedup"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/receiver"
	"github.com/replay/replay/replayd/server"
	"github.com/replay/replay/replayd/worker"
	"github.com/replay/replay/segment"
)

// deliveryEnv is one job's world: a replayd (server.New on the embedded defaults, one worker)
// whose embedded log of one partition holds n events of one webhook, indexed before it starts,
// with the app and the webhook in its embedded app store. The webhook's URL is one httptest
// server whose receiver is replaced by a fresh one for every sample.
type deliveryEnv struct {
	srv     *server.Server
	hook    *httptest.Server
	sink    atomic.Pointer[receiver.Sink]
	token   string
	secret  []byte
	webhook int64
	bodies  [][]byte // the events' values, in log order
	from    time.Time
	to      time.Time
}

// newDeliveryEnv makes the world with a per-webhook rate limit of rate events/s (math.Inf(1): none).
func newDeliveryEnv(ctx context.Context, dir string, n int, rate float64) (_ *deliveryEnv, err error) {
	e := &deliveryEnv{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	e.hook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.sink.Load().ServeHTTP(w, r) }))
	apps, err := embeddedapp.Open(embeddedapp.Options{Dir: filepath.Join(dir, "apps")})
	if err != nil {
		return nil, err
	}
	created, err := apps.CreateApp(ctx, app.CreateAppParams{Name: "bench"})
	if err != nil {
		apps.Close()
		return nil, err
	}
	wh, err := apps.CreateWebhook(ctx, app.CreateWebhookParams{AppID: created.App.ID, URL: e.hook.URL + "/webhook", Valid: true})
	apps.Close()
	if err != nil {
		return nil, err
	}
	e.token, e.secret, e.webhook = created.Token, created.App.Secret, wh.ID
	e.sink.Store(receiver.New(e.secret, nil))

	l, err := engine.Open(engine.Options{Dir: filepath.Join(dir, "log"), Partitions: 1, Sync: engine.SyncNever, Retention: -1})
	if err != nil {
		return nil, err
	}
	key := []byte(strconv.FormatInt(e.webhook, 10))
	e.from = time.Now().UTC().Truncate(time.Minute).Add(-2 * time.Hour)
	e.to = e.from.Add(time.Hour)
	step := time.Hour / time.Duration(n)
	recs := make([]engine.Record, 0, 256)
	for i := 0; i < n; i++ {
		v := fmt.Appendf(nil, `{"for_user_id":"%d","tweet_create_events":[{"id_str":"%d","text":"%0900d"}]}`, e.webhook, 1461000000000000000+i, i)
		e.bodies = append(e.bodies, v)
		recs = append(recs, engine.Record{Key: key, Value: v, Timestamp: e.from.Add(time.Duration(i) * step).UnixMilli(),
			Headers: []segment.Header{{Key: []byte(dedup.EventIDHeader), Value: strconv.AppendInt(nil, int64(i), 10)}}})
		if len(recs) == cap(recs) || i == n-1 {
			if _, err := l.Append(ctx, recs); err != nil {
				l.Close()
				return nil, err
			}
			recs = recs[:0]
		}
	}
	if _, err := index.RebuildIndex(ctx, index.RebuildOptions{DataDir: dir, Source: l, Retention: -1, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.Close(); err != nil {
		return nil, err
	}
	// The API's per-app request limit is lifted (every sample is a request); the per-webhook rate
	// limit is the caller's: the default policy (2500/s) or none. Everything else is the default.
	e.srv, err = server.New(ctx, server.Config{
		DataDir: dir, Listen: "127.0.0.1:0", Workers: 1, AllowPrivateWebhooks: true,
		WebhookRate: rate, RateLimit: math.MaxInt32, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	return e, e.srv.Start(ctx)
}

func (e *deliveryEnv) close() {
	if e.srv != nil {
		e.srv.Stop(context.Background())
	}
	if e.hook != nil {
		e.hook.Close()
	}
}

// newSink starts a verifying sink on 127.0.0.1.
func newSink(secret []byte) (*receiver.Sink, *httptest.Server) {
	s := receiver.New(secret, nil)
	return s, httptest.NewServer(s)
}

// call makes a replay API call with the app's token and decodes the JSON answer into out.
func (e *deliveryEnv) call(ctx context.Context, method, path string, out any) error {
	return api.Call(ctx, http.DefaultClient, "http://"+e.srv.Addr(), e.token, method, path, out)
}

// replayJob runs one job over the whole window to a fresh sink and returns the time from the
// replay request to the sink's receipt of the job's replay_job_status event, and the events
// delivered.
func (e *deliveryEnv) replayJob(ctx context.Context, latency time.Duration) (time.Duration, int64, error) {
	s := receiver.New(e.secret, nil)
	s.SetFaults(receiver.Faults{Latency: latency})
	e.sink.Store(s)
	var created struct {
		JobID string `json:"job_id"`
	}
	start := time.Now()
	path := fmt.Sprintf("/1.1/account_activity/replay/webhooks/%d/subscriptions/all.json?from_date=%s&to_date=%s",
		e.webhook, e.from.Format("200601021504"), e.to.Format("200601021504"))
	if err := e.call(ctx, http.MethodPost, path, &created); err != nil {
		return 0, 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	st, err := s.WaitStatus(wctx, created.JobID)
	elapsed := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	if st.State != "Complete" {
		return 0, 0, fmt.Errorf("job %s: %s: %s", created.JobID, st.State, st.Description)
	}
	var got struct {
		Counts struct {
			Delivered int64 `json:"delivered"`
		} `json:"counts"`
	}
	if err := e.call(ctx, http.MethodGet, "/replay/jobs/"+created.JobID, &got); err != nil {
		return 0, 0, err
	}
	if int(got.Counts.Delivered) != len(e.bodies) || s.BadSignatures() > 0 {
		return 0, 0, fmt.Errorf("job %s delivered %d of %d events, %d bad signatures", created.JobID, got.Counts.Delivered, len(e.bodies), s.BadSignatures())
	}
	return elapsed, got.Counts.Delivered, nil
}

// bareClient is the sink's ceiling at a latency: a plain http.Client POSTing the same bodies,
// signed in advance, from concurrency goroutines over as many keep-alive connections, to a fresh
// sink that answers after latency.
func bareClient(ctx context.Context, secret []byte, bodies [][]byte, sigs []string, latency time.Duration, concurrency int) (time.Duration, error) {
	s, srv := newSink(secret)
	defer srv.Close()
	s.SetFaults(receiver.Faults{Latency: latency})
	tr := &http.Transport{MaxIdleConnsPerHost: concurrency}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var next atomic.Int64
	errs := make(chan error, concurrency)
	start := time.Now()
	for range concurrency {
		go func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) {
					errs <- nil
					return
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, bytes.NewReader(bodies[i]))
				if err != nil {
					errs <- err
					return
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(delivery.SignatureHeader, sigs[i])
				resp, err := hc.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("sink answered %s", resp.Status)
					return
				}
			}
		}()
	}
	for range concurrency {
		if err := <-errs; err != nil {
			return 0, err
		}
	}
	elapsed := time.Since(start)
	if n := len(s.Deliveries()); n != len(bodies) {
		return 0, fmt.Errorf("sink received %d of %d", n, len(bodies))
	}
	return elapsed, nil
}

// deliveryLatencies are the webhook latencies benchmark 6 runs at: loopback, and the 20 and
// 100 ms of real webhooks.
var deliveryLatencies = []time.Duration{0, 20 * time.Millisecond, 100 * time.Millisecond}

// runDelivery is benchmark 6: events/s from one job to a sink at 0, 20 and 100 ms latency, with
// the default flags (the 2500/s per-webhook limit) and with the limit raised (none), vs a bare
// client with the same concurrency (the window's maximum) at the same latency.
func runDelivery(ctx context.Context, c *Config) (*Report, error) {
	rep := &Report{Name: "delivery", Title: "6. Delivery: one job to a sink at 0, 20 and 100 ms, default flags and raised limit, vs a bare client"}
	rep.Setup = fmt.Sprintf("One webhook's %d events (~1 KB JSON, distinct event ids) in an embedded log of one partition, "+
		"indexed. **default** = a replay job over the whole window requested from a replayd (`server.New` with the default "+
		"flags, 1 worker: lease, locate through the index, read, dedup, deliver through the adaptive window of at most %d "+
		"in flight, checkpoint, status event) through its `delivery.Client` with the default per-webhook limit of %.0f "+
		"events/s, to `replayd/receiver` on an httptest server answering after the latency; timed from the replay request "+
		"to the sink's receipt of the `replay_job_status` event. **raised** = the same with the per-webhook limit lifted "+
		"(`--webhook-rate 0`). **bare-client** = a plain `http.Client` POSTing the same bodies, signed in advance, from %d "+
		"goroutines over keep-alive to the same kind of sink at the same latency: the ceiling of that concurrency. A fresh "+
		"sink per sample; variants alternate within a run.", c.DeliveryEvents, worker.DefaultMaxInFlight, float64(delivery.DefaultRateLimit), worker.DefaultMaxInFlight)
	def, err := newDeliveryEnv(ctx, filepath.Join(c.TempDir, "delivery-default"), c.DeliveryEvents, delivery.DefaultRateLimit)
	if err != nil {
		return rep, err
	}
	defer def.close()
	raised, err := newDeliveryEnv(ctx, filepath.Join(c.TempDir, "delivery-raised"), c.DeliveryEvents, math.Inf(1))
	if err != nil {
		return rep, err
	}
	defer raised.close()
	sigs := make([]string, len(raised.bodies))
	for i, b := range raised.bodies {
		sigs[i] = delivery.Sign(raised.secret, b)
	}
	for _, lat := range deliveryLatencies {
		cse := fmt.Sprintf("latency=%v", lat)
		variants := []struct {
			name string
			run  func() (float64, error)
		}{
			{"default", func() (float64, error) { el, n, err := def.replayJob(ctx, lat); return float64(n) / el.Seconds(), err }},
			{"raised", func() (float64, error) {
				el, n, err := raised.replayJob(ctx, lat)
				return float64(n) / el.Seconds(), err
			}},
			{"bare-client", func() (float64, error) {
				el, err := bareClient(ctx, raised.secret, raised.bodies, sigs, lat, worker.DefaultMaxInFlight)
				return float64(len(raised.bodies)) / el.Seconds(), err
			}},
		}
		for run := 0; run < c.Runs; run++ {
			for i := range variants {
				v := variants[(i+run)%len(variants)]
				rate, err := v.run()
				if err != nil {
					return rep, fmt.Errorf("%s %s: %w", cse, v.name, err)
				}
				rep.add(cse, v.name, "events/s", "events/s", true, rate)
			}
		}
		rep.compare(cse, "raised", "bare-client", "events/s")
		rep.Compare[len(rep.Compare)-1].IsCeilingFactor = true
	}
	for _, lat := range deliveryLatencies[1:] {
		cse := fmt.Sprintf("latency=%v", lat)
		got := rep.med(cse, "default", "events/s")
		rep.target(got >= 0.9*delivery.DefaultRateLimit, fmt.Sprintf("default flags at %v: the per-webhook limit (≥ 90%% of %d events/s)", lat, delivery.DefaultRateLimit),
			"%.0f events/s", got)
	}
	got := rep.med("latency=20ms", "raised", "events/s")
	rep.target(got >= 20000, "raised limit at 20ms: ≥ 20,000 events/s", "%.0f events/s", got)
	rep.Notes = append(rep.Notes, "The sink runs in the same process as the replayd and the bare client (one "+
		"mutex, a copy of every body, an HMAC check and a JSON probe per POST), on the same 2 cores; at 0 ms both "+
		"sides are bound by it.")
	return rep, nil
}
