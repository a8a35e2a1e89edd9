package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
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
	"github.com/replay/replay/replayd/server"
	"github.com/replay/replay/replayd/worker"
	"github.com/replay/replay/segment"
)

// deliveryEnv is one job's world: a replayd (server.New on the embedded defaults, one worker)
// whose embedded log of one partition holds n events of one webhook, indexed before it starts,
// with the app and the webhook in its embedded app store. The webhook's URL is a sink in a
// process of its own (child.go), so the sink's work is not on the replayd's heap and scheduler.
type deliveryEnv struct {
	srv     *server.Server
	sink    *remoteSink
	token   string
	secret  []byte
	webhook int64
	bodies  [][]byte // the events' values, in log order
	from    time.Time
	to      time.Time
}

// newDeliveryEnv makes the world with a per-webhook rate limit of rate events/s (math.Inf(1):
// none). profile, if not empty, is where the sink child writes its CPU profile.
func newDeliveryEnv(ctx context.Context, dir string, n int, rate float64, profile string) (_ *deliveryEnv, err error) {
	e := &deliveryEnv{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	apps, err := embeddedapp.Open(embeddedapp.Options{Dir: filepath.Join(dir, "apps")})
	if err != nil {
		return nil, err
	}
	created, err := apps.CreateApp(ctx, app.CreateAppParams{Name: "bench"})
	if err != nil {
		apps.Close()
		return nil, err
	}
	e.token, e.secret = created.Token, created.App.Secret
	if e.sink, err = startSink(ctx, e.secret, profile); err != nil {
		apps.Close()
		return nil, err
	}
	wh, err := apps.CreateWebhook(ctx, app.CreateWebhookParams{AppID: created.App.ID, URL: e.sink.base + "/webhook", Valid: true})
	apps.Close()
	if err != nil {
		return nil, err
	}
	e.webhook = wh.ID

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
	if e.sink != nil {
		e.sink.stop()
	}
}

// call makes a replay API call with the app's token and decodes the JSON answer into out.
func (e *deliveryEnv) call(ctx context.Context, method, path string, out any) error {
	return api.Call(ctx, http.DefaultClient, "http://"+e.srv.Addr(), e.token, method, path, out)
}

// jobRun is one replay as the sink saw it: from the request to the status event's answer, the
// events, and when each event was answered.
type jobRun struct {
	elapsed time.Duration
	events  int
	first   time.Duration // request → the first event answered
	steady  float64       // events/s over the last three quarters of the events (sinkRates)
	// CPU time per event over the run: of this process (the replayd, or the bare client) and
	// of the sink's.
	cpu, sinkCPU time.Duration
}

func (j jobRun) rate() float64 { return float64(j.events) / j.elapsed.Seconds() }

// sinkRates reads the rate a run held once past its ramp-up: the events answered after the
// first quarter, over the time from the first quarter's last answer to the last event's. With
// slow start the window needs about log2(needed/8) round trips to reach what the latency needs
// (5 at 100 ms: half a second); the whole-job rate counts them, this one does not.
func sinkRates(start time.Time, at []time.Time) (first time.Duration, steady float64) {
	if len(at) == 0 {
		return 0, 0
	}
	first = at[0].Sub(start)
	q := len(at) / 4
	if span := at[len(at)-1].Sub(at[q]); span > 0 {
		steady = float64(len(at)-1-q) / span.Seconds()
	}
	return first, steady
}

func perEvent(d time.Duration, events int) time.Duration {
	if events == 0 {
		return 0
	}
	return d / time.Duration(events)
}

// replayJob runs one job over the whole window, its webhook latency away, and returns the time
// from the replay request to the sink's answer to the job's replay_job_status event, the events
// delivered and the sink's times.
func (e *deliveryEnv) replayJob(ctx context.Context, latency time.Duration) (jobRun, error) {
	if err := e.sink.setLatency(ctx, latency); err != nil {
		return jobRun{}, err
	}
	n0, err := e.sink.count(ctx)
	if err != nil {
		return jobRun{}, err
	}
	bad0, err := e.sink.badSignatures(ctx)
	if err != nil {
		return jobRun{}, err
	}
	var created struct {
		JobID string `json:"job_id"`
	}
	sample, err := startCPU(e.sink.cmd.Process.Pid)
	if err != nil {
		return jobRun{}, err
	}
	start := time.Now()
	path := fmt.Sprintf("/1.1/account_activity/replay/webhooks/%d/subscriptions/all.json?from_date=%s&to_date=%s",
		e.webhook, e.from.Format("200601021504"), e.to.Format("200601021504"))
	if err := e.call(ctx, http.MethodPost, path, &created); err != nil {
		return jobRun{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	js, err := e.sink.waitJob(wctx, created.JobID)
	if err != nil {
		return jobRun{}, err
	}
	cpu, sinkCPU, err := sample.stop()
	if err != nil {
		return jobRun{}, err
	}
	if js.State != "Complete" {
		return jobRun{}, fmt.Errorf("job %s: %s: %s", created.JobID, js.State, js.Description)
	}
	at, err := e.sink.times(ctx, n0, int(js.Deliveries)+1)
	if err != nil {
		return jobRun{}, err
	}
	if len(at) != int(js.Deliveries)+1 {
		return jobRun{}, fmt.Errorf("job %s: the sink timed %d answers for %d deliveries and the status event", created.JobID, len(at), js.Deliveries)
	}
	run := jobRun{elapsed: at[len(at)-1].Sub(start), events: int(js.Deliveries)}
	run.first, run.steady = sinkRates(start, at[:len(at)-1])
	run.cpu, run.sinkCPU = perEvent(cpu, run.events), perEvent(sinkCPU, run.events)
	var got struct {
		Counts struct {
			Delivered int64 `json:"delivered"`
		} `json:"counts"`
	}
	if err := e.call(ctx, http.MethodGet, "/replay/jobs/"+created.JobID, &got); err != nil {
		return jobRun{}, err
	}
	bad, err := e.sink.badSignatures(ctx)
	if err != nil {
		return jobRun{}, err
	}
	if int(got.Counts.Delivered) != len(e.bodies) || run.events != len(e.bodies) || bad > bad0 {
		return jobRun{}, fmt.Errorf("job %s delivered %d of %d events (the sink counted %d), %d bad signatures", created.JobID, got.Counts.Delivered, len(e.bodies), run.events, bad-bad0)
	}
	return run, nil
}

// bareClient is the standard client's rate at a latency: a plain http.Client POSTing the same bodies,
// signed in advance, from concurrency goroutines over as many keep-alive connections, to the sink
// s (a process of its own, as the replays'), answering after latency.
func bareClient(ctx context.Context, s *remoteSink, bodies [][]byte, sigs []string, latency time.Duration, concurrency int) (jobRun, error) {
	if err := s.setLatency(ctx, latency); err != nil {
		return jobRun{}, err
	}
	n0, err := s.count(ctx)
	if err != nil {
		return jobRun{}, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: concurrency}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var next atomic.Int64
	errs := make(chan error, concurrency)
	url := s.base + "/bare"
	sample, err := startCPU(s.cmd.Process.Pid)
	if err != nil {
		return jobRun{}, err
	}
	start := time.Now()
	for range concurrency {
		go func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) {
					errs <- nil
					return
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bodies[i]))
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
			return jobRun{}, err
		}
	}
	run := jobRun{elapsed: time.Since(start), events: len(bodies)}
	cpu, sinkCPU, err := sample.stop()
	if err != nil {
		return jobRun{}, err
	}
	run.cpu, run.sinkCPU = perEvent(cpu, run.events), perEvent(sinkCPU, run.events)
	at, err := s.times(ctx, n0, len(bodies))
	if err != nil {
		return jobRun{}, err
	}
	if len(at) != len(bodies) {
		return jobRun{}, fmt.Errorf("sink answered %d of %d", len(at), len(bodies))
	}
	run.first, run.steady = sinkRates(start, at)
	return run, nil
}

// deliveryLatencies are the webhook latencies benchmark 6 runs at: loopback, and the 20 and
// 100 ms of real webhooks.
var deliveryLatencies = []time.Duration{0, 20 * time.Millisecond, 100 * time.Millisecond}

// boundNote says what bounded a rate held to a webhook 20 ms away, the sink on the same 2 cores:
// the pair's CPU (cpu and sink µs per event, 2 s of CPU a second) or the requests in flight
// (worker.DefaultMaxInFlight, each taking at least the 20 ms).
func boundNote(subject, whose string, cpu, sink, held float64, when string) string {
	cpuBound, windowBound := 2e6/(cpu+sink), float64(worker.DefaultMaxInFlight)/0.020
	conclusion := "so the CPU bound it"
	if windowBound < cpuBound {
		conclusion = "so the requests in flight bound it"
	}
	if held > min(cpuBound, windowBound) {
		conclusion = "above the lower bound: the CPU figures include each sample's fixed costs, large in a small sample"
	}
	return fmt.Sprintf("What bounds %s: %.1f µs of %s CPU and %.1f µs of the sink's per event (10 ms ticks), "+
		"%.1f µs together: at that cost the 2 cores, fully busy, do about %.0f events/s; %d requests in flight, each at "+
		"least 20 ms, allow at most %.0f (less the sink's and loopback's own time in each round trip); it held %.0f %s, "+
		"%s.", subject, cpu, whose, sink, cpu+sink, cpuBound, worker.DefaultMaxInFlight, windowBound, held, when, conclusion)
}

// runDelivery is benchmark 6: events/s from one job to a sink at 0, 20 and 100 ms latency, with
// the default flags (the 2500/s per-webhook limit) and with the limit raised (none), vs a bare
// client with the same concurrency (the window's maximum) at the same latency, then the large
// replay (large.go).
func runDelivery(ctx context.Context, c *Config) (*Report, error) {
	rep := &Report{Name: "delivery", Title: "6. Delivery: one job to a sink at 0, 20 and 100 ms, default flags and raised limit, vs a bare client; a large replay"}
	rep.Setup = fmt.Sprintf("One webhook's %d events (~1 KB JSON, distinct event ids) in an embedded log of one partition, "+
		"indexed. **default** = a replay job over the whole window requested from a replayd (`server.New` with the default "+
		"flags, 1 worker: lease, locate through the index, read, dedup, deliver through the adaptive window of at most %d "+
		"in flight, checkpoint, status event) through its `delivery.Client` with the default per-webhook limit of %.0f "+
		"events/s, to a `replayd/receiver` sink in a process of its own (this binary re-executed: it verifies every "+
		"signature, counts, answers after the latency and notes when it answered) on the same 2 cores. **raised** = the "+
		"same with the per-webhook limit lifted (`--webhook-rate 0`). **bare-client** = a plain net/http `http.Client` POSTing the "+
		"same bodies, signed in advance, from %d goroutines over keep-alive to the same sink at the same latency: what the "+
		"standard client does at that concurrency with nothing else to do (replayd's deliveries no longer go through "+
		"net/http's Transport but through `delivery`'s own connections, ARCHITECTURE.md \"Delivery\", so its CPU per "+
		"event can be below this baseline's). **events/s** = the job's events ÷ the time from the replay request to the sink's "+
		"answer to the `replay_job_status` event (the bare client: to its last answer); **events/s past ramp-up** = the "+
		"events after the first quarter ÷ the time from the first quarter's last answer to the last event's, at the sink "+
		"(what the window holds once it has grown); **time to first event** = the request to the sink's first answer; "+
		"**client CPU per event** = the CPU time (user + system) of this process over the sample (the replayd's, or the "+
		"bare client's) ÷ the events, **sink CPU per event** the sink process's (from /proc, 10 ms ticks): on 2 shared "+
		"cores the rates move with the neighbours' load, the CPU per event much less, and 2 cores ÷ their sum is the "+
		"ceiling of the pair. Variants alternate within a run.", c.DeliveryEvents, worker.DefaultMaxInFlight, float64(delivery.DefaultRateLimit), worker.DefaultMaxInFlight)
	profile := func(name string) string {
		if c.ProfileDir == "" {
			return ""
		}
		return filepath.Join(c.ProfileDir, name+".pprof")
	}
	def, err := newDeliveryEnv(ctx, filepath.Join(c.TempDir, "delivery-default"), c.DeliveryEvents, delivery.DefaultRateLimit, profile("sink-default"))
	if err != nil {
		return rep, err
	}
	defer def.close()
	raised, err := newDeliveryEnv(ctx, filepath.Join(c.TempDir, "delivery-raised"), c.DeliveryEvents, math.Inf(1), profile("sink-raised"))
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
			run  func() (jobRun, error)
		}{
			{"default", func() (jobRun, error) { return def.replayJob(ctx, lat) }},
			{"raised", func() (jobRun, error) { return raised.replayJob(ctx, lat) }},
			{"bare-client", func() (jobRun, error) {
				return bareClient(ctx, raised.sink, raised.bodies, sigs, lat, worker.DefaultMaxInFlight)
			}},
		}
		for run := 0; run < c.Runs; run++ {
			for i := range variants {
				v := variants[(i+run)%len(variants)]
				r, err := v.run()
				if err != nil {
					return rep, fmt.Errorf("%s %s: %w", cse, v.name, err)
				}
				rep.add(cse, v.name, "events/s", "events/s", true, r.rate())
				rep.add(cse, v.name, "events/s past ramp-up", "events/s", true, r.steady)
				rep.add(cse, v.name, "time to first event", "ms", false, ms(r.first))
				rep.add(cse, v.name, "client CPU per event", "µs", false, us(r.cpu))
				rep.add(cse, v.name, "sink CPU per event", "µs", false, us(r.sinkCPU))
			}
		}
		rep.compare(cse, "raised", "bare-client", "events/s", "events/s past ramp-up", "client CPU per event")
		rep.Compare[len(rep.Compare)-2].IsCeilingFactor = true
		rep.Compare[len(rep.Compare)-3].IsCeilingFactor = true
	}
	for _, lat := range deliveryLatencies[1:] {
		cse := fmt.Sprintf("latency=%v", lat)
		steady, whole := rep.med(cse, "default", "events/s past ramp-up"), rep.med(cse, "default", "events/s")
		rep.target(steady >= 0.9*delivery.DefaultRateLimit, fmt.Sprintf("default flags at %v: reaches the per-webhook limit and stays there (≥ 90%% of %d events/s past ramp-up)", lat, delivery.DefaultRateLimit),
			"%.0f events/s past ramp-up; %.0f over the whole job (slow start and the status event's round trip included)", steady, whole)
	}
	// The window of a 10k-event job grows for its first sixth (slow start from the initial
	// window, 8, doubles once a round trip), so the target is the rate it holds once grown; the
	// whole job's rate is reported beside it, and the large replay (6b) judges a whole replay.
	// What bounds the raised rate, from this run's CPU columns (boundNote): the CPU the replayd and
	// the sink share, or the requests in flight.
	for _, v := range []string{"raised", "bare-client"} {
		cpu, sink := rep.med("latency=20ms", v, "client CPU per event"), rep.med("latency=20ms", v, "sink CPU per event")
		if cpu+sink > 0 {
			rep.Notes = append(rep.Notes, boundNote(fmt.Sprintf("**%s** at 20ms", v), "its", cpu, sink, rep.med("latency=20ms", v, "events/s past ramp-up"), "past ramp-up"))
		}
	}
	whole, steady := rep.med("latency=20ms", "raised", "events/s"), rep.med("latency=20ms", "raised", "events/s past ramp-up")
	rep.target(steady >= 20000, "raised limit at 20ms, the sink in another process: ≥ 20,000 events/s once the window has grown",
		"%.0f events/s past ramp-up, %.0f over the whole 10k-event job; bare client %.0f and %.0f", steady, whole,
		rep.med("latency=20ms", "bare-client", "events/s past ramp-up"), rep.med("latency=20ms", "bare-client", "events/s"))
	return rep, nil
}
