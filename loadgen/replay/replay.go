// Package replay fires replay requests at the replay API and measures each job at the sink: time
// to first event, total time and events per second, with percentiles across jobs.
package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/replay/replay/replayd/receiver"
)

// Waiter waits for a job's replay_job_status at the sink.
type Waiter func(ctx context.Context, jobID string) (receiver.JobStats, error)

// HTTPWaiter waits through a sink's GET /_sink/jobs/{id}?wait= long poll.
func HTTPWaiter(c *http.Client, sinkURL string) Waiter {
	sinkURL = strings.TrimRight(sinkURL, "/")
	return func(ctx context.Context, jobID string) (receiver.JobStats, error) {
		for {
			req, err := http.NewRequestWithContext(ctx, "GET", sinkURL+"/_sink/jobs/"+url.PathEscape(jobID)+"?wait=30s", nil)
			if err != nil {
				return receiver.JobStats{}, err
			}
			resp, err := c.Do(req)
			if err != nil {
				return receiver.JobStats{}, fmt.Errorf("sink %s: %w", sinkURL, err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				var js receiver.JobStats
				if err := json.Unmarshal(body, &js); err != nil {
					return js, fmt.Errorf("sink %s: %w", sinkURL, err)
				}
				return js, nil
			case http.StatusNotFound:
				if err := ctx.Err(); err != nil {
					return receiver.JobStats{}, err
				}
				continue // waited 30s without it: ask again
			default:
				return receiver.JobStats{}, fmt.Errorf("sink %s: %d %s", sinkURL, resp.StatusCode, body)
			}
		}
	}
}

// Options of a run.
type Options struct {
	API         string // base URL of replayd, http://127.0.0.1:8080
	Token       string // the app's bearer token
	Webhooks    []string
	From, To    time.Time     // minute precision, UTC
	Requests    int           // replay requests in all, round robin over Webhooks; default one per webhook
	Concurrency int           // requests in flight; default 1. One webhook's jobs never overlap (the API allows one active job per webhook)
	Timeout     time.Duration // per job, from submission to its status event; default 10m
	Wait        Waiter
	Client      *http.Client
}

// Result is one request's outcome.
type Result struct {
	Webhook      string
	JobID        string
	Code         int    // the API's answer to the POST
	Err          string // why it failed, empty when it completed
	Submitted    time.Time
	Job          receiver.JobStats
	TTFE         time.Duration // submission → first event at the sink (0 when there was none)
	Total        time.Duration // submission → status event at the sink
	EventsPerSec float64       // events / Total
}

// Run submits the requests and waits for each job's completion at the sink.
func Run(ctx context.Context, o Options) []Result {
	if o.Requests <= 0 {
		o.Requests = len(o.Webhooks)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	locks := map[string]*sync.Mutex{}
	for _, w := range o.Webhooks {
		locks[w] = &sync.Mutex{}
	}
	results := make([]Result, o.Requests)
	next := make(chan int)
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				w := o.Webhooks[i%len(o.Webhooks)]
				locks[w].Lock()
				results[i] = one(ctx, &o, w)
				locks[w].Unlock()
			}
		}()
	}
	for i := 0; i < o.Requests && ctx.Err() == nil; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	for i := range results {
		if results[i].Webhook == "" {
			results[i] = Result{Webhook: o.Webhooks[i%len(o.Webhooks)], Err: "not submitted: " + fmt.Sprint(ctx.Err())}
		}
	}
	return results
}

func one(ctx context.Context, o *Options, webhook string) Result {
	r := Result{Webhook: webhook}
	u := fmt.Sprintf("%s/1.1/account_activity/replay/webhooks/%s/subscriptions/all.json?from_date=%s&to_date=%s",
		strings.TrimRight(o.API, "/"), url.PathEscape(webhook), o.From.UTC().Format("200601021504"), o.To.UTC().Format("200601021504"))
	req, err := http.NewRequestWithContext(ctx, "POST", u, nil)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	req.Header.Set("Authorization", "Bearer "+o.Token)
	r.Submitted = time.Now()
	resp, err := o.Client.Do(req)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	r.Code = resp.StatusCode
	var ok struct {
		JobID string `json:"job_id"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(body, &ok) != nil || ok.JobID == "" {
		r.Err = fmt.Sprintf("replay request: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		return r
	}
	r.JobID = ok.JobID
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	js, err := o.Wait(wctx, r.JobID)
	if err != nil {
		r.Err = "waiting for the job's status at the sink: " + err.Error()
		return r
	}
	r.Job = js
	r.Total = js.CompletedAt.Sub(r.Submitted)
	if !js.FirstAt.IsZero() {
		r.TTFE = js.FirstAt.Sub(r.Submitted)
	}
	if r.Total > 0 {
		r.EventsPerSec = float64(js.Deliveries) / r.Total.Seconds()
	}
	if js.State != "Complete" {
		r.Err = "job " + js.State + ": " + js.Description
	}
	return r
}

// Percentiles of a sample.
type Percentiles struct{ P50, P90, P99, Max float64 }

// Percentile is the nearest-rank percentile of sorted values.
func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	sort.Float64s(v)
	at := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(v)))) - 1
		return v[max(0, min(i, len(v)-1))]
	}
	return Percentiles{at(50), at(90), at(99), v[len(v)-1]}
}

// Summary is the percentiles across completed jobs.
type Summary struct {
	Jobs, Completed, Failed int
	Events                  int64
	TTFE, Total             Percentiles // seconds
	EventsPerSec            Percentiles
	Wall                    time.Duration
}

// Summarize computes the percentiles over the jobs that reached their status event.
func Summarize(rs []Result) Summary {
	var s Summary
	var ttfe, total, eps []float64
	var first, last time.Time
	for _, r := range rs {
		s.Jobs++
		if r.Err != "" {
			s.Failed++
		}
		if r.Job.JobID == "" {
			continue
		}
		if r.Err == "" {
			s.Completed++
		}
		s.Events += r.Job.Deliveries
		if r.TTFE > 0 {
			ttfe = append(ttfe, r.TTFE.Seconds())
		}
		total = append(total, r.Total.Seconds())
		eps = append(eps, r.EventsPerSec)
		if first.IsZero() || r.Submitted.Before(first) {
			first = r.Submitted
		}
		if r.Job.CompletedAt.After(last) {
			last = r.Job.CompletedAt
		}
	}
	s.TTFE, s.Total, s.EventsPerSec = percentiles(ttfe), percentiles(total), percentiles(eps)
	if !first.IsZero() {
		s.Wall = last.Sub(first)
	}
	return s
}

// Write prints one line per job and the percentiles.
func Write(w io.Writer, rs []Result) {
	fmt.Fprintf(w, "%-20s %-20s %-10s %8s %10s %10s %10s  %s\n", "webhook", "job", "state", "events", "ttfe", "total", "events/s", "error")
	for _, r := range rs {
		state := r.Job.State
		if state == "" {
			state = "-"
		}
		fmt.Fprintf(w, "%-20s %-20s %-10s %8d %10s %10s %10.0f  %s\n", r.Webhook, r.JobID, state, r.Job.Deliveries,
			r.TTFE.Round(time.Millisecond), r.Total.Round(time.Millisecond), r.EventsPerSec, r.Err)
	}
	s := Summarize(rs)
	fmt.Fprintf(w, "\n%d jobs: %d completed, %d failed; %d events in %s\n", s.Jobs, s.Completed, s.Failed, s.Events, s.Wall.Round(time.Millisecond))
	fmt.Fprintf(w, "%-18s %10s %10s %10s %10s\n", "", "p50", "p90", "p99", "max")
	sec := func(v float64) string {
		return (time.Duration(v * float64(time.Second))).Round(time.Millisecond).String()
	}
	fmt.Fprintf(w, "%-18s %10s %10s %10s %10s\n", "time to first", sec(s.TTFE.P50), sec(s.TTFE.P90), sec(s.TTFE.P99), sec(s.TTFE.Max))
	fmt.Fprintf(w, "%-18s %10s %10s %10s %10s\n", "total time", sec(s.Total.P50), sec(s.Total.P90), sec(s.Total.P99), sec(s.Total.Max))
	fmt.Fprintf(w, "%-18s %10.0f %10.0f %10.0f %10.0f\n", "events/s", s.EventsPerSec.P50, s.EventsPerSec.P90, s.EventsPerSec.P99, s.EventsPerSec.Max)
}
