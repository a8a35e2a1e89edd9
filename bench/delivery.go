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
	"github.com/replay/replay/replayd/dedup"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/embeddedjob"
	"github.com/replay/replay/replayd/receiver"
	"github.com/replay/replay/replayd/worker"
	"github.com/replay/replay/segment"
)

// deliverySecret is the app secret the bench signs with.
var deliverySecret = []byte("bench-secret-0123456789abcdefghijklmnopqrstu")

// deliveryWebhook is the replayed webhook's id.
const deliveryWebhook int64 = 1095098195724595200

// deliveryEnv is one job's world: an embedded log of one partition holding n events of one
// webhook, its index, an embedded job store and a worker pool of one worker delivering through
// a real delivery.Client.
type deliveryEnv struct {
	log    *engine.Log
	ix     *index.Index
	jobs   *embeddedjob.Driver
	pool   *worker.Pool
	client *delivery.Client
	target atomic.Pointer[delivery.Target]
	bodies [][]byte // the events' values, in log order
	from   int64
	to     int64
}

func newDeliveryEnv(ctx context.Context, dir string, n int) (*deliveryEnv, error) {
	e := &deliveryEnv{}
	var err error
	e.log, err = engine.Open(engine.Options{Dir: filepath.Join(dir, "log"), Partitions: 1, Sync: engine.SyncNever, Retention: -1})
	if err != nil {
		return nil, err
	}
	key := []byte(strconv.FormatInt(deliveryWebhook, 10))
	e.from = time.Now().Add(-time.Hour).UnixMilli()
	recs := make([]engine.Record, 0, 256)
	for i := 0; i < n; i++ {
		v := fmt.Appendf(nil, `{"for_user_id":"%d","tweet_create_events":[{"id_str":"%d","text":"%0900d"}]}`, deliveryWebhook, 1461000000000000000+i, i)
		e.bodies = append(e.bodies, v)
		recs = append(recs, engine.Record{Key: key, Value: v, Timestamp: e.from + int64(i),
			Headers: []segment.Header{{Key: []byte(dedup.EventIDHeader), Value: strconv.AppendInt(nil, int64(i), 10)}}})
		if len(recs) == cap(recs) || i == n-1 {
			if _, err := e.log.Append(ctx, recs); err != nil {
				e.close()
				return nil, err
			}
			recs = recs[:0]
		}
	}
	e.to = e.from + int64(n)
	if e.ix, err = buildIndex(ctx, e.log, filepath.Join(dir, "index")); err != nil {
		e.close()
		return nil, err
	}
	if e.jobs, err = embeddedjob.Open(embeddedjob.Options{Dir: filepath.Join(dir, "jobs")}); err != nil {
		e.close()
		return nil, err
	}
	// The per-webhook rate limit (a policy, default 2500/s) is lifted: this measures the pipeline.
	if e.client, err = delivery.New(delivery.Options{AllowPrivate: true, RateLimit: math.Inf(1)}); err != nil {
		e.close()
		return nil, err
	}
	e.pool, err = worker.New(worker.Options{
		Jobs: e.jobs, Source: e.log, Locator: worker.IndexLocator(e.ix, e.log),
		Targets:   func(context.Context, int64) (worker.Target, error) { return *e.target.Load(), nil },
		Deliverer: e.client,
		NewDeduper: func() worker.Deduper {
			c, _ := dedup.New(dedup.Options{})
			return c
		},
		Workers: 1, PollInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		e.close()
		return nil, err
	}
	if err := e.pool.Start(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *deliveryEnv) close() {
	if e.pool != nil {
		e.pool.Stop(context.Background())
	}
	if e.client != nil {
		e.client.Close()
	}
	if e.jobs != nil {
		e.jobs.Close()
	}
	if e.ix != nil {
		e.ix.Close()
	}
	if e.log != nil {
		e.log.Close()
	}
}

// newSink starts a verifying sink on 127.0.0.1.
func newSink() (*receiver.Sink, *httptest.Server) {
	s := receiver.New(deliverySecret, nil)
	return s, httptest.NewServer(s)
}

// replayJob runs one job over the whole window to a fresh sink and returns the time from Create
// to the sink's receipt of the job's replay_job_status event, and the events delivered.
func (e *deliveryEnv) replayJob(ctx context.Context) (time.Duration, int64, error) {
	s, srv := newSink()
	defer srv.Close()
	e.target.Store(&delivery.Target{WebhookID: strconv.FormatInt(deliveryWebhook, 10), URL: srv.URL, Secret: deliverySecret})
	start := time.Now()
	j, err := e.jobs.Create(ctx, job.CreateParams{AppID: 1, WebhookID: deliveryWebhook, Partition: 0, FromMs: e.from, ToMs: e.to})
	if err != nil {
		return 0, 0, err
	}
	e.pool.Notify()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	st, err := s.WaitStatus(wctx, strconv.FormatInt(j.ID, 10))
	elapsed := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	if st.State != "Complete" {
		return 0, 0, fmt.Errorf("job %d: %s: %s", j.ID, st.State, st.Description)
	}
	got, err := e.jobs.Get(ctx, job.GetParams{ID: j.ID})
	if err != nil {
		return 0, 0, err
	}
	if int(got.Counters.Delivered) != len(e.bodies) || s.BadSignatures() > 0 {
		return 0, 0, fmt.Errorf("job %d delivered %d of %d events, %d bad signatures", j.ID, got.Counters.Delivered, len(e.bodies), s.BadSignatures())
	}
	return elapsed, got.Counters.Delivered, nil
}

// bareClient is the sink's ceiling: a plain http.Client POSTing the same bodies, signed in
// advance, sequentially over one keep-alive connection, to a fresh sink.
func bareClient(ctx context.Context, bodies [][]byte, sigs []string) (time.Duration, error) {
	s, srv := newSink()
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
		"indexed. **job** = a replay job over the whole window in an embedded job store, run by a worker pool of 1 worker "+
		"(lease, locate through the index, read, dedup, deliver, checkpoint, status event) delivering through a real "+
		"`delivery.Client` (the per-webhook rate limit, a policy defaulting to 2500/s, lifted; `AllowPrivate` for "+
		"127.0.0.1) to `loadgen/sink` on an httptest server; timed from `Create` to the sink's receipt of the "+
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
		sigs[i] = delivery.Sign(deliverySecret, b)
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
				el, err := bareClient(ctx, e.bodies, sigs)
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
