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

func newDeliveryEnv(ctx context.Context, dir string, n int) (_ *deliveryEnv, err error) {
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
	// The per-webhook rate limit (a policy, default 2500/s) and the API's per-app one are lifted:
	// this measures the pipeline.
	e.srv, err = server.New(ctx, server.Config{
		DataDir: dir, Listen: "127.0.0.1:0", Workers: 1, AllowPrivateWebhooks: true,
		WebhookRate: math.Inf(1), RateLimit: math.MaxInt32, Logger: slog.New(slog.DiscardHandler),
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
func (e *deliveryEnv) replayJob(ctx context.Context) (time.Duration, int64, error) {
	s := receiver.New(e.secret, nil)
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

// bareClient is the sink's ceiling: a plain http.Client POSTing the same bodies, signed in
// advance, sequentially over one keep-alive connection, to a fresh sink.
func bareClient(ctx context.Context, secret []byte, bodies [][]byte, sigs []string) (time.Duration, error) {
	s, srv := newSink(secret)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	start := time.Now()
	for i, b := range bodies {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, bytes.NewReader(b))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(delivery.SignatureHeader, sigs[i])
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("sink answered %s", resp.Status)
		}
	}
	elapsed := time.Since(start)
	if n := len(s.Deliveries()); n != len(bodies) {
		return 0, fmt.Errorf("sink received %d of %d", n, len(bodies))
	}
	return elapsed, nil
}

// runDelivery is benchmark 6: events/s from one job to a local sink vs the sink's own ceiling.
func runDelivery(ctx context.Context, c *Config) (*Report, error) {
	rep := &Report{Name: "delivery", Title: "6. Delivery: one job to a local sink vs the sink's ceiling"}
	rep.Setup = fmt.Sprintf("One webhook's %d events (~1 KB JSON, distinct event ids) in an embedded log of one partition, "+
		"indexed. **job** = a replay job over the whole window requested from a replayd (`server.New` on the embedded "+
		"defaults, 1 worker: lease, locate through the index, read, dedup, deliver, checkpoint, status event) delivering "+
		"through its `delivery.Client` (the per-webhook rate limit, a policy defaulting to 2500/s, lifted; private "+
		"webhooks allowed for 127.0.0.1) to `replayd/receiver` on an httptest server; timed from the replay request to the sink's receipt of the "+
		"`replay_job_status` event. **bare-client** = a plain `http.Client` POSTing the same bodies, signed in advance, "+
		"sequentially over keep-alive to the same kind of sink: its ceiling. A fresh sink per sample; variants alternate "+
		"within a run.", c.DeliveryEvents)
	e, err := newDeliveryEnv(ctx, filepath.Join(c.TempDir, "delivery"), c.DeliveryEvents)
	if err != nil {
		return rep, err
	}
	defer e.close()
	sigs := make([]string, len(e.bodies))
	for i, b := range e.bodies {
		sigs[i] = delivery.Sign(e.secret, b)
	}
	for run := 0; run < c.Runs; run++ {
		for i := 0; i < 2; i++ {
			if (i+run)%2 == 0 {
				el, n, err := e.replayJob(ctx)
				if err != nil {
					return rep, err
				}
				rep.add("", "job", "events/s", "events/s", true, float64(n)/el.Seconds())
			} else {
				el, err := bareClient(ctx, e.secret, e.bodies, sigs)
				if err != nil {
					return rep, fmt.Errorf("bare client: %w", err)
				}
				rep.add("", "bare-client", "events/s", "events/s", true, float64(len(e.bodies))/el.Seconds())
			}
		}
	}
	rep.compare("", "job", "bare-client", "events/s")
	rep.Compare[len(rep.Compare)-1].IsCeilingFactor = true
	rep.Notes = append(rep.Notes, "Both sides are sequential over one keep-alive connection and bound by the sink "+
		"(one mutex, a copy of every body, an HMAC check and a JSON probe per POST), so a ratio near or above 100% "+
		"means the job's own work (index, read, dedup, signing, checkpoints) hides under the sink's; it is not a "+
		"measurement error.")
	x := rep.ratio("", "events/s", "job", "bare-client")
	rep.target(x >= 0.7, "delivery ≥ 70% of the sink's ceiling", "%.0f%% (%.0f vs %.0f events/s)", 100*x,
		rep.med("", "job", "events/s"), rep.med("", "bare-client", "events/s"))
	return rep, nil
}
