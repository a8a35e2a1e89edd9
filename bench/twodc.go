package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/replayd/dedup"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/embeddedjob"
	"github.com/replay/replay/replayd/worker"
	"github.com/replay/replay/segment"
)

// twoDCShare is the share of the events of the two-datacenter data set written into both.
const twoDCShare = 0.25

// twoDCEnv is one variant of benchmark 7: its topics (embedded logs), an index over them, a job
// store and a worker pool delivering to a counting deliverer.
type twoDCEnv struct {
	srcs   []engine.Source
	src    engine.Source
	ix     *index.Index
	jobs   *embeddedjob.Driver
	pool   *worker.Pool
	status chan string // job ids of replay_job_status events delivered
	events atomic.Int64
	hook   int64
	from   int64
	to     int64
}

// countingDeliverer counts deliveries and reports status events.
type countingDeliverer struct{ e *twoDCEnv }

func (d countingDeliverer) Deliver(_ context.Context, _ worker.Target, body []byte) (delivery.Result, error) {
	if s := string(body); strings.HasPrefix(s, `{"replay_job_status"`) {
		i := strings.Index(s, `"job_id":"`)
		d.e.status <- s[i+10 : i+10+strings.IndexByte(s[i+10:], '"')]
	} else {
		d.e.events.Add(1)
	}
	return delivery.Result{Attempts: 1, Status: 200}, nil
}

// newTwoDCEnv writes the webhook's n unique events and three times as many of other webhooks
// over an hour into len(dcs) topics: each event into one topic, a share both into every topic
// (dcs == 2 and both), with snappy batches of 16 KiB (the mirror's of 32 KiB: another
// producer's batching).
func newTwoDCEnv(ctx context.Context, dir string, n, topics int, both float64) (_ *twoDCEnv, err error) {
	e := &twoDCEnv{status: make(chan string, 4), hook: 1095098195724595200}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	names := []string{"delivery_log", "dc2.delivery_log"}[:topics]
	logs := make([]*engine.Log, topics)
	for i, name := range names {
		if logs[i], err = engine.Open(engine.Options{Dir: filepath.Join(dir, name), Topic: name, Partitions: 2, Sync: engine.SyncNever,
			Retention: -1, MaxBatchBytes: 16 << 10 << i}); err != nil {
			return nil, err
		}
		e.srcs = append(e.srcs, logs[i])
	}
	if topics == 1 {
		e.src = logs[0]
	} else if e.src, err = engine.NewTopics(ctx, e.srcs...); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(7, 7))
	e.from = time.Now().Add(-3 * time.Hour).Truncate(time.Minute).UnixMilli()
	e.to = e.from + time.Hour.Milliseconds()
	recs := make([][]engine.Record, topics)
	for i := range 4 * n {
		wh := e.hook
		if i%4 != 0 {
			wh = 2000 + rng.Int64N(400)
		}
		ts := e.from + int64(i)*time.Hour.Milliseconds()/int64(4*n)
		body := fmt.Appendf(nil, `{"for_user_id":"1","tweet_create_events":[{"id_str":"%d","text":"%0700d"}]}`, 1461000000000000000+i, i)
		rec := engine.Record{Key: strconv.AppendInt(nil, wh, 10), Value: body, Timestamp: ts,
			Headers: []segment.Header{{Key: []byte(dedup.EventIDHeader), Value: strconv.AppendInt(nil, int64(i), 10)}}}
		if topics == 2 && rng.Float64() < both {
			recs[0], recs[1] = append(recs[0], rec), append(recs[1], rec)
		} else {
			t := rng.IntN(topics)
			recs[t] = append(recs[t], rec)
		}
	}
	// Every topic's partitions go on past the window (a mirror that has caught up with it).
	for t := range recs {
		for k := range 40 {
			recs[t] = append(recs[t], engine.Record{Key: strconv.AppendInt(nil, int64(3000+k), 10), Value: []byte(`{}`), Timestamp: e.to + int64(k)})
		}
	}
	for i, l := range logs {
		for j := 0; j < len(recs[i]); j += 500 {
			if _, err := l.Append(ctx, recs[i][j:min(j+500, len(recs[i]))]); err != nil {
				return nil, err
			}
		}
	}
	if e.ix, err = index.Open(index.Options{Dir: filepath.Join(dir, "index"), Retention: -1, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		return nil, err
	}
	if err := e.ix.Build(ctx, e.src, index.BuildOptions{}); err != nil {
		return nil, err
	}
	if e.jobs, err = embeddedjob.Open(embeddedjob.Options{Dir: filepath.Join(dir, "jobs")}); err != nil {
		return nil, err
	}
	e.pool, err = worker.New(worker.Options{
		Jobs: e.jobs, Source: e.src, Locator: worker.IndexLocator(e.ix, e.src),
		Targets: func(context.Context, int64) (worker.Target, error) {
			return worker.Target{WebhookID: strconv.FormatInt(e.hook, 10), URL: "http://sink", Secret: []byte("s")}, nil
		},
		Deliverer: countingDeliverer{e},
		NewDeduper: func() worker.Deduper {
			c, _ := dedup.New(dedup.Options{})
			return c
		},
		Workers: 1, PollInterval: time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	return e, e.pool.Start(ctx)
}

func (e *twoDCEnv) close() {
	if e.pool != nil {
		e.pool.Stop(context.Background())
	}
	if e.jobs != nil {
		e.jobs.Close()
	}
	if e.ix != nil {
		e.ix.Close()
	}
	if e.src != nil {
		e.src.Close()
	} else {
		for _, s := range e.srcs {
			s.Close()
		}
	}
}

// replay runs one job over the window and returns its time (from the job's creation to its
// status event) and the events delivered.
func (e *twoDCEnv) replay(ctx context.Context) (time.Duration, int64, error) {
	e.events.Store(0)
	n, err := engine.TopicsOf(e.src).PerTopic(ctx)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	j, err := e.jobs.Create(ctx, job.CreateParams{AppID: 1, WebhookID: e.hook, Partition: engine.PartitionFor(strconv.AppendInt(nil, e.hook, 10), n), FromMs: e.from, ToMs: e.to})
	if err != nil {
		return 0, 0, err
	}
	e.pool.Notify()
	select {
	case id := <-e.status:
		if id != strconv.FormatInt(j.ID, 10) {
			return 0, 0, fmt.Errorf("status event of job %s, want %d", id, j.ID)
		}
	case <-time.After(5 * time.Minute):
		return 0, 0, errors.New("no status event in 5 minutes")
	}
	elapsed := time.Since(start)
	done, err := e.jobs.Get(ctx, job.GetParams{ID: j.ID})
	if err != nil {
		return 0, 0, err
	}
	if done.State != job.StateCompleted {
		return 0, 0, fmt.Errorf("job %d: %s: %s", j.ID, done.State, done.Reason)
	}
	return elapsed, e.events.Load(), nil
}

// runTwoDC is benchmark 7: a replay over the local and the mirrored topic (merged by timestamp,
// deduplicated across both) vs the same events in the local topic alone.
func runTwoDC(ctx context.Context, c *Config) (*Report, error) {
	n := c.TwoDCEvents
	rep := &Report{Name: "twodc", Title: "7. Two datacenters: replay over local + mirrored topics vs local only"}
	rep.Setup = fmt.Sprintf("One webhook's %d unique events (~800 B, distinct event ids) among %d of 400 other webhooks, "+
		"over an hour, in embedded logs of 2 partitions, indexed. **local-only** = every event once in one topic. "+
		"**merged** = the same events each in `delivery_log` or `dc2.delivery_log` (the mirror's batches twice as big), "+
		"%.0f%% in both: %.0f%% more records to read, the copies dropped by the dedup cache. **merged-disjoint** = the "+
		"events split over the two topics, none in both: the merge alone. Each sample is one replay job through "+
		"`worker.Pool` (lease, locate in every topic, read, merge by timestamp, dedup, deliver, checkpoint per topic, "+
		"status event) to a deliverer that only counts, timed from the job's creation to its status event; variants "+
		"rotate within a run.", n, 3*n, 100*twoDCShare, 100*twoDCShare)
	variants := []struct {
		name   string
		topics int
		both   float64
	}{{"local-only", 1, 0}, {"merged", 2, twoDCShare}, {"merged-disjoint", 2, 0}}
	envs := make([]*twoDCEnv, len(variants))
	for i, v := range variants {
		e, err := newTwoDCEnv(ctx, filepath.Join(c.TempDir, "twodc-"+v.name), n, v.topics, v.both)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", v.name, err)
		}
		defer e.close()
		envs[i] = e
	}
	cse := fmt.Sprintf("events=%d", n)
	for run := 0; run < c.Runs; run++ {
		for k := range variants {
			i := (k + run) % len(variants)
			el, got, err := envs[i].replay(ctx)
			if err != nil {
				return rep, fmt.Errorf("%s: %w", variants[i].name, err)
			}
			if got != int64(n) {
				return rep, fmt.Errorf("%s: delivered %d of %d unique events", variants[i].name, got, n)
			}
			rep.add(cse, variants[i].name, "total time", "ms", false, float64(el.Microseconds())/1000)
			rep.add(cse, variants[i].name, "per event", "µs", false, float64(el.Nanoseconds())/1000/float64(n))
		}
	}
	rep.compare(cse, "merged", "local-only", "total time", "per event")
	rep.compare(cse, "merged-disjoint", "local-only", "total time")
	merged, local := rep.med(cse, "merged", "per event"), rep.med(cse, "local-only", "per event")
	rep.target(merged <= 2*local, "a replay over two topics costs at most twice the local one per delivered event (it reads 1.25× the records)",
		"%.1f vs %.1f µs/event (%.2f×)", merged, local, merged/local)
	rep.Notes = append(rep.Notes, "Delivery is a counter here, so the times are the read, merge and dedup path; at "+
		"real webhook latencies (benchmark 6) delivery dominates and the merge's share shrinks accordingly.")
	return rep, nil
}
