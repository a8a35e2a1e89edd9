package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/worker"
)

// JobRow is one job as the jobs page shows it (and GET /console/api/jobs answers).
type JobRow struct {
	ID        string `json:"job_id"`
	AppID     string `json:"app_id"`
	WebhookID string `json:"webhook_id"`
	// From and To are the window, UTC, to the minute (To exclusive).
	From  string `json:"from"`
	To    string `json:"to"`
	State string `json:"state"`
	// Active: OPEN, STARTED or ONGOING.
	Active bool         `json:"active"`
	Counts job.Counters `json:"counts"`
	// Batches is how many record batches the index lists for the window (-1: not known); Done
	// how many of them lie below the checkpoint. The index counts batches, not events.
	Batches int `json:"batches"`
	Done    int `json:"batches_done"`
	// Percent is Done of Batches (100 once COMPLETED), 0–100.
	Percent float64 `json:"percent"`
	// Rate is the events delivered per second over the last samples (0: not known).
	Rate float64 `json:"events_per_second"`
	// ETA is the time left at the pace of the batches so far ("" when not known).
	ETA       string `json:"eta"`
	Reason    string `json:"reason,omitempty"`
	CreatedAt string `json:"created_at"`
}

// JobDetail is one job as its page shows it (and GET /console/api/jobs/{job_id} answers).
type JobDetail struct {
	JobRow
	Partition  int32  `json:"partition"`
	Checkpoint int64  `json:"checkpoint"`
	StartedAt  string `json:"started_at,omitempty"`
	FinishedAt string `json:"finished_at,omitempty"`
	UpdatedAt  string `json:"updated_at"`
	LeaseOwner string `json:"lease_owner,omitempty"`
	// FirstUndelivered is the timestamp of the earliest event not delivered, if any.
	FirstUndelivered string `json:"first_undelivered,omitempty"`
	// Completion is the replay_job_status event the job's end POSTed to the webhook ("" while
	// active, and for a canceled job, which sends none).
	Completion string `json:"completion_event,omitempty"`
	// CompletionStatus is where that event stands (job.StatusEvent): pending, delivered or
	// given_up; "" while active, for a canceled job, and for one finished before it was recorded.
	CompletionStatus string `json:"completion_status,omitempty"`
	// Samples are the counters over time, oldest first, as this instance's sampler saw them.
	Samples []Sample `json:"samples"`
}

// Sample is a job's counters at one moment.
type Sample struct {
	At         time.Time `json:"at"`
	Read       int64     `json:"read"`
	Delivered  int64     `json:"delivered"`
	Checkpoint int64     `json:"checkpoint"`
}

// lookups bounds the index lookups one answer makes for windows not cached yet (a long window
// is a seek per minute): a listing of many jobs fills in its rows' batch counts over a few
// polls instead of all at once.
type lookups struct{ left int }

// lookupsPerAnswer is how many windows one answer may look up in the index.
const lookupsPerAnswer = 16

func (l *lookups) take() bool {
	if l == nil {
		return true
	}
	if l.left <= 0 {
		return false
	}
	l.left--
	return true
}

func (c *Console) row(ctx context.Context, j *job.Job, budget *lookups) JobRow {
	r := JobRow{
		ID: strconv.FormatInt(j.ID, 10), AppID: strconv.FormatInt(j.AppID, 10), WebhookID: strconv.FormatInt(j.WebhookID, 10),
		From: time.UnixMilli(j.FromMs).UTC().Format("2006-01-02 15:04"), To: time.UnixMilli(j.ToMs).UTC().Format("2006-01-02 15:04"),
		State: j.State.String(), Active: j.State.Active(), Counts: j.Counters, Reason: j.Reason, CreatedAt: formatTime(j.CreatedAt),
		Batches: -1,
	}
	if offsets, ok := c.windows.get(ctx, j, budget); ok {
		r.Batches = len(offsets)
		r.Done = sort.Search(len(offsets), func(i int) bool { return offsets[i] >= j.Checkpoint })
	}
	switch {
	case j.State == job.StateCompleted:
		r.Percent, r.Done = 100, max(r.Batches, 0)
	case r.Batches > 0:
		r.Percent = 100 * float64(r.Done) / float64(r.Batches)
	}
	r.Rate = c.sampler.rate(j)
	if r.Active && r.Done > 0 && r.Batches > r.Done && !j.StartedAt.IsZero() {
		elapsed := j.UpdatedAt.Sub(j.StartedAt)
		left := time.Duration(float64(elapsed) * float64(r.Batches-r.Done) / float64(r.Done))
		r.ETA = formatDuration(left)
	}
	return r
}

func (c *Console) detail(ctx context.Context, j *job.Job) JobDetail {
	d := JobDetail{JobRow: c.row(ctx, j, nil), Partition: j.Partition, Checkpoint: j.Checkpoint,
		StartedAt: formatTime(j.StartedAt), FinishedAt: formatTime(j.FinishedAt), UpdatedAt: formatTime(j.UpdatedAt), LeaseOwner: j.LeaseOwner,
		Samples: c.sampler.samples(j)}
	if d.Samples == nil {
		d.Samples = []Sample{}
	}
	if j.FirstUndeliveredMs != nil {
		d.FirstUndelivered = time.UnixMilli(*j.FirstUndeliveredMs).UTC().Format("2006-01-02 15:04:05.000Z")
	}
	if j.State == job.StateCompleted || j.State == job.StateIncomplete {
		d.Completion = completionEvent(j)
		d.CompletionStatus = j.StatusEvent.String()
	}
	return d
}

// completionEvent is the replay_job_status event a finished job POSTed (the worker's own).
func completionEvent(j *job.Job) string {
	desc := j.Reason
	if j.State == job.StateCompleted && desc == "" {
		desc = "Job completed successfully"
	}
	var b bytes.Buffer
	json.Indent(&b, worker.StatusEvent(j.WebhookID, j.ID, j.State, desc), "", "  ")
	return b.String()
}

func formatDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return "<1s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// windowCache remembers the batch offsets of jobs' windows: a finished job's for good (as long
// as it is among the last cached), an active one's for windowTTL (late events may still land
// in a window).
type windowCache struct {
	loc Locator
	now func() time.Time
	mu  sync.Mutex
	m   map[int64]windowEntry
}

type windowEntry struct {
	offsets []int64
	at      time.Time
	final   bool
}

const (
	windowTTL     = 30 * time.Second
	windowEntries = 2048
)

func newWindowCache(loc Locator, now func() time.Time) *windowCache {
	return &windowCache{loc: loc, now: now, m: map[int64]windowEntry{}}
}

// get is the batches of j's window: cached, or looked up when budget allows (a stale cached
// answer otherwise).
func (w *windowCache) get(ctx context.Context, j *job.Job, budget *lookups) ([]int64, bool) {
	if w.loc == nil {
		return nil, false
	}
	now := w.now()
	w.mu.Lock()
	e, ok := w.m[j.ID]
	w.mu.Unlock()
	if ok && (e.final || now.Sub(e.at) < windowTTL) {
		return e.offsets, true
	}
	if !budget.take() {
		return e.offsets, ok
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	offsets, err := w.loc.Locate(lctx, j.Partition, []byte(strconv.FormatInt(j.WebhookID, 10)), j.FromMs, j.ToMs)
	if err != nil {
		return nil, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.m) >= windowEntries {
		clear(w.m)
	}
	w.m[j.ID] = windowEntry{offsets: offsets, at: now, final: j.State.Terminal()}
	return offsets, true
}

// chartData is the job page's progress chart: polylines of read and delivered over time, in a
// 600×160 view box.
type chartData struct {
	Read, Delivered string
	Max             int64
	Span            string
}

func chart(samples []Sample) chartData {
	var cd chartData
	if len(samples) < 2 {
		return cd
	}
	t0, t1 := samples[0].At, samples[len(samples)-1].At
	span := max(t1.Sub(t0), time.Millisecond)
	for _, s := range samples {
		cd.Max = max(cd.Max, s.Read, s.Delivered)
	}
	top := float64(max(cd.Max, 1))
	var rd, dl strings.Builder
	for _, s := range samples {
		x := 600 * float64(s.At.Sub(t0)) / float64(span)
		fmt.Fprintf(&rd, "%.1f,%.1f ", x, 160-160*float64(s.Read)/top)
		fmt.Fprintf(&dl, "%.1f,%.1f ", x, 160-160*float64(s.Delivered)/top)
	}
	cd.Read, cd.Delivered, cd.Span = rd.String(), dl.String(), formatDuration(span)
	return cd
}

var funcs = template.FuncMap{
	"pct": func(f float64) string { return strconv.FormatFloat(math.Round(f*10)/10, 'f', 1, 64) },
	"rate": func(f float64) string {
		if f <= 0 {
			return "–"
		}
		return strconv.FormatFloat(f, 'f', 1, 64)
	},
	"lower": strings.ToLower,
}
