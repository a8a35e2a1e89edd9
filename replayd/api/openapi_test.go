package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/replay/replay/replayd/api"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/job"
)

// faultyApps fails authentication and health checks with err while it is set: a store that is
// down (app.ErrClosed: 503/67) or broken (anything else: 500/0).
type faultyApps struct {
	app.Driver
	err atomic.Pointer[error]
}

func (f *faultyApps) fault() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (f *faultyApps) AppByToken(ctx context.Context, p app.AppByTokenParams) (*app.App, error) {
	if err := f.fault(); err != nil {
		return nil, err
	}
	return f.Driver.AppByToken(ctx, p)
}

func (f *faultyApps) Ping(ctx context.Context) error {
	if err := f.fault(); err != nil {
		return err
	}
	return f.Driver.Ping(ctx)
}

// documented is what the description promises: operation ("METHOD /path") → status → error codes
// (x-error-codes; none for a success).
type documented map[string]map[int][]int

func loadDescription(t *testing.T) (*v3.Document, documented) {
	t.Helper()
	doc, err := libopenapi.NewDocument(api.OpenAPI)
	if err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	if v := doc.GetVersion(); !strings.HasPrefix(v, "3.1") {
		t.Fatalf("openapi.json is OpenAPI %s, want 3.1", v)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("openapi.json does not build: %v", err)
	}
	out := documented{}
	for path, item := range model.Model.Paths.PathItems.FromOldest() {
		if strings.HasPrefix(path, "/console/") {
			continue // the console's routes, served beside this handler: its own TestOpenAPI holds them
		}
		for method, op := range item.GetOperations().FromOldest() {
			codes := map[int][]int{}
			for status, resp := range op.Responses.Codes.FromOldest() {
				var n int
				if _, err := fmt.Sscan(status, &n); err != nil {
					t.Fatalf("%s %s: response %q is not a status code", method, path, status)
				}
				codes[n] = errorCodes(t, resp)
			}
			out[strings.ToUpper(method)+" "+path] = codes
		}
	}
	if mna, ok := model.Model.Components.Responses.Get("MethodNotAllowed"); ok {
		out["* *"] = map[int][]int{http.StatusMethodNotAllowed: errorCodes(t, mna)}
	}
	return &model.Model, out
}

func errorCodes(t *testing.T, r *v3.Response) []int {
	t.Helper()
	var codes []int
	if r.Extensions != nil {
		if n, ok := r.Extensions.Get("x-error-codes"); ok {
			if err := n.Decode(&codes); err != nil {
				t.Fatalf("x-error-codes: %v", err)
			}
		}
	}
	return codes
}

// TestOpenAPI holds openapi.json to the handlers in both directions: every route is documented
// and every documented operation is a route; every answer of a run through every route and error
// validates against the description (parameters, status, body schema); and every documented
// status and error code was answered at least once.
func TestOpenAPI(t *testing.T) {
	model, doc := loadDescription(t)
	routes := map[string]bool{}
	for _, r := range api.Routes(api.Options{Registry: newEnv(t, nil).reg}) {
		routes[r.Method+" "+r.Path] = true
		if _, ok := doc[r.Method+" "+r.Path]; !ok {
			t.Errorf("route %s %s is not documented", r.Method, r.Path)
		}
	}
	for op := range doc {
		if !routes[op] && op != "* *" {
			t.Errorf("documented operation %s is not a route", op)
		}
	}

	v := validator.NewValidatorFromV3Model(model)
	faults := &faultyApps{}
	e := newEnv(t, func(o *api.Options) {
		faults.Driver = o.Apps
		o.Apps = faults
		o.RateLimit, o.RegistrationLimit = 50, 50
	})
	seen := map[string]map[int]map[int]bool{} // operation → status → code (-1: no error body)
	call := func(op, method, path, token string) response {
		t.Helper()
		req := httptest.NewRequest(method, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		code := -1
		var body struct {
			Errors []struct{ Code int } `json:"errors"`
		}
		if json.Unmarshal(rec.Body.Bytes(), &body) == nil && len(body.Errors) > 0 {
			code = body.Errors[0].Code
		}
		if op != "* *" {
			// The validator reads the request and the answer again.
			vreq := httptest.NewRequest(method, path, nil)
			vreq.Header = req.Header.Clone()
			vres := &http.Response{StatusCode: rec.Code, Header: rec.Header(), Body: io.NopCloser(bytes.NewReader(rec.Body.Bytes())), Request: vreq}
			// Requests made to draw an error are not valid requests, so a request is held to the
			// description only when it succeeded; every answer is.
			validate := v.ValidateHttpResponse
			if rec.Code < 300 {
				validate = v.ValidateHttpRequestResponse
			}
			if ok, errs := validate(vreq, vres); !ok {
				for _, ve := range errs {
					t.Errorf("%s %s → %d %s: %s (%s)", method, path, rec.Code, strings.TrimSpace(rec.Body.String()), ve.Message, ve.Reason)
				}
			}
		}
		if seen[op] == nil {
			seen[op] = map[int]map[int]bool{}
		}
		if seen[op][rec.Code] == nil {
			seen[op][rec.Code] = map[int]bool{}
		}
		seen[op][rec.Code][code] = true
		return response{rec.Code, rec.Header(), rec.Body.Bytes()}
	}

	token, _ := e.newApp("a")
	otherToken, _ := e.newApp("b")
	const (
		create  = "POST /1.1/account_activity/webhooks.json"
		list    = "GET /1.1/account_activity/webhooks.json"
		check   = "PUT /1.1/account_activity/webhooks/{webhook_id}.json"
		del     = "DELETE /1.1/account_activity/webhooks/{webhook_id}.json"
		replay  = "POST /1.1/account_activity/replay/webhooks/{webhook_id}/subscriptions/all.json"
		jobs    = "GET /replay/jobs"
		getJob  = "GET /replay/jobs/{job_id}"
		cancel  = "DELETE /replay/jobs/{job_id}"
		health  = "GET /healthz"
		metrics = "GET /metrics"
		openapi = "GET /openapi.json"
	)
	// Webhooks.
	r := call(create, "POST", "/1.1/account_activity/webhooks.json?url=https%3A%2F%2Fexample.com%2Fa", token)
	var wh struct{ ID string }
	json.Unmarshal(r.body, &wh)
	call(create, "POST", "/1.1/account_activity/webhooks.json?url=ftp%3A%2F%2Fexample.com%2F", token)
	call(create, "POST", "/1.1/account_activity/webhooks.json", token)
	call(create, "POST", "/1.1/account_activity/webhooks.json?url=https%3A%2F%2Fexample.com%2Fb", "")
	call(list, "GET", "/1.1/account_activity/webhooks.json", token)
	call(list, "GET", "/1.1/account_activity/webhooks.json", "")
	hook := "/1.1/account_activity/webhooks/" + wh.ID + ".json"
	call(check, "PUT", hook, token)
	call(check, "PUT", hook, "")
	call(check, "PUT", hook, otherToken)
	call(del, "DELETE", "/1.1/account_activity/webhooks/1.json", token)
	call(del, "DELETE", hook, "")
	// Replays and jobs.
	rp := func(id, q string) string {
		return "/1.1/account_activity/replay/webhooks/" + id + "/subscriptions/all.json" + q
	}
	r = call(replay, "POST", rp(wh.ID, "?from_date=202603100900&to_date=202603101100"), token)
	var accepted struct {
		JobID string `json:"job_id"`
	}
	json.Unmarshal(r.body, &accepted)
	call(replay, "POST", rp(wh.ID, "?from_date=202603100900&to_date=202603101100"), token) // 409
	call(replay, "POST", rp(wh.ID, "?to_date=202603101100"), token)                        // 357
	call(replay, "POST", rp(wh.ID, "?from_date=x&to_date=202603101100"), token)            // 358
	call(replay, "POST", rp(wh.ID, "?from_date=203001010000&to_date=203001010100"), token) // 368
	call(replay, "POST", rp(wh.ID, "?from_date=202603101100&to_date=202603100900"), token) // 356
	call(replay, "POST", rp("1", "?from_date=202603100900&to_date=202603101100"), token)   // 404
	call(replay, "POST", rp(wh.ID, "?from_date=202603100900&to_date=202603101100"), "")    // 401
	call(jobs, "GET", "/replay/jobs", token)
	call(jobs, "GET", "/replay/jobs?limit=0", token)
	call(jobs, "GET", "/replay/jobs", "")
	call(getJob, "GET", "/replay/jobs/"+accepted.JobID, token)
	// A job read from the local and a mirrored topic answers with its progress per topic.
	leased, err := e.jobs.Lease(t.Context(), job.LeaseParams{Owner: "w", Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.jobs.Heartbeat(t.Context(), job.HeartbeatParams{ID: leased.ID, FencingToken: leased.FencingToken, Progress: &job.Progress{
		Checkpoint: 12, Counters: job.Counters{Read: 9, Delivered: 6, DuplicatesDropped: 3},
		Topics: []job.TopicProgress{{Topic: "delivery_log", Checkpoint: 12, Read: 5, Delivered: 4, DuplicatesDropped: 1}, {Topic: "dc2.delivery_log", Checkpoint: 7, Read: 4, Delivered: 2, DuplicatesDropped: 2}},
	}}); err != nil {
		t.Fatal(err)
	}
	if r := call(getJob, "GET", "/replay/jobs/"+accepted.JobID, token); !bytes.Contains(r.body, []byte(`"topic":"dc2.delivery_log"`)) || !bytes.Contains(r.body, []byte(`"duplicate_percent":50`)) {
		t.Errorf("GET of a two-topic job: %s", r.body)
	}
	call(jobs, "GET", "/replay/jobs", token)
	call(getJob, "GET", "/replay/jobs/"+accepted.JobID, otherToken)
	call(getJob, "GET", "/replay/jobs/"+accepted.JobID, "")
	call(cancel, "DELETE", "/replay/jobs/"+accepted.JobID, token)
	call(cancel, "DELETE", "/replay/jobs/"+accepted.JobID, otherToken)
	call(cancel, "DELETE", "/replay/jobs/"+accepted.JobID, "")
	r = call(replay, "POST", rp(wh.ID, "?from_date=202603100800&to_date=202603100900"), token)
	json.Unmarshal(r.body, &accepted)
	l, err := e.jobs.Lease(t.Context(), job.LeaseParams{Owner: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []job.State{job.StateOngoing, job.StateCompleted} {
		if err := e.jobs.Transition(t.Context(), job.TransitionParams{ID: l.ID, FencingToken: l.FencingToken, To: to}); err != nil {
			t.Fatal(err)
		}
	}
	call(cancel, "DELETE", "/replay/jobs/"+accepted.JobID, token) // 409
	// A failing CRC check marks the webhook invalid: its replay is 400/214.
	e.mu.Lock()
	e.challengeErr = errors.New("refused")
	e.mu.Unlock()
	call(check, "PUT", hook, token)
	call(replay, "POST", rp(wh.ID, "?from_date=202603100900&to_date=202603101100"), token)
	e.mu.Lock()
	e.challengeErr = nil
	e.mu.Unlock()
	call(del, "DELETE", hook, token)
	// Health, metrics, the description, a wrong method.
	call(health, "GET", "/healthz", "")
	call(metrics, "GET", "/metrics", "")
	call(openapi, "GET", "/openapi.json", "")
	call("* *", "PATCH", "/replay/jobs", token)
	// The stores down (503/67) and broken (500/0), for every route that uses them.
	for _, fault := range []error{app.ErrClosed, errors.New("disk on fire")} {
		faults.err.Store(&fault)
		call(create, "POST", "/1.1/account_activity/webhooks.json?url=https%3A%2F%2Fexample.com%2Fc", token)
		call(list, "GET", "/1.1/account_activity/webhooks.json", token)
		call(check, "PUT", hook, token)
		call(del, "DELETE", hook, token)
		call(replay, "POST", rp(wh.ID, "?from_date=202603100900&to_date=202603101100"), token)
		call(jobs, "GET", "/replay/jobs", token)
		call(getJob, "GET", "/replay/jobs/"+accepted.JobID, token)
		call(cancel, "DELETE", "/replay/jobs/"+accepted.JobID, token)
		call(health, "GET", "/healthz", "")
	}
	faults.err.Store(nil)
	// The rate limits (every request counts).
	for range 50 {
		call(create, "POST", "/1.1/account_activity/webhooks.json?url=ftp%3A%2F%2Fx", otherToken)
	}
	for range 51 {
		call(replay, "POST", rp("1", "?from_date=202603100900&to_date=202603101100"), otherToken)
	}
	call(check, "PUT", hook, otherToken)

	// Every documented status and code was answered; every answer was documented.
	for op, statuses := range doc {
		for status, codes := range statuses {
			if _, ok := seen[op][status]; !ok {
				t.Errorf("%s: documented status %d never answered", op, status)
				continue
			}
			for _, c := range codes {
				if !seen[op][status][c] {
					t.Errorf("%s: documented error %d/%d never answered", op, status, c)
				}
			}
		}
	}
	for op, statuses := range seen {
		for status, codes := range statuses {
			want, ok := doc[op][status]
			if !ok {
				t.Errorf("%s answered %d, which is not documented", op, status)
				continue
			}
			for c := range codes {
				if c >= 0 && !slices.Contains(want, c) {
					t.Errorf("%s answered %d with code %d, documented codes %v", op, status, c, want)
				}
			}
		}
	}
}
