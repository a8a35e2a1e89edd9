package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/replayd/api"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/embeddedapp"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/embeddedjob"
)

// clock is the injectable time shared by the API and the job store.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type challengeCall struct {
	url    string
	secret string
}

type env struct {
	t     *testing.T
	h     http.Handler
	apps  *embeddedapp.Driver
	jobs  *embeddedjob.Driver
	clock *clock
	reg   *prometheus.Registry
	logs  *syncBuffer

	mu           sync.Mutex
	challengeErr error
	challenges   []challengeCall
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// now is the tests' wall clock: 2026-03-10 12:00:30 UTC.
var start = time.Date(2026, 3, 10, 12, 0, 30, 0, time.UTC)

const partitions = 12

func newEnv(t *testing.T, mod func(o *api.Options)) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{now: start}, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	var err error
	e.apps, err = embeddedapp.Open(embeddedapp.Options{Dir: t.TempDir(), Now: e.clock.Now, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.apps.Close() })
	e.jobs, err = embeddedjob.Open(embeddedjob.Options{Dir: t.TempDir(), Now: e.clock.Now, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.jobs.Close() })
	opts := api.Options{
		Apps: e.apps, Jobs: e.jobs, Partitions: partitions, Now: e.clock.Now,
		Challenge: func(ctx context.Context, url string, secrets ...[]byte) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.challenges = append(e.challenges, challengeCall{url, string(secrets[0])})
			return e.challengeErr
		},
		Logger:   slog.New(slog.NewJSONHandler(e.logs, nil)),
		Registry: e.reg,
	}
	if mod != nil {
		mod(&opts)
	}
	e.h, err = api.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(method, path, token string) response {
	e.t.Helper()
	return e.doCtx(context.Background(), method, path, token)
}

func (e *env) doCtx(ctx context.Context, method, path, token string) response {
	e.t.Helper()
	req := httptest.NewRequestWithContext(ctx, method, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return response{rec.Code, rec.Header(), rec.Body.Bytes()}
}

func (e *env) newApp(name string) (string, *app.App) {
	e.t.Helper()
	r, err := e.apps.CreateApp(context.Background(), app.CreateAppParams{Name: name})
	if err != nil {
		e.t.Fatal(err)
	}
	return r.Token, r.App
}

// register registers url through the API and returns the webhook id.
func (e *env) register(token, url string) string {
	e.t.Helper()
	r := e.do("POST", "/1.1/account_activity/webhooks.json?url="+url, token)
	if r.status != 200 {
		e.t.Fatalf("registering %s: %d %s", url, r.status, r.body)
	}
	var v struct{ ID string }
	if err := json.Unmarshal(r.body, &v); err != nil {
		e.t.Fatal(err)
	}
	return v.ID
}

func replayPath(webhook, from, to string) string {
	p := "/1.1/account_activity/replay/webhooks/" + webhook + "/subscriptions/all.json"
	var q []string
	if from != "" {
		q = append(q, "from_date="+from)
	}
	if to != "" {
		q = append(q, "to_date="+to)
	}
	if len(q) > 0 {
		p += "?" + strings.Join(q, "&")
	}
	return p
}

// wantError checks an error answer: status, the single error's code, and its exact message (or,
// when message ends with "…", its prefix).
func wantError(t *testing.T, r response, status, code int, message string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (body %s)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	var body struct {
		Errors []struct {
			Code    *int    `json:"code"`
			Message *string `json:"message"`
		} `json:"errors"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code == nil || body.Errors[0].Message == nil {
		t.Fatalf("error body %s is not {\"errors\":[{\"code\":N,\"message\":\"…\"}]}: %v", r.body, err)
	}
	got := body.Errors[0]
	prefix, isPrefix := strings.CutSuffix(message, "…")
	if *got.Code != code || (isPrefix && !strings.HasPrefix(*got.Message, prefix)) || (!isPrefix && *got.Message != message) {
		t.Fatalf("error %d %q, want %d %q", *got.Code, *got.Message, code, message)
	}
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	return v
}

// The public replay endpoint's every error, with its exact status, code and message.
func TestReplayErrors(t *testing.T) {
	e := newEnv(t, func(o *api.Options) { o.RateLimit = 1000 })
	token, _ := e.newApp("a")
	otherToken, _ := e.newApp("b")
	wh := e.register(token, "https://example.com/a")
	otherWh := e.register(otherToken, "https://example.com/b")
	const from, to = "202603100900", "202603101100" // today 09:00..11:00, now is 12:00:30
	tests := []struct {
		name, path, token string
		status, code      int
		message           string
	}{
		{"no token", replayPath(wh, from, to), "", 401, 32, "Could not authenticate you."},
		{"bad token", replayPath(wh, from, to), "nope", 401, 32, "Could not authenticate you."},
		{"another app's webhook", replayPath(otherWh, from, to), token, 404, 34, "Sorry, that page does not exist."},
		{"unknown webhook", replayPath("1095098195724595200", from, to), token, 404, 34, "Sorry, that page does not exist."},
		{"non-numeric webhook", replayPath("abc", from, to), token, 404, 34, "Sorry, that page does not exist."},
		{"missing from_date", replayPath(wh, "", to), token, 400, 357, "Missing required parameter: from_date."},
		{"missing to_date", replayPath(wh, from, ""), token, 400, 357, "Missing required parameter: to_date."},
		{"missing both", replayPath(wh, "", ""), token, 400, 357, "Missing required parameter: from_date."},
		{"unparsable from_date", replayPath(wh, "2026031009", to), token, 400, 358,
			`Unable to parse from_date "2026031009": expected the format YYYYMMDDhhmm (UTC, e.g. 201906010930).`},
		{"unparsable to_date", replayPath(wh, from, "202603101160"), token, 400, 358,
			`Unable to parse to_date "202603101160": expected the format YYYYMMDDhhmm (UTC, e.g. 201906010930).`},
		{"to_date with seconds", replayPath(wh, from, "20260310110000"), token, 400, 358, `Unable to parse to_date "20260310110000"…`},
		{"from after to", replayPath(wh, to, from), token, 400, 356, "from_date must be before to_date"},
		{"from equals to", replayPath(wh, from, from), token, 400, 356, "from_date must be before to_date"},
		{"from beyond retention", replayPath(wh, "202603051159", to), token, 400, 356, "from_date must be within the past 5 days"},
		{"from in the future", replayPath(wh, "202603101201", "202603101300"), token, 400, 368, "from_date must be in the past"},
		{"to in the future", replayPath(wh, from, "202603101201"), token, 400, 368, "to_date must be in the past"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, e.do("POST", tc.path, tc.token), tc.status, tc.code, tc.message)
		})
	}
	// None of them created a job.
	if res, err := e.jobs.List(t.Context(), job.ListParams{}); err != nil || len(res.Jobs) != 0 {
		t.Fatalf("jobs after errors: %v, %v", res, err)
	}
	// Exactly 5 days back (to the minute, at a whole minute) is accepted; the current minute
	// as to_date is in the past.
	e.clock.Advance(30 * time.Second) // 12:01:00
	r := e.do("POST", replayPath(wh, "202603051201", "202603101201"), token)
	if r.status != 202 {
		t.Fatalf("window of exactly the retention: %d %s", r.status, r.body)
	}
}

func TestReplayRetentionMessageUsesOption(t *testing.T) {
	e := newEnv(t, func(o *api.Options) { o.Retention = 2 * 24 * time.Hour })
	token, _ := e.newApp("a")
	wh := e.register(token, "https://example.com/a")
	wantError(t, e.do("POST", replayPath(wh, "202603071200", "202603101100"), token), 400, 356, "from_date must be within the past 2 days")
}

func TestReplaySuccessAndOneActiveJob(t *testing.T) {
	e := newEnv(t, nil)
	token, a := e.newApp("a")
	wh := e.register(token, "https://example.com/a")
	// Through a real HTTP server once.
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+replayPath(wh, "202603100900", "202603101100"), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("replay: %d %s", resp.StatusCode, body)
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil || len(raw) != 2 {
		t.Fatalf("body %s: want exactly job_id and created_at", body)
	}
	got := decode[struct {
		JobID     string `json:"job_id"`
		CreatedAt string `json:"created_at"`
	}](t, response{body: body})
	if got.CreatedAt != "2026-03-10T12:00:30Z" {
		t.Fatalf("created_at %q", got.CreatedAt)
	}
	id, err := strconv.ParseInt(got.JobID, 10, 64)
	if err != nil {
		t.Fatalf("job_id %q is not decimal", got.JobID)
	}
	whID, _ := strconv.ParseInt(wh, 10, 64)
	j, err := e.jobs.Get(t.Context(), job.GetParams{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	want := job.CreateParams{
		AppID: a.ID, WebhookID: whID, Partition: engine.PartitionFor([]byte(wh), partitions),
		FromMs: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC).UnixMilli(),
		ToMs:   time.Date(2026, 3, 10, 11, 0, 0, 0, time.UTC).UnixMilli(),
	}
	if j.AppID != want.AppID || j.WebhookID != want.WebhookID || j.Partition != want.Partition || j.FromMs != want.FromMs || j.ToMs != want.ToMs || j.State != job.StateOpen {
		t.Fatalf("job %+v, want %+v", j, want)
	}
	for _, h := range []string{"x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"} {
		if resp.Header.Get(h) == "" {
			t.Fatalf("missing header %s", h)
		}
	}
	// A second request for the webhook while the first job is active: 409/355.
	wantError(t, e.do("POST", replayPath(wh, "202603100800", "202603100900"), token), 409, 355,
		"A replay job is already in progress for this webhook.")
	// Canceled, the webhook takes a new job.
	if r := e.do("DELETE", "/replay/jobs/"+got.JobID, token); r.status != 200 {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if r := e.do("POST", replayPath(wh, "202603100800", "202603100900"), token); r.status != 202 {
		t.Fatalf("after cancel: %d %s", r.status, r.body)
	}
}

// Concurrent requests for one webhook: exactly one job.
func TestReplayConcurrentOneJob(t *testing.T) {
	e := newEnv(t, func(o *api.Options) { o.RateLimit = 100 })
	token, _ := e.newApp("a")
	wh := e.register(token, "https://example.com/a")
	codes := make([]int, 8)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Go(func() { codes[i] = e.do("POST", replayPath(wh, "202603100900", "202603101100"), token).status })
	}
	wg.Wait()
	n202 := 0
	for _, c := range codes {
		switch c {
		case 202:
			n202++
		case 409:
		default:
			t.Fatalf("status %d", c)
		}
	}
	if n202 != 1 {
		t.Fatalf("%d accepted, want 1 (codes %v)", n202, codes)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, nil) // defaults: 5 per 15 minutes
	token, _ := e.newApp("a")
	otherToken, _ := e.newApp("b")
	wh := e.register(token, "https://example.com/a")
	otherWh := e.register(otherToken, "https://example.com/b")
	reset := strconv.FormatInt(start.Add(15*time.Minute).Unix(), 10)
	// Every authenticated request counts, whatever its outcome (here: 202, then 409s and 400s).
	paths := []string{
		replayPath(wh, "202603100900", "202603101100"),
		replayPath(wh, "202603100900", "202603101100"),
		replayPath(wh, "", ""),
		replayPath("123", "202603100900", "202603101100"),
		replayPath(wh, "x", "y"),
	}
	for i, p := range paths {
		r := e.do("POST", p, token)
		if r.status == 429 {
			t.Fatalf("request %d rate limited", i+1)
		}
		if got := r.header.Get("x-rate-limit-remaining"); got != strconv.Itoa(4-i) {
			t.Fatalf("request %d: remaining %q, want %d", i+1, got, 4-i)
		}
		if r.header.Get("x-rate-limit-limit") != "5" || r.header.Get("x-rate-limit-reset") != reset {
			t.Fatalf("request %d: headers %v", i+1, r.header)
		}
	}
	// An unauthenticated request does not count and is not limited.
	wantError(t, e.do("POST", paths[0], ""), 401, 32, "Could not authenticate you.")
	e.clock.Advance(14 * time.Minute)
	r := e.do("POST", replayPath(wh, "202603100800", "202603100900"), token)
	wantError(t, r, 429, 88, "Rate limit exceeded.")
	if r.header.Get("x-rate-limit-remaining") != "0" || r.header.Get("x-rate-limit-reset") != reset {
		t.Fatalf("429 headers %v", r.header)
	}
	// Another app has its own budget.
	if r := e.do("POST", replayPath(otherWh, "202603100900", "202603101100"), otherToken); r.status != 202 {
		t.Fatalf("other app: %d %s", r.status, r.body)
	}
	// The window ends 15 minutes after it opened.
	e.clock.Advance(time.Minute)
	r = e.do("POST", replayPath(wh, "202603100800", "202603100900"), token)
	if r.status == 429 || r.header.Get("x-rate-limit-remaining") != "4" {
		t.Fatalf("after the window: %d %s %v", r.status, r.body, r.header)
	}
}

func TestWebhookRegistration(t *testing.T) {
	e := newEnv(t, nil)
	token, a := e.newApp("a")
	otherToken, _ := e.newApp("b")
	if r := e.do("GET", "/1.1/account_activity/webhooks.json", token); r.status != 200 || strings.TrimSpace(string(r.body)) != "[]" {
		t.Fatalf("no webhooks: %d %s", r.status, r.body)
	}
	r := e.do("POST", "/1.1/account_activity/webhooks.json?url=https%3A%2F%2Fexample.com%2Fhook%3Fa%3D1", token)
	if r.status != 200 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	type view struct {
		ID        string `json:"id"`
		URL       string `json:"url"`
		Valid     bool   `json:"valid"`
		CreatedAt string `json:"created_at"`
		CheckedAt string `json:"checked_at"`
	}
	v := decode[view](t, r)
	id, err := strconv.ParseInt(v.ID, 10, 64)
	if err != nil || id < 1<<50 || v.URL != "https://example.com/hook?a=1" || !v.Valid || v.CreatedAt != "2026-03-10T12:00:30Z" {
		t.Fatalf("webhook %+v", v)
	}
	e.mu.Lock()
	calls := e.challenges
	e.mu.Unlock()
	if len(calls) != 1 || calls[0].url != v.URL || calls[0].secret != string(a.Secret) {
		t.Fatalf("challenge calls %+v, want one with the URL and the app's secret", calls)
	}
	list := decode[[]view](t, e.do("GET", "/1.1/account_activity/webhooks.json", token))
	if len(list) != 1 || list[0] != v {
		t.Fatalf("list %+v", list)
	}
	// Errors.
	wantError(t, e.do("POST", "/1.1/account_activity/webhooks.json?url="+v.URL, token), 400, 214,
		"Webhook URL does not meet the requirements. Duplicate URL: this app already registered it.")
	wantError(t, e.do("POST", "/1.1/account_activity/webhooks.json", token), 400, 357, "Missing required parameter: url.")
	wantError(t, e.do("POST", "/1.1/account_activity/webhooks.json?url=ftp://example.com/", token), 400, 214,
		"Webhook URL does not meet the requirements. URL must be http or https.")
	wantError(t, e.do("POST", "/1.1/account_activity/webhooks.json?url=https://example.com/x", ""), 401, 32, "Could not authenticate you.")
	e.mu.Lock()
	e.challengeErr = errors.New("GET https://example.com/down?crc_token=…: response_token does not match")
	e.mu.Unlock()
	wantError(t, e.do("POST", "/1.1/account_activity/webhooks.json?url=https://example.com/down", token), 400, 214,
		"Webhook URL does not meet the requirements. CRC check failed: the webhook did not answer the CRC challenge correctly.")
	if !strings.Contains(e.logs.String(), "response_token does not match") {
		t.Fatalf("the challenge's detail is not in the server log:\n%s", e.logs.String())
	}
	if list := decode[[]view](t, e.do("GET", "/1.1/account_activity/webhooks.json", token)); len(list) != 1 {
		t.Fatalf("a failed challenge stored a webhook: %+v", list)
	}
	// Delete: another app's is 404; the owner's is 204, then 404.
	wantError(t, e.do("DELETE", "/1.1/account_activity/webhooks/"+v.ID+".json", otherToken), 404, 34, "Sorry, that page does not exist.")
	wantError(t, e.do("DELETE", "/1.1/account_activity/webhooks/"+v.ID, token), 404, 34, "Sorry, that page does not exist.")
	wantError(t, e.do("DELETE", "/1.1/account_activity/webhooks/abc.json", token), 404, 34, "Sorry, that page does not exist.")
	jobID := e.replay(token, v.ID, "202603100900", "202603101100")
	if r := e.do("DELETE", "/1.1/account_activity/webhooks/"+v.ID+".json", token); r.status != 204 || len(r.body) != 0 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	// Its active replay is canceled with it.
	var jv struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
	}
	if r := e.do("GET", "/replay/jobs/"+jobID, token); r.status != 200 || json.Unmarshal(r.body, &jv) != nil || jv.State != "CANCELED" || jv.Reason != "the webhook was deleted" {
		t.Fatalf("the deleted webhook's job: %d %s", r.status, r.body)
	}
	wantError(t, e.do("DELETE", "/1.1/account_activity/webhooks/"+v.ID+".json", token), 404, 34, "Sorry, that page does not exist.")
	wantError(t, e.do("POST", replayPath(v.ID, "202603100900", "202603101100"), token), 404, 34, "Sorry, that page does not exist.")
	if r := e.do("GET", "/1.1/account_activity/webhooks.json", token); strings.TrimSpace(string(r.body)) != "[]" {
		t.Fatalf("after delete: %s", r.body)
	}
}

type jobView struct {
	JobID     string `json:"job_id"`
	WebhookID string `json:"webhook_id"`
	State     string `json:"state"`
	FromDate  string `json:"from_date"`
	ToDate    string `json:"to_date"`
	Partition int32  `json:"partition"`
	Progress  struct {
		Checkpoint int64 `json:"checkpoint"`
	} `json:"progress"`
	Counts struct {
		Read              int64 `json:"read"`
		Delivered         int64 `json:"delivered"`
		DuplicatesDropped int64 `json:"duplicates_dropped"`
		Failed            int64 `json:"failed"`
		Unreadable        int64 `json:"unreadable"`
		Redelivered       int64 `json:"redelivered"`
	} `json:"counts"`
	FirstUndeliveredAt string `json:"first_undelivered_at"`
	Reason             string `json:"reason"`
	StatusEvent        string `json:"status_event"`
	CreatedAt          string `json:"created_at"`
	UpdatedAt          string `json:"updated_at"`
	StartedAt          string `json:"started_at"`
	FinishedAt         string `json:"finished_at"`
}

func (e *env) replay(token, wh, from, to string) string {
	e.t.Helper()
	r := e.do("POST", replayPath(wh, from, to), token)
	if r.status != 202 {
		e.t.Fatalf("replay: %d %s", r.status, r.body)
	}
	var v struct {
		JobID string `json:"job_id"`
	}
	json.Unmarshal(r.body, &v)
	return v.JobID
}

func TestJobsGetCancel(t *testing.T) {
	e := newEnv(t, nil)
	token, _ := e.newApp("a")
	otherToken, _ := e.newApp("b")
	wh := e.register(token, "https://example.com/a")
	id := e.replay(token, wh, "202603100900", "202603101100")
	v := decode[jobView](t, e.do("GET", "/replay/jobs/"+id, token))
	if v.JobID != id || v.WebhookID != wh || v.State != "OPEN" || v.FromDate != "202603100900" || v.ToDate != "202603101100" ||
		v.Progress.Checkpoint != -1 || v.Counts.Read != 0 || v.CreatedAt != "2026-03-10T12:00:30Z" || v.StartedAt != "" ||
		v.Partition != engine.PartitionFor([]byte(wh), partitions) {
		t.Fatalf("job view %+v", v)
	}
	// A worker makes progress; the view shows it.
	ctx := t.Context()
	l, err := e.jobs.Lease(ctx, job.LeaseParams{Owner: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	first := time.Date(2026, 3, 10, 9, 30, 0, 250_000_000, time.UTC).UnixMilli()
	if err := e.jobs.Heartbeat(ctx, job.HeartbeatParams{ID: l.ID, FencingToken: l.FencingToken, Progress: &job.Progress{
		Checkpoint: 41, Counters: job.Counters{Read: 10, Delivered: 7, DuplicatesDropped: 2, Failed: 1}, FirstUndeliveredMs: &first,
	}}); err != nil {
		t.Fatal(err)
	}
	v = decode[jobView](t, e.do("GET", "/replay/jobs/"+id, token))
	if v.State != "STARTED" || v.Progress.Checkpoint != 41 || v.Counts.Read != 10 || v.Counts.Delivered != 7 ||
		v.Counts.DuplicatesDropped != 2 || v.Counts.Failed != 1 || v.FirstUndeliveredAt != "2026-03-10T09:30:00.250Z" || v.StartedAt == "" {
		t.Fatalf("job view with progress %+v", v)
	}
	// Another app sees nothing and cancels nothing.
	wantError(t, e.do("GET", "/replay/jobs/"+id, otherToken), 404, 34, "Sorry, that page does not exist.")
	wantError(t, e.do("DELETE", "/replay/jobs/"+id, otherToken), 404, 34, "Sorry, that page does not exist.")
	wantError(t, e.do("GET", "/replay/jobs/999999", token), 404, 34, "Sorry, that page does not exist.")
	wantError(t, e.do("GET", "/replay/jobs/x", token), 404, 34, "Sorry, that page does not exist.")
	wantError(t, e.do("GET", "/replay/jobs/"+id, ""), 401, 32, "Could not authenticate you.")
	// The owner cancels; canceling again returns the canceled job.
	for range 2 {
		v = decode[jobView](t, e.do("DELETE", "/replay/jobs/"+id, token))
		if v.State != "CANCELED" || v.FinishedAt == "" || v.Reason == "" {
			t.Fatalf("canceled view %+v", v)
		}
	}
	// A finished job cannot be canceled.
	id2 := e.replay(token, wh, "202603100900", "202603101100")
	l, err = e.jobs.Lease(ctx, job.LeaseParams{Owner: "w1"})
	if err != nil || strconv.FormatInt(l.ID, 10) != id2 {
		t.Fatalf("lease %+v %v", l, err)
	}
	if err := e.jobs.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateOngoing}); err != nil {
		t.Fatal(err)
	}
	if err := e.jobs.Transition(ctx, job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: job.StateCompleted, StatusPending: true,
		Progress: &job.Progress{Checkpoint: 50, Counters: job.Counters{Read: 12, Delivered: 12, Redelivered: 3}}}); err != nil {
		t.Fatal(err)
	}
	v = decode[jobView](t, e.do("GET", "/replay/jobs/"+id2, token))
	if v.State != "COMPLETED" || v.StatusEvent != "pending" || v.Counts.Redelivered != 3 || v.Counts.Delivered != 12 {
		t.Fatalf("finished job view %+v: want its status event pending and 3 redelivered", v)
	}
	wantError(t, e.do("DELETE", "/replay/jobs/"+id2, token), 409, api.CodeJobFinished, "The job has already finished; only an active job can be canceled.")
	if err := e.jobs.SettleStatus(ctx, job.SettleStatusParams{ID: l.ID, FencingToken: l.FencingToken, Outcome: job.StatusEventDelivered}); err != nil {
		t.Fatal(err)
	}
	if v = decode[jobView](t, e.do("GET", "/replay/jobs/"+id2, token)); v.StatusEvent != "delivered" {
		t.Fatalf("status event %q, want delivered", v.StatusEvent)
	}
}

func TestJobsList(t *testing.T) {
	e := newEnv(t, func(o *api.Options) { o.RateLimit = 100 })
	token, _ := e.newApp("a")
	otherToken, _ := e.newApp("b")
	wh1 := e.register(token, "https://example.com/1")
	wh2 := e.register(token, "https://example.com/2")
	otherWh := e.register(otherToken, "https://example.com/3")
	e.replay(otherToken, otherWh, "202603100900", "202603101100")
	var ids []string // oldest first
	for range 4 {
		id := e.replay(token, wh1, "202603100900", "202603101100")
		if r := e.do("DELETE", "/replay/jobs/"+id, token); r.status != 200 {
			t.Fatal(r.status)
		}
		ids = append(ids, id)
	}
	ids = append(ids, e.replay(token, wh1, "202603100900", "202603101100")) // OPEN
	ids = append(ids, e.replay(token, wh2, "202603100900", "202603101100")) // OPEN, other webhook

	page := func(query string) api.JobList {
		t.Helper()
		r := e.do("GET", "/replay/jobs"+query, token)
		if r.status != 200 {
			t.Fatalf("list %s: %d %s", query, r.status, r.body)
		}
		return decode[api.JobList](t, r)
	}
	jobIDs := func(l api.JobList) []string {
		var out []string
		for _, j := range l.Jobs {
			out = append(out, j.JobID)
		}
		return out
	}
	// All of the app's jobs, newest first, two per page.
	var got []string
	cursor := ""
	for n := 0; ; n++ {
		q := "?limit=2"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		l := page(q)
		got = append(got, jobIDs(l)...)
		if l.NextCursor == "" {
			break
		}
		if len(l.Jobs) != 2 || n > 5 {
			t.Fatalf("page %d: %+v", n, l)
		}
		cursor = l.NextCursor
	}
	want := []string{ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("paged ids %v, want %v", got, want)
	}
	if l := page("?webhook_id=" + wh2); fmt.Sprint(jobIDs(l)) != fmt.Sprint([]string{ids[5]}) {
		t.Fatalf("by webhook: %v", jobIDs(l))
	}
	if l := page("?state=open"); fmt.Sprint(jobIDs(l)) != fmt.Sprint([]string{ids[5], ids[4]}) {
		t.Fatalf("OPEN: %v", jobIDs(l))
	}
	if l := page("?state=CANCELED&webhook_id=" + wh1 + "&limit=3"); fmt.Sprint(jobIDs(l)) != fmt.Sprint([]string{ids[3], ids[2], ids[1]}) || l.NextCursor != ids[1] {
		t.Fatalf("CANCELED page: %v next %q", jobIDs(l), l.NextCursor)
	}
	if l := page("?webhook_id=" + otherWh); len(l.Jobs) != 0 || l.Jobs == nil {
		t.Fatalf("another app's webhook: %+v", l)
	}
	wantError(t, e.do("GET", "/replay/jobs?limit=0", token), 400, 358, `Unable to parse limit "0": expected a number from 1 to 1000.`)
	wantError(t, e.do("GET", "/replay/jobs?limit=1001", token), 400, 358, `Unable to parse limit "1001"…`)
	wantError(t, e.do("GET", "/replay/jobs?state=DONE", token), 400, 358, `Unable to parse state "DONE"…`)
	wantError(t, e.do("GET", "/replay/jobs?webhook_id=-1", token), 400, 358, `Unable to parse webhook_id "-1"…`)
	wantError(t, e.do("GET", "/replay/jobs?cursor=abc", token), 400, 358, `Unable to parse cursor "abc"…`)
	wantError(t, e.do("GET", "/replay/jobs", "bad"), 401, 32, "Could not authenticate you.")
}

// failingJobs makes Create fail with err.
type failingJobs struct {
	job.Driver
	err error
}

func (f failingJobs) Create(context.Context, job.CreateParams) (*job.Job, error) { return nil, f.err }

func TestStoreFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   int
		msg    string
	}{
		{"unexpected", errors.New("boom"), 500, 0, "Internal error."},
		{"deadline", fmt.Errorf("mysqljob: create: %w", context.DeadlineExceeded), 503, 67, "Service is temporarily unavailable; please retry."},
		{"closed", fmt.Errorf("x: %w", job.ErrClosed), 503, 67, "Service is temporarily unavailable; please retry."},
		{"unavailable", fmt.Errorf("mysqljob: create: %w: %w", job.ErrUnavailable, errors.New("dial tcp: connection refused")), 503, 67, "Service is temporarily unavailable; please retry."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *env
			e = newEnv(t, func(o *api.Options) { o.Jobs = failingJobs{Driver: o.Jobs, err: tc.err} })
			token, _ := e.newApp("a")
			wh := e.register(token, "https://example.com/a")
			wantError(t, e.do("POST", replayPath(wh, "202603100900", "202603101100"), token), tc.status, tc.code, tc.msg)
			if !strings.Contains(e.logs.String(), `"msg":"api: store error"`) {
				t.Fatalf("the store error is not logged: %s", e.logs.String())
			}
		})
	}
	// The request's context is honoured: a request whose client went away reaches no store.
	e := newEnv(t, nil)
	token, _ := e.newApp("a")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	wantError(t, e.doCtx(ctx, "GET", "/1.1/account_activity/webhooks.json", token), 503, 67, "Service is temporarily unavailable; please retry.")
	// A closed job store: health fails and replays are 503.
	wh := e.register(token, "https://example.com/a")
	if r := e.do("GET", "/healthz", ""); r.status != 200 {
		t.Fatalf("healthz: %d %s", r.status, r.body)
	}
	e.jobs.Close()
	wantError(t, e.do("GET", "/healthz", ""), 503, 67, "job store: …")
	wantError(t, e.do("POST", replayPath(wh, "202603100900", "202603101100"), token), 503, 67, "Service is temporarily unavailable; please retry.")
	e.apps.Close()
	wantError(t, e.do("GET", "/1.1/account_activity/webhooks.json", token), 503, 67, "Service is temporarily unavailable; please retry.")
}

func TestMetricsLogsAndUnknownRoutes(t *testing.T) {
	e := newEnv(t, nil)
	token, a := e.newApp("a")
	wh := e.register(token, "https://example.com/a")
	e.replay(token, wh, "202603100900", "202603101100")
	wantError(t, e.do("GET", "/nope", token), 404, 34, "Sorry, that page does not exist.")
	r405 := e.do("PUT", "/1.1/account_activity/webhooks.json", token)
	wantError(t, r405, 405, 1002, "Method PUT is not allowed here; use GET or POST.")
	if got := r405.header.Get("Allow"); got != "GET, POST" {
		t.Fatalf("405 Allow header %q, want %q", got, "GET, POST")
	}
	wantError(t, e.do("GET", "/replay/jobs/1/nope", token), 404, 34, "Sorry, that page does not exist.")
	wantError(t, e.do("PATCH", "/replay/jobs/1", token), 405, 1002, "Method PATCH is not allowed here; use GET or DELETE.")
	r := e.do("GET", "/metrics", "")
	if r.status != 200 {
		t.Fatalf("metrics: %d", r.status)
	}
	for _, want := range []string{
		`replay_api_requests_total{code="202",route="POST /1.1/account_activity/replay/webhooks/{webhook_id}/subscriptions/all.json"} 1`,
		`replay_api_requests_total{code="200",route="POST /1.1/account_activity/webhooks.json"} 1`,
		`replay_api_requests_total{code="404",route="/"} 2`,
		`replay_api_requests_total{code="405",route="/"} 2`,
		`replay_api_request_duration_seconds_count{route="POST /1.1/account_activity/webhooks.json"} 1`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Fatalf("metrics lack %q:\n%s", want, r.body)
		}
	}
	// One structured line per request, with the route, status and app.
	var found bool
	for line := range strings.Lines(e.logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "http request" && rec["status"] == float64(202) &&
			rec["route"] == "POST /1.1/account_activity/replay/webhooks/{webhook_id}/subscriptions/all.json" &&
			rec["app_id"] == float64(a.ID) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no request log line for the replay:\n%s", e.logs.String())
	}
	// A second API on the same registry is refused, not a panic.
	if _, err := api.New(api.Options{Apps: e.apps, Jobs: e.jobs, Partitions: 1, Challenge: func(context.Context, string, ...[]byte) error { return nil }, Registry: e.reg}); err == nil {
		t.Fatal("registering the metrics twice succeeded")
	}
	// Without a registry there is no /metrics.
	e2 := newEnv(t, func(o *api.Options) { o.Registry = nil })
	wantError(t, e2.do("GET", "/metrics", ""), 404, 34, "Sorry, that page does not exist.")
}

func TestOptionsValidate(t *testing.T) {
	_, err := api.New(api.Options{RateLimit: -1})
	for _, want := range []string{"Apps", "Jobs", "Partitions", "Challenge", "RateLimit"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("New with bad options: %v, want it to mention %s", err, want)
		}
	}
	o := api.Options{}
	o.EnsureDefaults()
	if o.Retention != 5*24*time.Hour || o.RateLimit != 5 || o.RateWindow != 15*time.Minute || o.Now == nil || o.Logger == nil {
		t.Fatalf("defaults %+v", o)
	}
}

// publicErr is an error with a reason that may be shown, like delivery's *ChallengeError.
type publicErr struct{ public, detail string }

func (e publicErr) Error() string        { return e.detail }
func (e publicErr) PublicReason() string { return e.public }

// TestRegistrationAbuse: registration shows only the coarse reason of a failed CRC check (the
// detail goes to the log), treats equivalent URLs as one webhook, caps the webhooks of an app and
// rate-limits registrations per app.
func TestRegistrationAbuse(t *testing.T) {
	e := newEnv(t, func(o *api.Options) { o.MaxWebhooks = 3; o.RegistrationLimit = 7 })
	token, _ := e.newApp("a")
	otherToken, _ := e.newApp("b")
	post := func(tok, rawURL string) response {
		return e.do("POST", "/1.1/account_activity/webhooks.json?url="+url.QueryEscape(rawURL), tok)
	}
	// 1: a failed check of an internal URL does not echo what it answered.
	e.mu.Lock()
	e.challengeErr = publicErr{"the webhook's answer is not a CRC response", `crc challenge of 127.0.0.1:8080: answer is not a JSON object: "# HELP go_goroutines"`}
	e.mu.Unlock()
	r := post(token, "http://127.0.0.1:8080/metrics")
	wantError(t, r, 400, 214, "Webhook URL does not meet the requirements. CRC check failed: the webhook's answer is not a CRC response.")
	if strings.Contains(string(r.body), "HELP") || strings.Contains(string(r.body), "127.0.0.1:8080:") {
		t.Fatalf("the answer leaks the internal response: %s", r.body)
	}
	if !strings.Contains(e.logs.String(), "# HELP go_goroutines") {
		t.Fatalf("the detail is not in the server log")
	}
	e.mu.Lock()
	e.challengeErr = nil
	e.mu.Unlock()
	// 2: equivalent URLs are one webhook, stored in normal form.
	if r := post(token, "HTTPS://Example.com:443/h%6Fok?"); r.status != 200 || decode[webhookJSON](t, r).URL != "https://example.com/hook" {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	for _, same := range []string{"https://example.com/hook", "https://EXAMPLE.com/%68ook"} {
		wantError(t, post(token, same), 400, 214, "Webhook URL does not meet the requirements. Duplicate URL: this app already registered it.")
	}
	// 3: at most MaxWebhooks per app; another app is not affected.
	for _, u := range []string{"https://example.com/b", "https://example.com/c"} {
		if r := post(token, u); r.status != 200 {
			t.Fatalf("register %s: %d %s", u, r.status, r.body)
		}
	}
	wantError(t, post(token, "https://example.com/d"), 400, 214, "Too many resources already created.")
	if r := post(otherToken, "https://example.com/d"); r.status != 200 {
		t.Fatalf("other app: %d %s", r.status, r.body)
	}
	// 4: registrations are rate-limited per app, every attempt counted (7 so far).
	r = post(token, "https://example.com/e")
	wantError(t, r, 429, 88, "Rate limit exceeded.")
	if r.header.Get("x-rate-limit-limit") != "7" || r.header.Get("x-rate-limit-remaining") != "0" {
		t.Fatalf("429 headers %v", r.header)
	}
	e.clock.Advance(15 * time.Minute)
	wantError(t, post(token, "https://example.com/e"), 400, 214, "Too many resources already created.")
}

type webhookJSON struct {
	ID        string `json:"id"`
	URL       string `json:"url"`
	Valid     bool   `json:"valid"`
	CreatedAt string `json:"created_at"`
	CheckedAt string `json:"checked_at"`
}

// TestWebhookCRCCheck: PUT runs the CRC check on demand; a failure marks the webhook invalid,
// and a replay of an invalid webhook is 400/214 until a check passes again.
func TestWebhookCRCCheck(t *testing.T) {
	e := newEnv(t, nil)
	token, a := e.newApp("a")
	otherToken, _ := e.newApp("b")
	wh := e.register(token, "https://example.com/crc")
	put := func(tok string) response { return e.do("PUT", "/1.1/account_activity/webhooks/"+wh+".json", tok) }
	get := func() webhookJSON {
		for _, v := range decode[[]webhookJSON](t, e.do("GET", "/1.1/account_activity/webhooks.json", token)) {
			if v.ID == wh {
				return v
			}
		}
		t.Fatalf("webhook %s not listed", wh)
		return webhookJSON{}
	}
	before := get()
	e.clock.Advance(time.Minute)
	if r := put(token); r.status != 204 || len(r.body) != 0 {
		t.Fatalf("PUT check: %d %s", r.status, r.body)
	}
	e.mu.Lock()
	last := e.challenges[len(e.challenges)-1]
	e.mu.Unlock()
	if last.url != "https://example.com/crc" || last.secret != string(a.Secret) {
		t.Fatalf("PUT challenged %+v", last)
	}
	after := get()
	if !after.Valid || after.CheckedAt <= before.CheckedAt {
		t.Fatalf("after a passing check: %+v (before %+v)", after, before)
	}
	wantError(t, put(otherToken), 404, 34, "Sorry, that page does not exist.")
	wantError(t, e.do("PUT", "/1.1/account_activity/webhooks/"+wh, token), 404, 34, "Sorry, that page does not exist.")
	// A failing check marks it invalid; replays are refused until a check passes.
	e.mu.Lock()
	e.challengeErr = publicErr{"the webhook could not be reached", "dial tcp 10.0.0.7:443: connection refused"}
	e.mu.Unlock()
	wantError(t, put(token), 400, 214, "Webhook URL does not meet the requirements. CRC check failed: the webhook could not be reached.")
	if v := get(); v.Valid {
		t.Fatalf("a failed check left the webhook valid: %+v", v)
	}
	wantError(t, e.do("POST", replayPath(wh, "202603100900", "202603101100"), token), 400, 214, "Webhook is marked invalid and requires a CRC check.")
	e.mu.Lock()
	e.challengeErr = nil
	e.mu.Unlock()
	if r := put(token); r.status != 204 {
		t.Fatalf("PUT check after the fix: %d %s", r.status, r.body)
	}
	if r := e.do("POST", replayPath(wh, "202603100900", "202603101100"), token); r.status != 202 {
		t.Fatalf("replay after a passing check: %d %s", r.status, r.body)
	}
}
