// Package console is the replay service's web console, served by `replayd serve` under
// /console: server-rendered html/template pages (jobs, one job, the app's webhooks, the
// instance's index lag and delivery throughput) with a little JavaScript that polls the
// console's JSON endpoints for live progress. Templates, style sheet and script are embedded;
// nothing is loaded from anywhere else.
//
// Routes (all GET but the login and logout forms):
//
//	/console/                   jobs (filters: webhook_id, state, created_after, created_before)
//	/console/jobs/{job_id}      one job: progress over time, first undelivered event, completion event
//	/console/webhooks           webhooks: URL, CRC state and last check
//	/console/instance           index lag per partition, delivery throughput (operator only)
//	/console/api/jobs           the jobs page's rows as JSON (same filters)
//	/console/api/jobs/{job_id}  one job with its samples as JSON
//	/console/login              GET the form, POST token=… sets the session cookie
//	/console/logout             POST clears it
//	/console/static/{file}      the style sheet and the script
//
// Who sees what: an app's bearer token shows that app's jobs and webhooks; the operator token
// (Options.OperatorToken) shows every app's and the instance page; without a token there is
// only the login form. The token comes from an Authorization: Bearer header or from the
// HttpOnly, SameSite=Strict cookie the login form sets. Every page is read-only; the login POST
// is refused when the browser says it came from another site.
package console

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/replay/replay/index"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/job"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// CookieName is the session cookie the login form sets: the token itself, HttpOnly,
// SameSite=Strict, Path=/console.
const CookieName = "replay_console"

// Locator finds the batches of a webhook's window (index.Live.Locate).
type Locator interface {
	Locate(ctx context.Context, p int32, key []byte, from, to int64) ([]int64, error)
}

// Options configure the console.
type Options struct {
	Apps app.Driver // required
	Jobs job.Driver // required
	// Locator, if set, answers how many batches a job's window holds (the progress bar).
	Locator Locator
	// Lag, if set, is the index's lag per partition (the instance page).
	Lag func(ctx context.Context) ([]index.PartitionLag, error)
	// Delivered, if set, is the events this process has delivered so far (the instance page's
	// throughput).
	Delivered func() int64
	// OperatorToken, when set, is the token that shows every app's jobs and webhooks and the
	// instance page.
	OperatorToken string
	// SampleEvery is how often the sampler records active jobs' counters and the instance's
	// delivered count. Default 1s.
	SampleEvery time.Duration
	// Samples is how many samples are kept per job (a ring). Default 240.
	Samples int
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock of the samples. Default time.Now.
	Now func() time.Time
}

// EnsureDefaults fills in unset fields and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.SampleEvery == 0 {
		o.SampleEvery = time.Second
	}
	if o.Samples == 0 {
		o.Samples = 240
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Validate reports every missing or impossible field.
func (o *Options) Validate() error {
	var errs []error
	if o.Apps == nil {
		errs = append(errs, errors.New("console: Apps is required"))
	}
	if o.Jobs == nil {
		errs = append(errs, errors.New("console: Jobs is required"))
	}
	if o.SampleEvery <= 0 {
		errs = append(errs, fmt.Errorf("console: SampleEvery is %v, want positive", o.SampleEvery))
	}
	if o.Samples < 2 {
		errs = append(errs, fmt.Errorf("console: Samples is %d, want at least 2", o.Samples))
	}
	return errors.Join(errs...)
}

// Console is the console's handler and its sampler (a service: Start, then Stop).
type Console struct {
	o       Options
	mux     *http.ServeMux
	pages   map[string]*template.Template
	sampler *sampler
	windows *windowCache
}

// New builds the console. Nothing runs until Start.
func New(o Options) (*Console, error) {
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c := &Console{o: o, mux: http.NewServeMux(), pages: map[string]*template.Template{}}
	c.sampler = newSampler(o)
	c.windows = newWindowCache(o.Locator, o.Now)
	for _, name := range []string{"jobs", "job", "webhooks", "instance", "login", "message"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	static, _ := fs.Sub(staticFS, "static")
	c.mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET /console/login", c.loginForm)
	c.mux.HandleFunc("POST /console/login", c.login)
	c.mux.HandleFunc("POST /console/logout", c.logout)
	c.mux.HandleFunc("GET /console/{$}", c.page(c.jobsPage))
	c.mux.HandleFunc("GET /console/jobs/{job_id}", c.page(c.jobPage))
	c.mux.HandleFunc("GET /console/webhooks", c.page(c.webhooksPage))
	c.mux.HandleFunc("GET /console/instance", c.page(c.instancePage))
	c.mux.HandleFunc("GET /console/api/jobs", c.api(c.jobsJSON))
	c.mux.HandleFunc("GET /console/api/jobs/{job_id}", c.api(c.jobJSON))
	c.mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusMovedPermanently)
	})
	c.mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.message(w, r, http.StatusNotFound, "Not found", "There is no console page at "+r.URL.Path+".")
	})
	return c, nil
}

// Routes lists the console's routes ("METHOD /path", paths as OpenAPI writes them).
func Routes() []string {
	return []string{
		"GET /console/", "GET /console/jobs/{job_id}", "GET /console/webhooks", "GET /console/instance",
		"GET /console/api/jobs", "GET /console/api/jobs/{job_id}",
		"GET /console/login", "POST /console/login", "POST /console/logout", "GET /console/static/{file}",
	}
}

// Start runs the sampler until Stop or ctx ends.
func (c *Console) Start(ctx context.Context) error {
	c.sampler.start(ctx)
	return nil
}

// Stop ends the sampler. It is idempotent and safe without Start.
func (c *Console) Stop() { c.sampler.stop() }

// ServeHTTP serves the console's routes with its security headers: nothing but the console's
// own files may load, no page may be framed, nothing is cached.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

// viewer is who asks: the operator (every app) or one app.
type viewer struct {
	operator bool
	app      *app.App
}

// appID is the app whose records the viewer sees; 0 for the operator (every app).
func (v *viewer) appID() int64 {
	if v.operator {
		return 0
	}
	return v.app.ID
}

func (v *viewer) Name() string {
	if v.operator {
		return "operator"
	}
	return "app " + v.app.Name
}

func (v *viewer) Operator() bool { return v.operator }

var errNoToken = errors.New("no token")

// token is the bearer token of r: its Authorization header, else the session cookie.
func token(r *http.Request) string {
	if scheme, t, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(t)
	}
	if ck, err := r.Cookie(CookieName); err == nil {
		return ck.Value
	}
	return ""
}

// authenticate finds the viewer of a token: errNoToken, app.ErrNotFound for a token that is
// no one's, or a store error.
func (c *Console) authenticate(ctx context.Context, t string) (*viewer, error) {
	if t == "" {
		return nil, errNoToken
	}
	if c.o.OperatorToken != "" && subtle.ConstantTimeCompare([]byte(t), []byte(c.o.OperatorToken)) == 1 {
		return &viewer{operator: true}, nil
	}
	a, err := c.o.Apps.AppByToken(ctx, app.AppByTokenParams{Token: t})
	if err != nil {
		return nil, err
	}
	return &viewer{app: a}, nil
}

// page wraps an HTML page: without a valid token the login form (401), a store error a page
// that says so (503).
func (c *Console) page(fn func(w http.ResponseWriter, r *http.Request, v *viewer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := c.authenticate(r.Context(), token(r))
		switch {
		case errors.Is(err, errNoToken):
			c.render(w, http.StatusUnauthorized, "login", map[string]any{"Next": r.URL.RequestURI()})
		case errors.Is(err, app.ErrNotFound):
			c.render(w, http.StatusUnauthorized, "login", map[string]any{"Next": r.URL.RequestURI(), "Error": "That token is not an app's or the operator's."})
		case err != nil:
			c.storeError(w, r, err)
		default:
			fn(w, r, v)
		}
	}
}

// api wraps a JSON endpoint: 401 {"error":…} without a valid token.
func (c *Console) api(fn func(w http.ResponseWriter, r *http.Request, v *viewer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := c.authenticate(r.Context(), token(r))
		switch {
		case errors.Is(err, errNoToken), errors.Is(err, app.ErrNotFound):
			writeJSON(w, http.StatusUnauthorized, errorJSON{"a valid app or operator token is required"})
		case err != nil:
			c.o.Logger.Error("console: store error", "path", r.URL.Path, "err", err)
			writeJSON(w, http.StatusServiceUnavailable, errorJSON{"the store did not answer"})
		default:
			fn(w, r, v)
		}
	}
}

type errorJSON struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}

func (c *Console) render(w http.ResponseWriter, status int, name string, data map[string]any) {
	var b strings.Builder
	if err := c.pages[name].Execute(&b, data); err != nil {
		c.o.Logger.Error("console: rendering", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(b.String())) //nolint:errcheck // the client went away
}

func (c *Console) message(w http.ResponseWriter, _ *http.Request, status int, title, text string) {
	c.render(w, status, "message", map[string]any{"Title": title, "Text": text})
}

func (c *Console) storeError(w http.ResponseWriter, r *http.Request, err error) {
	c.o.Logger.Error("console: store error", "path", r.URL.Path, "err", err)
	c.message(w, r, http.StatusServiceUnavailable, "Store unavailable", "The job or app store did not answer; try again in a moment.")
}

// ---- login ----

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	c.render(w, http.StatusOK, "login", map[string]any{"Next": safeNext(r.URL.Query().Get("next"))})
}

// safeNext keeps a post-login redirect inside the console.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(u.Path, "/console/") || strings.HasPrefix(next, "//") {
		return "/console/"
	}
	return u.RequestURI()
}

// crossSite says the browser marked r as sent from another site (Sec-Fetch-Site), or its
// Origin is not this host: a login form posted from elsewhere could log the victim in as the
// attacker's app.
func crossSite(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return true
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		return err != nil || u.Host != r.Host
	}
	return false
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if crossSite(r) {
		c.message(w, r, http.StatusForbidden, "Refused", "The login form was posted from another site.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	t := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	_, err := c.authenticate(r.Context(), t)
	switch {
	case errors.Is(err, errNoToken):
		c.render(w, http.StatusUnauthorized, "login", map[string]any{"Next": next, "Error": "Enter an app's bearer token or the operator token."})
		return
	case errors.Is(err, app.ErrNotFound):
		c.render(w, http.StatusUnauthorized, "login", map[string]any{"Next": next, "Error": "That token is not an app's or the operator's."})
		return
	case err != nil:
		c.storeError(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: t, Path: "/console", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	if crossSite(r) {
		c.message(w, r, http.StatusForbidden, "Refused", "The logout form was posted from another site.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/console", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// ---- jobs ----

// filter is the jobs page's query: webhook, states, and a creation-time range (UTC).
type filter struct {
	WebhookID     string
	States        []string
	CreatedAfter  string // datetime-local, UTC: 2006-01-02T15:04
	CreatedBefore string

	params        job.ListParams
	after, before time.Time
}

const filterTimeLayout = "2006-01-02T15:04"

// parseFilter reads the filters; a bad one is an error naming it and the value.
func parseFilter(q url.Values, v *viewer) (filter, error) {
	f := filter{WebhookID: strings.TrimSpace(q.Get("webhook_id")), CreatedAfter: q.Get("created_after"), CreatedBefore: q.Get("created_before")}
	f.params = job.ListParams{AppID: v.appID(), Limit: job.MaxListLimit}
	if f.WebhookID != "" {
		id, err := strconv.ParseInt(f.WebhookID, 10, 64)
		if err != nil || id <= 0 {
			return f, fmt.Errorf("webhook_id %q is not a webhook id (a positive decimal number)", f.WebhookID)
		}
		f.params.WebhookID = id
	}
	for _, s := range q["state"] {
		if s == "" {
			continue
		}
		st, err := job.ParseState(s)
		if err != nil {
			return f, fmt.Errorf("state %q is not one of OPEN, STARTED, ONGOING, COMPLETED, INCOMPLETE, CANCELED", s)
		}
		f.States = append(f.States, st.String())
		f.params.States = append(f.params.States, st)
	}
	for _, tm := range []struct {
		name, v string
		to      *time.Time
	}{{"created_after", f.CreatedAfter, &f.after}, {"created_before", f.CreatedBefore, &f.before}} {
		if tm.v == "" {
			continue
		}
		t, err := time.ParseInLocation(filterTimeLayout, tm.v, time.UTC)
		if err != nil {
			return f, fmt.Errorf("%s %q is not a time of the form 2006-01-02T15:04 (UTC)", tm.name, tm.v)
		}
		*tm.to = t
	}
	return f, nil
}

// HasState is for the state filter's checkboxes.
func (f filter) HasState(s string) bool {
	for _, x := range f.States {
		if x == s {
			return true
		}
	}
	return false
}

// maxListed bounds the jobs one page lists; maxScanned the jobs read to find them (a
// creation-time filter is applied to the store's newest-first pages).
const (
	maxListed  = 200
	maxScanned = 10 * job.MaxListLimit
)

// listJobs lists the viewer's jobs that match f, newest first, at most maxListed; true when
// more may match (past maxListed, or past maxScanned jobs read).
func (c *Console) listJobs(ctx context.Context, f filter) ([]*job.Job, bool, error) {
	var out []*job.Job
	p := f.params
	for scanned := 0; ; {
		if scanned >= maxScanned {
			return out, true, nil
		}
		res, err := c.o.Jobs.List(ctx, p)
		if err != nil {
			return nil, false, err
		}
		scanned += len(res.Jobs)
		for _, j := range res.Jobs {
			if !f.before.IsZero() && !j.CreatedAt.Before(f.before) {
				continue
			}
			if !f.after.IsZero() && j.CreatedAt.Before(f.after) {
				return out, false, nil // newest first: the rest are older still
			}
			if len(out) == maxListed {
				return out, true, nil
			}
			out = append(out, j)
		}
		if res.NextBeforeID == 0 {
			return out, false, nil
		}
		p.BeforeID = res.NextBeforeID
	}
}

func (c *Console) jobsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	f, err := parseFilter(r.URL.Query(), v)
	if err != nil {
		c.render(w, http.StatusBadRequest, "jobs", map[string]any{"Viewer": v, "Filter": f, "States": stateNames(), "Error": err.Error()})
		return
	}
	jobs, more, err := c.listJobs(r.Context(), f)
	if err != nil {
		c.storeError(w, r, err)
		return
	}
	rows := make([]JobRow, 0, len(jobs))
	budget := &lookups{left: lookupsPerAnswer}
	for _, j := range jobs {
		rows = append(rows, c.row(r.Context(), j, budget))
	}
	c.render(w, http.StatusOK, "jobs", map[string]any{"Viewer": v, "Filter": f, "States": stateNames(), "Jobs": rows, "More": more, "Max": maxListed, "Scanned": maxScanned,
		"Query": r.URL.RawQuery})
}

func stateNames() []string {
	var out []string
	for _, s := range job.AllStates {
		out = append(out, s.String())
	}
	return out
}

// JobsJSON is the answer of GET /console/api/jobs.
type JobsJSON struct {
	Jobs []JobRow `json:"jobs"`
	// Truncated: more jobs may match than are listed (past maxListed, or past maxScanned read).
	Truncated bool `json:"truncated"`
}

func (c *Console) jobsJSON(w http.ResponseWriter, r *http.Request, v *viewer) {
	f, err := parseFilter(r.URL.Query(), v)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorJSON{err.Error()})
		return
	}
	jobs, more, err := c.listJobs(r.Context(), f)
	if err != nil {
		c.o.Logger.Error("console: store error", "path", r.URL.Path, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, errorJSON{"the job store did not answer"})
		return
	}
	out := JobsJSON{Jobs: make([]JobRow, 0, len(jobs)), Truncated: more}
	budget := &lookups{left: lookupsPerAnswer}
	for _, j := range jobs {
		out.Jobs = append(out.Jobs, c.row(r.Context(), j, budget))
	}
	writeJSON(w, http.StatusOK, out)
}

// getJob loads the viewer's job of the path; nil after answering.
func (c *Console) getJob(w http.ResponseWriter, r *http.Request, v *viewer, html bool) *job.Job {
	id, err := strconv.ParseInt(r.PathValue("job_id"), 10, 64)
	if err == nil && id > 0 {
		var j *job.Job
		j, err = c.o.Jobs.Get(r.Context(), job.GetParams{ID: id, AppID: v.appID()})
		if err == nil {
			return j
		}
	}
	switch {
	case err != nil && !errors.Is(err, job.ErrNotFound) && !errors.Is(err, strconv.ErrSyntax) && !errors.Is(err, strconv.ErrRange):
		if html {
			c.storeError(w, r, err)
		} else {
			writeJSON(w, http.StatusServiceUnavailable, errorJSON{"the job store did not answer"})
		}
	case html:
		c.message(w, r, http.StatusNotFound, "No such job", fmt.Sprintf("There is no job %q that this token may see.", r.PathValue("job_id")))
	default:
		writeJSON(w, http.StatusNotFound, errorJSON{fmt.Sprintf("no job %q that this token may see", r.PathValue("job_id"))})
	}
	return nil
}

func (c *Console) jobPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	j := c.getJob(w, r, v, true)
	if j == nil {
		return
	}
	d := c.detail(r.Context(), j)
	c.render(w, http.StatusOK, "job", map[string]any{"Viewer": v, "Job": d, "Chart": chart(d.Samples)})
}

func (c *Console) jobJSON(w http.ResponseWriter, r *http.Request, v *viewer) {
	j := c.getJob(w, r, v, false)
	if j == nil {
		return
	}
	writeJSON(w, http.StatusOK, c.detail(r.Context(), j))
}

// ---- webhooks ----

// WebhookRow is one webhook on the webhooks page.
type WebhookRow struct {
	ID, AppID, AppName, URL string
	Valid                   bool
	CheckedAt, CreatedAt    string
}

func (c *Console) webhooksPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	apps := []*app.App{v.app}
	if v.operator {
		var err error
		if apps, err = c.o.Apps.ListApps(r.Context(), app.ListAppsParams{}); err != nil {
			c.storeError(w, r, err)
			return
		}
	}
	var rows []WebhookRow
	for _, a := range apps {
		whs, err := c.o.Apps.ListWebhooks(r.Context(), app.ListWebhooksParams{AppID: a.ID})
		if err != nil {
			c.storeError(w, r, err)
			return
		}
		for _, wh := range whs {
			rows = append(rows, WebhookRow{ID: strconv.FormatInt(wh.ID, 10), AppID: strconv.FormatInt(a.ID, 10), AppName: a.Name, URL: wh.URL,
				Valid: wh.Valid, CheckedAt: formatTime(wh.CheckedAt), CreatedAt: formatTime(wh.CreatedAt)})
		}
	}
	c.render(w, http.StatusOK, "webhooks", map[string]any{"Viewer": v, "Webhooks": rows})
}

// ---- instance ----

func (c *Console) instancePage(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !v.operator {
		c.message(w, r, http.StatusForbidden, "Operators only", "The instance page shows every app's traffic: it needs the operator token.")
		return
	}
	var lags []index.PartitionLag
	var lagErr string
	if c.o.Lag != nil {
		var err error
		if lags, err = c.o.Lag(r.Context()); err != nil {
			lagErr = err.Error()
		}
	}
	var total int64
	for _, l := range lags {
		total += l.Lag
	}
	th := c.sampler.throughput()
	c.render(w, http.StatusOK, "instance", map[string]any{"Viewer": v, "Lags": lags, "LagError": lagErr, "TotalLag": total, "Throughput": th})
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
