package console_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/index"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/embeddedapp"
	"github.com/replay/replay/replayd/console"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/embeddedjob"
	"github.com/replay/replay/replayd/testwait"
)

const operator = "the-operator-token"

// locator answers every window with the same batches.
type locator []int64

func (l locator) Locate(context.Context, int32, []byte, int64, int64) ([]int64, error) { return l, nil }

type env struct {
	t            *testing.T
	srv          *httptest.Server
	apps         app.Driver
	jobs         job.Driver
	tokenA       string
	tokenB       string
	appA, appB   *app.App
	jobA, jobB   *job.Job
	hookA, hookB *app.Webhook
	delivered    int64
}

const evil = `<img src=x onerror=alert(1)>`

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t}
	dir := t.TempDir()
	apps, err := embeddedapp.Open(embeddedapp.Options{Dir: filepath.Join(dir, "apps")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { apps.Close() })
	jobs, err := embeddedjob.Open(embeddedjob.Options{Dir: filepath.Join(dir, "jobs")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jobs.Close() })
	e.apps, e.jobs = apps, jobs
	ctx := t.Context()
	a, err := apps.CreateApp(ctx, app.CreateAppParams{Name: "alpha " + evil})
	if err != nil {
		t.Fatal(err)
	}
	b, err := apps.CreateApp(ctx, app.CreateAppParams{Name: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	e.tokenA, e.tokenB, e.appA, e.appB = a.Token, b.Token, a.App, b.App
	if e.hookA, err = apps.CreateWebhook(ctx, app.CreateWebhookParams{AppID: a.App.ID, URL: "https://a.example.com/hook?x=\"><script>alert(1)</script>", Valid: true}); err != nil {
		t.Fatal(err)
	}
	if e.hookB, err = apps.CreateWebhook(ctx, app.CreateWebhookParams{AppID: b.App.ID, URL: "https://b.example.com/hook", Valid: false}); err != nil {
		t.Fatal(err)
	}
	from := time.Now().Add(-2 * time.Hour).Truncate(time.Minute).UnixMilli()
	if e.jobA, err = jobs.Create(ctx, job.CreateParams{AppID: a.App.ID, WebhookID: e.hookA.ID, FromMs: from, ToMs: from + 3600_000}); err != nil {
		t.Fatal(err)
	}
	if e.jobB, err = jobs.Create(ctx, job.CreateParams{AppID: b.App.ID, WebhookID: e.hookB.ID, FromMs: from, ToMs: from + 3600_000}); err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.Cancel(ctx, job.CancelParams{ID: e.jobB.ID, Reason: "canceled: " + evil}); err != nil {
		t.Fatal(err)
	}
	c, err := console.New(console.Options{Apps: apps, Jobs: jobs, Locator: locator{0, 10, 20, 30}, OperatorToken: operator,
		Lag: func(context.Context) ([]index.PartitionLag, error) {
			return []index.PartitionLag{{Partition: 0, Checkpoint: 5, End: 7, Lag: 2}, {Partition: 1, Checkpoint: 3, End: 3}}, nil
		},
		Delivered:   func() int64 { return 42 },
		SampleEvery: 5 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	e.srv = httptest.NewServer(c)
	t.Cleanup(e.srv.Close)
	return e
}

type answer struct {
	status int
	header http.Header
	body   string
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (e *env) do(method, path, token string, form url.Values, header map[string]string) answer {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func (e *env) get(path, token string) answer { return e.do("GET", path, token, nil, nil) }

func id(n int64) string { return strconv.FormatInt(n, 10) }

func TestNothingWithoutAToken(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/console/", "/console/jobs/" + id(e.jobA.ID), "/console/webhooks", "/console/instance"} {
		for _, token := range []string{"", "not-a-token"} {
			r := e.get(path, token)
			if r.status != 401 || !strings.Contains(r.body, `name="token"`) || strings.Contains(r.body, id(e.jobA.ID)+"</a>") || strings.Contains(r.body, "a.example.com") {
				t.Errorf("GET %s with token %q: %d, want 401 and the login form only:\n%s", path, token, r.status, r.body)
			}
		}
	}
	for _, path := range []string{"/console/api/jobs", "/console/api/jobs/" + id(e.jobA.ID)} {
		if r := e.get(path, ""); r.status != 401 || !strings.Contains(r.body, `"error"`) {
			t.Errorf("GET %s without a token: %d %s", path, r.status, r.body)
		}
	}
	// The page and the script are the console's own; the page says where they may come from.
	r := e.get("/console/login", "")
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if strings.Contains(r.body, "http://") || strings.Contains(r.body, "https://") {
		t.Errorf("the login page refers to another site:\n%s", r.body)
	}
	for _, asset := range []string{"/console/static/console.js", "/console/static/console.css"} {
		if r := e.get(asset, ""); r.status != 200 || len(r.body) < 500 {
			t.Errorf("GET %s: %d, %d bytes", asset, r.status, len(r.body))
		}
	}
}

func TestAnAppSeesItsOwn(t *testing.T) {
	e := newEnv(t)
	r := e.get("/console/", e.tokenA)
	if r.status != 200 || !strings.Contains(r.body, `data-job="`+id(e.jobA.ID)+`"`) || strings.Contains(r.body, `data-job="`+id(e.jobB.ID)+`"`) {
		t.Fatalf("app A's jobs page: %d\n%s", r.status, r.body)
	}
	// The job's progress: 4 batches in the window, none below the checkpoint yet.
	if !strings.Contains(r.body, "0/4 batches") {
		t.Errorf("the jobs page does not show the window's batches:\n%s", r.body)
	}
	if r := e.get("/console/jobs/"+id(e.jobB.ID), e.tokenA); r.status != 404 {
		t.Errorf("app A asks for app B's job: %d", r.status)
	}
	if r := e.get("/console/api/jobs/"+id(e.jobB.ID), e.tokenA); r.status != 404 {
		t.Errorf("app A asks for app B's job as JSON: %d", r.status)
	}
	var list console.JobsJSON
	r = e.get("/console/api/jobs", e.tokenA)
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list.Jobs) != 1 || list.Jobs[0].ID != id(e.jobA.ID) || list.Jobs[0].Batches != 4 {
		t.Errorf("app A's jobs as JSON: %s (%v)", r.body, err)
	}
	r = e.get("/console/webhooks", e.tokenA)
	if !strings.Contains(r.body, `data-webhook="`+id(e.hookA.ID)+`"`) || strings.Contains(r.body, "b.example.com") || !strings.Contains(r.body, ">valid<") {
		t.Errorf("app A's webhooks:\n%s", r.body)
	}
	if r := e.get("/console/instance", e.tokenA); r.status != 403 {
		t.Errorf("app A asks for the instance page: %d", r.status)
	}
}

func TestTheOperatorSeesEverything(t *testing.T) {
	e := newEnv(t)
	r := e.get("/console/", operator)
	for _, j := range []*job.Job{e.jobA, e.jobB} {
		if !strings.Contains(r.body, `data-job="`+id(j.ID)+`"`) {
			t.Errorf("the operator's jobs page lacks job %d", j.ID)
		}
	}
	r = e.get("/console/webhooks", operator)
	if !strings.Contains(r.body, "a.example.com") || !strings.Contains(r.body, "b.example.com") || !strings.Contains(r.body, ">invalid<") {
		t.Errorf("the operator's webhooks page:\n%s", r.body)
	}
	if r := e.get("/console/jobs/"+id(e.jobB.ID), operator); r.status != 200 || !strings.Contains(r.body, "a canceled job sends no replay_job_status event") {
		t.Errorf("the operator's view of app B's canceled job: %d\n%s", r.status, r.body)
	}
	testwait.For(t, 10*time.Second, "the instance page to show the sampled throughput", func() bool {
		r = e.get("/console/instance", operator)
		return strings.Contains(r.body, "<dd>42</dd>")
	})
	if r.status != 200 || !strings.Contains(r.body, "<td>2</td>") || !strings.Contains(r.body, "Total 2.") {
		t.Errorf("the instance page:\n%s", r.body)
	}
}

// Everything a user wrote (an app's name, a webhook URL, a job's reason) is escaped.
func TestEscaping(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/console/", "/console/webhooks", "/console/jobs/" + id(e.jobB.ID)} {
		r := e.get(path, operator)
		if strings.Contains(r.body, "<img") || strings.Contains(r.body, "<script>alert") {
			t.Errorf("%s has unescaped markup:\n%s", path, r.body)
		}
	}
	if r := e.get("/console/", operator); !strings.Contains(r.body, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Errorf("the reason is not shown escaped:\n%s", r.body)
	}
}

func TestFilters(t *testing.T) {
	e := newEnv(t)
	has := func(r answer, j *job.Job) bool { return strings.Contains(r.body, `data-job="`+id(j.ID)+`"`) }
	if r := e.get("/console/?state=CANCELED", operator); !has(r, e.jobB) || has(r, e.jobA) {
		t.Errorf("state=CANCELED:\n%s", r.body)
	}
	if r := e.get("/console/?webhook_id="+id(e.hookA.ID), operator); has(r, e.jobB) || !has(r, e.jobA) {
		t.Errorf("webhook_id:\n%s", r.body)
	}
	future := time.Now().UTC().Add(time.Hour).Format("2006-01-02T15:04")
	if r := e.get("/console/?created_after="+future, operator); has(r, e.jobA) || has(r, e.jobB) {
		t.Errorf("created_after in the future lists jobs")
	}
	if r := e.get("/console/?created_before="+future, operator); !has(r, e.jobA) || !has(r, e.jobB) {
		t.Errorf("created_before in the future lists not every job")
	}
	for q, want := range map[string]string{
		"webhook_id=abc":          `webhook_id &#34;abc&#34; is not a webhook id`,
		"state=DONE":              `state &#34;DONE&#34; is not one of`,
		"created_after=yesterday": `created_after &#34;yesterday&#34; is not a time of the form 2006-01-02T15:04 (UTC)`,
	} {
		if r := e.get("/console/?"+q, operator); r.status != 400 || !strings.Contains(r.body, want) {
			t.Errorf("?%s: %d, want 400 saying %q:\n%s", q, r.status, want, r.body)
		}
		if r := e.get("/console/api/jobs?"+q, operator); r.status != 400 {
			t.Errorf("api ?%s: %d", q, r.status)
		}
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/console/login", "", url.Values{"token": {e.tokenA}, "next": {"/console/webhooks"}}, nil)
	if r.status != 303 || r.header.Get("Location") != "/console/webhooks" {
		t.Fatalf("login: %d, Location %q", r.status, r.header.Get("Location"))
	}
	ck := r.header.Get("Set-Cookie")
	for _, want := range []string{console.CookieName + "=" + e.tokenA, "HttpOnly", "SameSite=Strict", "Path=/console"} {
		if !strings.Contains(ck, want) {
			t.Errorf("Set-Cookie %q lacks %q", ck, want)
		}
	}
	if r := e.do("GET", "/console/webhooks", "", nil, map[string]string{"Cookie": console.CookieName + "=" + e.tokenA}); r.status != 200 || !strings.Contains(r.body, "a.example.com") {
		t.Errorf("the cookie does not log in: %d", r.status)
	}
	// A redirect never leaves the console.
	for _, next := range []string{"//evil.example/", "https://evil.example/console/", "/elsewhere"} {
		if r := e.do("POST", "/console/login", "", url.Values{"token": {e.tokenA}, "next": {next}}, nil); r.header.Get("Location") != "/console/" {
			t.Errorf("next=%s redirects to %q", next, r.header.Get("Location"))
		}
	}
	// A wrong token, a form posted from another site: no cookie.
	for name, a := range map[string]answer{
		"wrong token": e.do("POST", "/console/login", "", url.Values{"token": {"nope"}}, nil),
		"cross-site":  e.do("POST", "/console/login", "", url.Values{"token": {e.tokenA}}, map[string]string{"Sec-Fetch-Site": "cross-site"}),
		"origin":      e.do("POST", "/console/login", "", url.Values{"token": {e.tokenA}}, map[string]string{"Origin": "https://evil.example"}),
	} {
		if a.header.Get("Set-Cookie") != "" || a.status < 400 {
			t.Errorf("%s: %d, Set-Cookie %q", name, a.status, a.header.Get("Set-Cookie"))
		}
	}
	if r := e.do("POST", "/console/logout", "", nil, nil); r.status != 303 || !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout: %d %q", r.status, r.header.Get("Set-Cookie"))
	}
}

// A running job's counters, as its heartbeats move them, become samples over time; the bar
// counts the window's batches below the checkpoint.
func TestProgressOverTime(t *testing.T) {
	e := newEnv(t)
	j, err := e.jobs.Lease(t.Context(), job.LeaseParams{Owner: "test"})
	if err != nil || j.ID != e.jobA.ID {
		t.Fatalf("lease: %v %v", j, err)
	}
	beat := func(delivered, checkpoint int64) {
		err := e.jobs.Heartbeat(t.Context(), job.HeartbeatParams{ID: j.ID, FencingToken: j.FencingToken,
			Progress: &job.Progress{Checkpoint: checkpoint, Counters: job.Counters{Read: delivered, Delivered: delivered}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	var d console.JobDetail
	fetch := func() {
		r := e.get("/console/api/jobs/"+id(j.ID), e.tokenA)
		if err := json.Unmarshal([]byte(r.body), &d); err != nil {
			t.Fatalf("%d %s: %v", r.status, r.body, err)
		}
	}
	beat(10, 5)
	testwait.For(t, 10*time.Second, "a sample with 10 delivered", func() bool {
		fetch()
		return len(d.Samples) > 0 && d.Samples[len(d.Samples)-1].Delivered == 10
	})
	beat(30, 25)
	testwait.For(t, 10*time.Second, "a sample with 30 delivered", func() bool {
		fetch()
		return len(d.Samples) > 1 && d.Samples[len(d.Samples)-1].Delivered == 30
	})
	if d.Batches != 4 || d.Done != 3 || d.Percent != 75 || d.Rate <= 0 || !d.Active {
		t.Errorf("job detail %+v: want 3 of 4 batches done (75%%) and a rate", d.JobRow)
	}
	r := e.get("/console/jobs/"+id(j.ID), e.tokenA)
	if !strings.Contains(r.body, `<polyline class="delivered" points="0.0,`) {
		t.Errorf("the job page has no progress chart:\n%s", r.body)
	}
}

// A listing of many jobs looks up at most 16 windows per answer; the others fill in on the
// next polls.
func TestWindowLookupsAreBounded(t *testing.T) {
	e := newEnv(t)
	for i := range 20 {
		if _, err := e.jobs.Create(t.Context(), job.CreateParams{AppID: e.appA.ID, WebhookID: 5000 + int64(i), FromMs: e.jobA.FromMs, ToMs: e.jobA.ToMs}); err != nil {
			t.Fatal(err)
		}
	}
	known := func() int {
		var list console.JobsJSON
		r := e.get("/console/api/jobs", e.tokenA)
		if err := json.Unmarshal([]byte(r.body), &list); err != nil {
			t.Fatalf("%d %s: %v", r.status, r.body, err)
		}
		n := 0
		for _, j := range list.Jobs {
			if j.Batches >= 0 {
				n++
			}
		}
		return n
	}
	if n := known(); n != 16 {
		t.Fatalf("the first answer knows %d of 21 windows, want 16", n)
	}
	if n := known(); n != 21 {
		t.Fatalf("the second answer knows %d of 21 windows, want all", n)
	}
}
