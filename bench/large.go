package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/replayd/api"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/embeddedapp"
	"github.com/replay/replay/replayd/dedup"
	"github.com/replay/replay/replayd/traffic"
	"github.com/replay/replay/segment"
)

// largeLatency is the webhook latency of the large replay.
const largeLatency = 20 * time.Millisecond

// largeData is the large replay's data directory: LargeEvents events of one webhook spread over
// the 5 days of retention (traffic's payloads, 1–2.5 KB), indexed, with the app and the webhook
// (the sink's URL) in its app store. Made once; every replayd started on it reads it.
type largeData struct {
	dir      string
	token    string
	webhook  int64
	from, to time.Time // the whole window: every event
	mid      time.Time // [from, mid) is the smaller window
	inMid    int       // its events
	events   int
	made     time.Duration
	logBytes int64
}

// makeLargeData makes the data set in dir, and the sink (a process of its own, with the app's
// secret) that the webhook's URL names; the caller stops it.
func makeLargeData(ctx context.Context, dir string, events int, sinkProfile string) (_ *largeData, _ *remoteSink, err error) {
	t0 := time.Now()
	d := &largeData{dir: dir, events: events}
	apps, err := embeddedapp.Open(embeddedapp.Options{Dir: filepath.Join(dir, "apps")})
	if err != nil {
		return nil, nil, err
	}
	defer apps.Close()
	created, err := apps.CreateApp(ctx, app.CreateAppParams{Name: "bench-large"})
	if err != nil {
		return nil, nil, err
	}
	sink, err := startSink(ctx, created.App.Secret, sinkProfile)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			sink.stop()
		}
	}()
	wh, err := apps.CreateWebhook(ctx, app.CreateWebhookParams{AppID: created.App.ID, URL: sink.base + "/large", Valid: true})
	if err != nil {
		return nil, nil, err
	}
	d.token, d.webhook = created.Token, wh.ID

	// The window: from ten minutes inside the 5 days of retention (the API refuses a from_date
	// before them, and the data must still be inside when the replay starts) to a minute ago.
	now := time.Now().UTC().Truncate(time.Minute)
	d.from, d.to = now.Add(-5*24*time.Hour+10*time.Minute), now.Add(-time.Minute)
	d.mid = d.from.Add(d.to.Sub(d.from) / 4).Truncate(time.Minute)
	g, err := traffic.New(traffic.Config{Events: events, WebhookIDs: []string{strconv.FormatInt(d.webhook, 10)},
		Span: d.to.Sub(d.from), End: d.to, Seed: 6})
	if err != nil {
		return nil, nil, err
	}
	l, err := engine.Open(engine.Options{Dir: filepath.Join(dir, "log"), Partitions: 1, Sync: engine.SyncNever, Retention: -1})
	if err != nil {
		return nil, nil, err
	}
	key := []byte(strconv.FormatInt(d.webhook, 10))
	recs := make([]engine.Record, 0, 256)
	for {
		ev, ok := g.Next()
		if ok {
			if ev.Timestamp < d.mid.UnixMilli() {
				d.inMid++
			}
			recs = append(recs, engine.Record{Key: key, Value: ev.Body, Timestamp: ev.Timestamp,
				Headers: []segment.Header{{Key: []byte(dedup.EventIDHeader), Value: strconv.AppendUint(nil, ev.ID, 10)}}})
			d.logBytes += int64(len(ev.Body))
		}
		if len(recs) == cap(recs) || (!ok && len(recs) > 0) {
			if _, err := l.Append(ctx, recs); err != nil {
				l.Close()
				return nil, nil, err
			}
			recs = recs[:0]
		}
		if !ok {
			break
		}
	}
	if _, err := index.RebuildIndex(ctx, index.RebuildOptions{DataDir: dir, Source: l, Retention: -1, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		l.Close()
		return nil, nil, err
	}
	if err := l.Close(); err != nil {
		return nil, nil, err
	}
	d.made = time.Since(t0)
	return d, sink, nil
}

// largeRun is one large replay by a replayd of its own.
type largeRun struct {
	jobRun
	idleRSS, peakRSS int64 // the replayd's VmHWM before the request and after the status event
}

// replayLarge starts a replayd (a child: its peak RSS is its own) on d with the per-webhook
// limit lifted, replays [from, to) to the sink at largeLatency and stops the replayd.
func replayLarge(ctx context.Context, d *largeData, sink *remoteSink, from, to time.Time, want int, profile string) (largeRun, error) {
	env := []string{childDataEnv + "=" + d.dir, childRateEnv + "=0"}
	if profile != "" {
		env = append(env, childProfileEnv+"="+profile)
	}
	srv, err := startChild(ctx, "serve", env...)
	if err != nil {
		return largeRun{}, err
	}
	defer srv.stop()
	var run largeRun
	if run.idleRSS, err = srv.peakRSS(); err != nil {
		return largeRun{}, err
	}
	if err := sink.setLatency(ctx, largeLatency); err != nil {
		return largeRun{}, err
	}
	n0, err := sink.count(ctx)
	if err != nil {
		return largeRun{}, err
	}
	cpu0, err := srv.cpu()
	if err != nil {
		return largeRun{}, err
	}
	sinkCPU0, err := sink.cpu()
	if err != nil {
		return largeRun{}, err
	}
	base := "http://" + srv.addr
	var created struct {
		JobID string `json:"job_id"`
	}
	start := time.Now()
	path := fmt.Sprintf("/1.1/account_activity/replay/webhooks/%d/subscriptions/all.json?from_date=%s&to_date=%s",
		d.webhook, from.Format("200601021504"), to.Format("200601021504"))
	if err := api.Call(ctx, http.DefaultClient, base, d.token, http.MethodPost, path, &created); err != nil {
		return largeRun{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	js, err := sink.waitJob(wctx, created.JobID)
	if err != nil {
		return largeRun{}, err
	}
	if run.peakRSS, err = srv.peakRSS(); err != nil {
		return largeRun{}, err
	}
	cpu1, err := srv.cpu()
	if err != nil {
		return largeRun{}, err
	}
	sinkCPU1, err := sink.cpu()
	if err != nil {
		return largeRun{}, err
	}
	if js.State != "Complete" || int(js.Deliveries) != want {
		return largeRun{}, fmt.Errorf("job %s: %s (%s), %d of %d events at the sink", created.JobID, js.State, js.Description, js.Deliveries, want)
	}
	at, err := sink.times(ctx, n0, want+1)
	if err != nil {
		return largeRun{}, err
	}
	if len(at) != want+1 {
		return largeRun{}, fmt.Errorf("job %s: the sink timed %d answers for %d events and the status event", created.JobID, len(at), want)
	}
	run.jobRun = jobRun{elapsed: at[len(at)-1].Sub(start), events: want, cpu: perEvent(cpu1-cpu0, want), sinkCPU: perEvent(sinkCPU1-sinkCPU0, want)}
	run.first, run.steady = sinkRates(start, at[:len(at)-1])
	return run, nil
}

// runLarge is the brief's large replay (benchmark 6, point 4): one webhook's LargeEvents events
// over 5 days replayed by one job at 20 ms, and the same replayd on a quarter of the window: the
// rate, the time to first event and the replayd's peak RSS, which must not grow with the window.
func runLarge(ctx context.Context, c *Config) (*Report, error) {
	rep := &Report{Name: "large", Title: "6b. A large replay: one webhook's events over 5 days, at 20 ms, and the replayd's peak RSS"}
	profile := func(name string) string {
		if c.ProfileDir == "" {
			return ""
		}
		return filepath.Join(c.ProfileDir, name+".pprof")
	}
	d, sink, err := makeLargeData(ctx, filepath.Join(c.TempDir, "large"), c.LargeEvents, profile("sink-large"))
	if err != nil {
		return rep, err
	}
	defer sink.stop()
	small, err := replayLarge(ctx, d, sink, d.from, d.mid, d.inMid, profile("serve-large-quarter"))
	if err != nil {
		return rep, fmt.Errorf("a quarter of the window: %w", err)
	}
	whole, err := replayLarge(ctx, d, sink, d.from, d.to, d.events, profile("serve-large"))
	if err != nil {
		return rep, fmt.Errorf("the whole window: %w", err)
	}
	rep.Setup = fmt.Sprintf("One webhook's %d events (traffic's Account Activity payloads, %.0f B on average, distinct "+
		"event ids), their timestamps spread evenly over the 5 days of retention (%s to %s), in an embedded log of one "+
		"partition, indexed (made in %v). Each replay is one job requested through the API of a replayd of its own (this "+
		"binary re-executed, running `server.New` with `replayd serve`'s defaults — 4 workers, the 512-event window, "+
		"the dedup cache — but the per-webhook limit lifted: at the default 2500 events/s the whole window takes %.0f s "+
		"whatever the replayd does) to a sink in another process answering after %v: **whole** = the 5 days (%d "+
		"events), **quarter** = their first quarter (%d events, another fresh replayd), side by side in one case: "+
		"the ratio of their peaks is 1 when memory does not grow with the window. **peak RSS** = the replayd's "+
		"VmHWM after the status event; **idle RSS** = the same before the request; **replayd** and **sink CPU per "+
		"event** = each process's CPU time over the job (from /proc, 10 ms ticks) ÷ its events. One sample each (a full-size job "+
		"takes about a minute), whatever --runs says.",
		d.events, float64(d.logBytes)/float64(d.events), d.from.Format(time.DateTime), d.to.Format(time.DateTime),
		d.made.Round(100*time.Millisecond), float64(d.events)/2500, largeLatency, d.events, d.inMid)
	cse := fmt.Sprintf("events=%d", d.events)
	for _, v := range []struct {
		name string
		r    largeRun
	}{{"quarter", small}, {"whole", whole}} {
		rep.add(cse, v.name, "events/s", "events/s", true, v.r.rate())
		rep.add(cse, v.name, "events/s past ramp-up", "events/s", true, v.r.steady)
		rep.add(cse, v.name, "time to first event", "ms", false, ms(v.r.first))
		rep.add(cse, v.name, "peak RSS", "MiB", false, float64(v.r.peakRSS)/(1<<20))
		rep.add(cse, v.name, "idle RSS", "MiB", false, float64(v.r.idleRSS)/(1<<20))
		rep.add(cse, v.name, "replayd CPU per event", "µs", false, us(v.r.cpu))
		rep.add(cse, v.name, "sink CPU per event", "µs", false, us(v.r.sinkCPU))
	}
	// What bounds the rate: the replayd and the sink share the 2 cores, at most
	// worker.DefaultMaxInFlight requests are in flight.
	if us(whole.cpu)+us(whole.sinkCPU) > 0 {
		rep.Notes = append(rep.Notes, boundNote("**whole**", "the replayd's", us(whole.cpu), us(whole.sinkCPU), whole.rate(), "over the whole replay"))
	}
	// quarter's ÷ whole's: 1 when the peak does not grow with the window.
	rep.compare(cse, "whole", "quarter", "peak RSS")
	peak, quarter := float64(whole.peakRSS)/(1<<20), float64(small.peakRSS)/(1<<20)
	rep.target(peak < 256, fmt.Sprintf("large replay (%d events over 5 days at 20 ms): the replayd's peak RSS < 256 MiB", d.events),
		"%.1f MiB peak (%.1f idle); %.0f events/s, first event after %.0f ms", peak, float64(whole.idleRSS)/(1<<20), whole.rate(), ms(whole.first))
	rep.target(peak <= quarter*1.1+8, "large replay: memory independent of the window's size (the whole window's peak within 10% + 8 MiB of a quarter's)",
		"%.1f MiB for %d events vs %.1f MiB for %d", peak, whole.events, quarter, small.events)
	rep.target(whole.rate() >= 20000, fmt.Sprintf("large replay at 20 ms, limit lifted, the sink in another process: one replay of %d events at ≥ 20,000 events/s (whole replay)", whole.events),
		"%.0f events/s from the request to the status event's answer", whole.rate())
	return rep, nil
}
