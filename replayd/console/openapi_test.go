package console_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"

	"github.com/replay/replay/replayd/api"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/console"
)

// downApps fails authentication while down is set.
type downApps struct {
	app.Driver
	down *atomic.Bool
}

func (d downApps) AppByToken(ctx context.Context, p app.AppByTokenParams) (*app.App, error) {
	if d.down.Load() {
		return nil, app.ErrUnavailable
	}
	return d.Driver.AppByToken(ctx, p)
}

// TestOpenAPI holds the console's part of openapi.json (the paths under /console/) to the
// console in both directions: every route is documented and every documented operation is a
// route; every answer of a run through every route validates against the description; every
// documented status was answered.
func TestOpenAPI(t *testing.T) {
	doc, err := libopenapi.NewDocument(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]map[int]bool{}
	for path, item := range model.Model.Paths.PathItems.FromOldest() {
		if !strings.HasPrefix(path, "/console/") {
			continue
		}
		for method, op := range item.GetOperations().FromOldest() {
			statuses := map[int]bool{}
			for status := range op.Responses.Codes.FromOldest() {
				var n int
				fmt.Sscan(status, &n)
				statuses[n] = false
			}
			documented[strings.ToUpper(method)+" "+path] = statuses
		}
	}
	routes := map[string]bool{}
	for _, r := range console.Routes() {
		routes[r] = true
		if documented[r] == nil {
			t.Errorf("console route %s is not documented", r)
		}
	}
	for op := range documented {
		if !routes[op] {
			t.Errorf("documented operation %s is not a console route", op)
		}
	}

	e := newEnv(t)
	var down atomic.Bool
	c, err := console.New(console.Options{Apps: downApps{e.apps, &down}, Jobs: e.jobs, Locator: locator{1, 2}, OperatorToken: operator})
	if err != nil {
		t.Fatal(err)
	}
	v := validator.NewValidatorFromV3Model(&model.Model)
	call := func(op, method, path, token string, form url.Values, header map[string]string) {
		t.Helper()
		newReq := func() *http.Request {
			var body io.Reader
			if form != nil {
				body = strings.NewReader(form.Encode())
			}
			r := httptest.NewRequest(method, path, body)
			if form != nil {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if token != "" {
				r.Header.Set("Authorization", "Bearer "+token)
			}
			for k, v := range header {
				r.Header.Set(k, v)
			}
			return r
		}
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, newReq())
		vreq := newReq()
		vres := &http.Response{StatusCode: rec.Code, Header: rec.Header(), Body: io.NopCloser(bytes.NewReader(rec.Body.Bytes())), Request: vreq}
		validate := v.ValidateHttpResponse
		if rec.Code < 400 {
			validate = v.ValidateHttpRequestResponse
		}
		if ok, errs := validate(vreq, vres); !ok {
			for _, ve := range errs {
				t.Errorf("%s %s → %d: %s (%s)", method, path, rec.Code, ve.Message, ve.Reason)
			}
		}
		statuses, ok := documented[op]
		if !ok {
			t.Fatalf("no operation %s", op)
		}
		if _, ok := statuses[rec.Code]; !ok {
			t.Errorf("%s %s answered %d, which is not documented for %s", method, path, rec.Code, op)
		}
		statuses[rec.Code] = true
	}
	jobA, jobB := fmt.Sprint(e.jobA.ID), fmt.Sprint(e.jobB.ID)
	const (
		jobs, jobPage, webhooks, instance = "GET /console/", "GET /console/jobs/{job_id}", "GET /console/webhooks", "GET /console/instance"
		jobsJSON, jobJSON                 = "GET /console/api/jobs", "GET /console/api/jobs/{job_id}"
		loginForm, login, logout, static  = "GET /console/login", "POST /console/login", "POST /console/logout", "GET /console/static/{file}"
	)
	for _, token := range []string{e.tokenA, operator} {
		call(jobs, "GET", "/console/?state=ONGOING&state=CANCELED&created_after=2026-01-01T00:00", token, nil, nil)
		call(jobPage, "GET", "/console/jobs/"+jobA, token, nil, nil)
		call(webhooks, "GET", "/console/webhooks", token, nil, nil)
		call(instance, "GET", "/console/instance", token, nil, nil)
		call(jobsJSON, "GET", "/console/api/jobs?webhook_id="+fmt.Sprint(e.hookA.ID), token, nil, nil)
		call(jobJSON, "GET", "/console/api/jobs/"+jobA, token, nil, nil)
	}
	call(jobJSON, "GET", "/console/api/jobs/"+jobB, operator, nil, nil) // canceled: no completion event
	call(jobs, "GET", "/console/?state=DONE", e.tokenA, nil, nil)
	call(jobsJSON, "GET", "/console/api/jobs?webhook_id=x", e.tokenA, nil, nil)
	call(jobPage, "GET", "/console/jobs/"+jobB, e.tokenA, nil, nil)
	call(jobJSON, "GET", "/console/api/jobs/"+jobB, e.tokenA, nil, nil)
	for op, path := range map[string]string{jobs: "/console/", jobPage: "/console/jobs/" + jobA, webhooks: "/console/webhooks",
		instance: "/console/instance", jobsJSON: "/console/api/jobs", jobJSON: "/console/api/jobs/" + jobA} {
		call(op, "GET", path, "", nil, nil)
		down.Store(true)
		call(op, "GET", path, e.tokenA, nil, nil)
		down.Store(false)
	}
	call(loginForm, "GET", "/console/login?next=%2Fconsole%2Fwebhooks", "", nil, nil)
	call(login, "POST", "/console/login", "", url.Values{"token": {e.tokenA}, "next": {"/console/"}}, nil)
	call(login, "POST", "/console/login", "", url.Values{"token": {"wrong"}}, nil)
	call(login, "POST", "/console/login", "", url.Values{"token": {e.tokenA}}, map[string]string{"Sec-Fetch-Site": "cross-site"})
	down.Store(true)
	call(login, "POST", "/console/login", "", url.Values{"token": {e.tokenA}}, nil)
	down.Store(false)
	call(logout, "POST", "/console/logout", "", url.Values{}, nil)
	call(logout, "POST", "/console/logout", "", url.Values{}, map[string]string{"Origin": "https://evil.example"})
	call(static, "GET", "/console/static/console.js", "", nil, nil)
	call(static, "GET", "/console/static/console.css", "", nil, nil)
	call(static, "GET", "/console/static/nothing.png", "", nil, nil)

	for op, statuses := range documented {
		for status, seen := range statuses {
			if !seen {
				t.Errorf("%s: documented status %d never answered", op, status)
			}
		}
	}
}
