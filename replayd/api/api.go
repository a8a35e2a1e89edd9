// Package api is the replay service's HTTP API: the public Account Activity Replay API (v1.1
// enterprise) and webhook registration with the CRC challenge, plus this service's own job
// endpoints, health and metrics. It is a plain net/http handler over an app store and a job store.
//
// Routes:
//
//	POST   /1.1/account_activity/webhooks.json?url=URL           register a webhook (CRC challenge)
//	GET    /1.1/account_activity/webhooks.json                   the app's webhooks
//	PUT    /1.1/account_activity/webhooks/{webhook_id}.json      run the CRC check now (204, or 400/214)
//	DELETE /1.1/account_activity/webhooks/{webhook_id}.json      remove one (204)
//	POST   /1.1/account_activity/replay/webhooks/{webhook_id}/subscriptions/all.json
//	       ?from_date=YYYYMMDDhhmm&to_date=YYYYMMDDhhmm          request a replay (202)
//	GET    /replay/jobs?webhook_id=&state=&cursor=&limit=        the app's jobs, newest first
//	GET    /replay/jobs/{job_id}                                 one job's state and progress
//	DELETE /replay/jobs/{job_id}                                 cancel it
//	GET    /healthz                                              200 when both stores answer (ok or degraded)
//	GET    /metrics                                              Prometheus, when Options.Registry is set and not served elsewhere
//	GET    /openapi.json                                         the OpenAPI 3.1 description (OpenAPI)
//
// Every route but /healthz and /metrics takes the app's bearer token (Authorization: Bearer …).
// Errors are always {"errors":[{"code":N,"message":"…"}]} with the public API's codes (see Code*).
// Registration normalizes the URL (equivalent URLs are one webhook), caps an app's webhooks at
// MaxWebhooks, counts every attempt against RegistrationLimit per RegistrationWindow, and tells
// the caller only the coarse reason of a failed CRC check (the detail goes to the log).
//
// Rate limit: every authenticated replay request counts against the app's RateLimit per
// RateWindow (a fixed window opened by the app's first request), whatever its outcome, as the
// public API counts requests, not successes; it is checked right after authentication, before the
// stores are touched. Replay answers carry x-rate-limit-limit, x-rate-limit-remaining and
// x-rate-limit-reset (Unix seconds). The limit is per process.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/job"
)

// DateFormat is the layout of from_date and to_date (UTC, minute precision).
const DateFormat = "200601021504"

// TimeFormat is the layout of the public API's timestamps ("2016-06-02T23:54:02Z").
const TimeFormat = "2006-01-02T15:04:05Z"

type server struct {
	opts     Options
	mux      *http.ServeMux
	limiter  *limiter
	register *limiter
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New returns the API's handler. It fails when the options are invalid or the metrics cannot be
// registered on Options.Registry (e.g. a second API on the same registry).
func New(opts Options) (http.Handler, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &server{
		opts:     opts,
		mux:      http.NewServeMux(),
		limiter:  newLimiter(opts.RateLimit, opts.RateWindow),
		register: newLimiter(opts.RegistrationLimit, opts.RegistrationWindow),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "replay_api_requests_total",
			Help: "HTTP API requests by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "replay_api_request_duration_seconds",
			Help:    "HTTP API request latency by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
	}
	if opts.Registry != nil {
		for _, c := range []prometheus.Collector{s.requests, s.duration} {
			if err := opts.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("api: registering metrics: %w", err)
			}
		}
	}
	for _, rt := range s.routes() {
		if rt.handler != nil {
			s.mux.Handle(rt.Method+" "+rt.pattern, rt.handler)
		}
	}
	s.mux.HandleFunc("/", s.noRoute)
	return s, nil
}

// OpenAPI is the OpenAPI 3.1 description of every route, parameter, response and error code,
// served at GET /openapi.json. TestOpenAPI holds it to the handlers in both directions.
//
//go:embed openapi.json
var OpenAPI []byte

// Route is one route of the API: its method and its path as the OpenAPI description writes it.
type Route struct {
	Method, Path string
	pattern      string // the net/http pattern, when it differs from Path
	handler      http.Handler
}

// routes is the API's route table; the mux is built from it and Routes reports it.
func (s *server) routes() []Route {
	rt := func(method, path, pattern string, h http.HandlerFunc) Route {
		if pattern == "" {
			pattern = path
		}
		var handler http.Handler
		if h != nil {
			handler = h
		}
		return Route{Method: method, Path: path, pattern: pattern, handler: handler}
	}
	const webhook = "/1.1/account_activity/webhooks/{webhook_id}.json"
	const webhookPattern = "/1.1/account_activity/webhooks/{file}" // {id}.json: a wildcard is a whole segment
	var metrics http.HandlerFunc
	if s.opts.Registry != nil && !s.opts.MetricsElsewhere {
		metrics = promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}).ServeHTTP
	}
	return []Route{
		rt("POST", "/1.1/account_activity/webhooks.json", "", s.authed(s.createWebhook)),
		rt("GET", "/1.1/account_activity/webhooks.json", "", s.authed(s.listWebhooks)),
		rt("PUT", webhook, webhookPattern, s.authed(s.checkWebhook)),
		rt("DELETE", webhook, webhookPattern, s.authed(s.deleteWebhook)),
		rt("POST", "/1.1/account_activity/replay/webhooks/{webhook_id}/subscriptions/all.json", "", s.authed(s.replay)),
		rt("GET", "/replay/jobs", "", s.authed(s.listJobs)),
		rt("GET", "/replay/jobs/{job_id}", "", s.authed(s.getJob)),
		rt("DELETE", "/replay/jobs/{job_id}", "", s.authed(s.cancelJob)),
		rt("GET", "/healthz", "", s.healthz),
		rt("GET", "/metrics", "", metrics),
		rt("GET", "/openapi.json", "", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(OpenAPI) //nolint:errcheck // the client went away
		}),
	}
}

// Routes lists the routes a handler made with opts serves (GET /metrics only with a Registry).
func Routes(opts Options) []Route {
	s := &server{opts: opts}
	var out []Route
	for _, r := range s.routes() {
		if r.handler != nil {
			out = append(out, Route{Method: r.Method, Path: r.Path})
		}
	}
	return out
}

// routeMethods are the methods noRoute tries when a request matched no route.
var routeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch}

// noRoute answers a request no route took: 405/1002 with an Allow header when the path is a
// route of other methods, else 404/34.
func (s *server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range routeMethods {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		writeError(w, errNotFound)
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, apiError{http.StatusMethodNotAllowed, CodeMethodNotAllowed, fmt.Sprintf("Method %s is not allowed here; use %s.", r.Method, strings.Join(allow, " or "))})
}

// reqInfo carries what handlers learn (the app) to the request log.
type reqInfo struct{ appID int64 }

type infoKey struct{}

type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// ServeHTTP bounds the body and the time of the request, routes it, and records its metrics and
// log line.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(rec, r.Body, s.opts.MaxBodyBytes)
	}
	info := &reqInfo{}
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), infoKey{}, info), s.opts.RequestTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	_, route := s.mux.Handler(r)
	s.mux.ServeHTTP(rec, r)
	elapsed := time.Since(start)
	if route == "" {
		route = "other"
	}
	s.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
	s.duration.WithLabelValues(route).Observe(elapsed.Seconds())
	attrs := []slog.Attr{
		slog.String("method", r.Method), slog.String("route", route), slog.String("path", r.URL.Path),
		slog.Int("status", rec.status), slog.Duration("duration", elapsed), slog.String("remote", r.RemoteAddr),
	}
	if info.appID != 0 {
		attrs = append(attrs, slog.Int64("app_id", info.appID))
	}
	s.opts.Logger.LogAttrs(context.WithoutCancel(ctx), slog.LevelInfo, "http request", attrs...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}

func writeError(w http.ResponseWriter, e apiError) {
	writeJSON(w, e.Status, errorBody{Errors: []errorItem{{Code: e.Code, Message: e.Message}}})
}

// storeError answers a store failure: 503/67 when the store is unavailable, else 500/0. The
// detail goes to the log, not to the client.
func (s *server) storeError(w http.ResponseWriter, r *http.Request, op string, err error) {
	e := apiError{http.StatusInternalServerError, CodeInternal, msgInternal}
	if unavailable(err) {
		e = apiError{http.StatusServiceUnavailable, CodeUnavailable, msgUnavailable}
	}
	s.opts.Logger.LogAttrs(context.WithoutCancel(r.Context()), slog.LevelError, "api: store error",
		slog.String("op", op), slog.String("path", r.URL.Path), slog.Int("status", e.Status), slog.Any("error", err))
	writeError(w, e)
}

// authed wraps h with bearer-token authentication: 401/32 unless the Authorization header carries
// an app's token.
func (s *server) authed(h func(w http.ResponseWriter, r *http.Request, a *app.App)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		token = strings.TrimSpace(token)
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			writeError(w, apiError{http.StatusUnauthorized, CodeAuth, msgAuth})
			return
		}
		a, err := s.opts.Apps.AppByToken(r.Context(), app.AppByTokenParams{Token: token})
		if errors.Is(err, app.ErrNotFound) {
			writeError(w, apiError{http.StatusUnauthorized, CodeAuth, msgAuth})
			return
		}
		if err != nil {
			s.storeError(w, r, "authenticate", err)
			return
		}
		if info, _ := r.Context().Value(infoKey{}).(*reqInfo); info != nil {
			info.appID = a.ID
		}
		h(w, r, a)
	}
}

// parseID parses a positive decimal id.
func parseID(s string) (int64, bool) {
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil && id > 0 && s[0] != '+'
}

var errNotFound = apiError{http.StatusNotFound, CodeNotFound, msgNotFound}

// ---- webhooks ----

type webhookView struct {
	ID        string `json:"id"`
	URL       string `json:"url"`
	Valid     bool   `json:"valid"`
	CreatedAt string `json:"created_at"`
	// CheckedAt is when the CRC challenge last ran (registration, PUT, or the scheduled re-check).
	CheckedAt string `json:"checked_at"`
}

func viewWebhook(wh *app.Webhook) webhookView {
	return webhookView{ID: strconv.FormatInt(wh.ID, 10), URL: wh.URL, Valid: wh.Valid,
		CreatedAt: wh.CreatedAt.UTC().Format(TimeFormat), CheckedAt: wh.CheckedAt.UTC().Format(TimeFormat)}
}

func webhookURLError(reason string) apiError {
	return apiError{http.StatusBadRequest, CodeWebhookURL, msgWebhookURL + " " + reason}
}

var errDuplicateURL = webhookURLError("Duplicate URL: this app already registered it.")

var errWebhookInvalid = apiError{http.StatusBadRequest, CodeWebhookURL, "Webhook is marked invalid and requires a CRC check."}

var errTooManyWebhooks = apiError{http.StatusBadRequest, CodeWebhookURL, "Too many resources already created."}

// publicReasoner is an error that carries a reason safe to show the caller (the delivery
// package's *ChallengeError); the rest of it goes to the log only.
type publicReasoner interface{ PublicReason() string }

// challenge runs the CRC challenge against u with the app's secret. A failure is logged in full
// and returned as the 400/214 the caller may see: its coarse reason only, never what the URL
// answered or where it resolved (the URL may name a service of the server's own network).
func (s *server) challenge(r *http.Request, a *app.App, u string) *apiError {
	cctx, cancel := context.WithTimeout(r.Context(), s.opts.ChallengeTimeout)
	err := s.opts.Challenge(cctx, u, a.Secrets(s.opts.Now())...)
	cancel()
	if err == nil {
		return nil
	}
	reason := "the webhook did not answer the CRC challenge correctly"
	var pr publicReasoner
	if errors.As(err, &pr) {
		reason = pr.PublicReason()
	}
	s.opts.Logger.LogAttrs(context.WithoutCancel(r.Context()), slog.LevelWarn, "api: webhook CRC check failed",
		slog.Int64("app_id", a.ID), slog.String("url", u), slog.Any("error", err))
	e := webhookURLError("CRC check failed: " + reason + ".")
	return &e
}

func (s *server) createWebhook(w http.ResponseWriter, r *http.Request, a *app.App) {
	// Every request that runs a CRC challenge counts, whatever its outcome: each sends a request
	// to a URL the caller chose.
	if !s.register.admit(w, a.ID, s.opts.Now()) {
		return
	}
	q := r.URL.Query()
	if !q.Has("url") || q.Get("url") == "" {
		writeError(w, missing("url"))
		return
	}
	u, err := app.NormalizeURL(q.Get("url"))
	if err != nil {
		writeError(w, webhookURLError(err.Error()+"."))
		return
	}
	existing, err := s.opts.Apps.ListWebhooks(r.Context(), app.ListWebhooksParams{AppID: a.ID})
	if err != nil {
		s.storeError(w, r, "list webhooks", err)
		return
	}
	for _, wh := range existing {
		if norm, err := app.NormalizeURL(wh.URL); wh.URL == u || (err == nil && norm == u) {
			writeError(w, errDuplicateURL)
			return
		}
	}
	if len(existing) >= s.opts.MaxWebhooks {
		writeError(w, errTooManyWebhooks)
		return
	}
	if e := s.challenge(r, a, u); e != nil {
		writeError(w, *e)
		return
	}
	wh, err := s.opts.Apps.CreateWebhook(r.Context(), app.CreateWebhookParams{AppID: a.ID, URL: u, Valid: true})
	if errors.Is(err, app.ErrDuplicate) {
		writeError(w, errDuplicateURL)
		return
	}
	if err != nil {
		s.storeError(w, r, "create webhook", err)
		return
	}
	writeJSON(w, http.StatusOK, viewWebhook(wh))
}

func (s *server) listWebhooks(w http.ResponseWriter, r *http.Request, a *app.App) {
	whs, err := s.opts.Apps.ListWebhooks(r.Context(), app.ListWebhooksParams{AppID: a.ID})
	if err != nil {
		s.storeError(w, r, "list webhooks", err)
		return
	}
	out := make([]webhookView, 0, len(whs))
	for _, wh := range whs {
		out = append(out, viewWebhook(wh))
	}
	writeJSON(w, http.StatusOK, out)
}

// webhookFromPath reads {webhook_id}.json and loads the app's webhook; nil after answering 404/34
// or a store error.
func (s *server) webhookFromPath(w http.ResponseWriter, r *http.Request, a *app.App) *app.Webhook {
	idText, ok := strings.CutSuffix(r.PathValue("file"), ".json")
	id, valid := parseID(idText)
	if !ok || !valid {
		writeError(w, errNotFound)
		return nil
	}
	wh, err := s.opts.Apps.GetWebhook(r.Context(), app.GetWebhookParams{ID: id, AppID: a.ID})
	if errors.Is(err, app.ErrNotFound) {
		writeError(w, errNotFound)
		return nil
	}
	if err != nil {
		s.storeError(w, r, "get webhook", err)
		return nil
	}
	return wh
}

// checkWebhook is PUT /1.1/account_activity/webhooks/{id}.json: run the CRC challenge now and
// record the outcome. 204 when it passed (the webhook is valid again); 400/214 with the coarse
// reason when it failed (the webhook is marked invalid).
func (s *server) checkWebhook(w http.ResponseWriter, r *http.Request, a *app.App) {
	// Every request that runs a CRC challenge counts, whatever its outcome: each sends a request
	// to a URL the caller chose.
	if !s.register.admit(w, a.ID, s.opts.Now()) {
		return
	}
	wh := s.webhookFromPath(w, r, a)
	if wh == nil {
		return
	}
	e := s.challenge(r, a, wh.URL)
	_, err := s.opts.Apps.SetWebhookValid(r.Context(), app.SetWebhookValidParams{ID: wh.ID, AppID: a.ID, Valid: e == nil})
	if errors.Is(err, app.ErrNotFound) {
		writeError(w, errNotFound) // deleted meanwhile
		return
	}
	if err != nil {
		s.storeError(w, r, "set webhook validity", err)
		return
	}
	if e != nil {
		writeError(w, *e)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) deleteWebhook(w http.ResponseWriter, r *http.Request, a *app.App) {
	idText, ok := strings.CutSuffix(r.PathValue("file"), ".json")
	id, valid := parseID(idText)
	if !ok || !valid {
		writeError(w, errNotFound)
		return
	}
	err := s.opts.Apps.DeleteWebhook(r.Context(), app.DeleteWebhookParams{AppID: a.ID, ID: id})
	if errors.Is(err, app.ErrNotFound) {
		writeError(w, errNotFound)
		return
	}
	if err != nil {
		s.storeError(w, r, "delete webhook", err)
		return
	}
	// A replay of a deleted webhook has nowhere to go: cancel it rather than let a worker find
	// out at its next delivery.
	active, err := s.opts.Jobs.List(r.Context(), job.ListParams{AppID: a.ID, WebhookID: id, States: job.ActiveStates})
	if err == nil {
		for _, j := range active.Jobs {
			_, cerr := s.opts.Jobs.Cancel(r.Context(), job.CancelParams{ID: j.ID, AppID: a.ID, Reason: "the webhook was deleted"})
			if cerr != nil && !errors.Is(cerr, job.ErrInvalidTransition) {
				err = cerr
			}
		}
	}
	if err != nil {
		s.opts.Logger.Warn("webhook deleted, but its active replay could not be canceled", "webhook_id", id, "err", err)
	}
	w.WriteHeader(http.StatusNoContent)
}

// ---- replay ----

func missing(name string) apiError {
	return apiError{http.StatusBadRequest, CodeMissingParameter, fmt.Sprintf("Missing required parameter: %s.", name)}
}

func unparsable(name, value, expected string) apiError {
	return apiError{http.StatusBadRequest, CodeUnparsable, fmt.Sprintf("Unable to parse %s %q: expected %s.", name, value, expected)}
}

// parseDate reads a required YYYYMMDDhhmm (UTC) parameter.
func parseDate(q map[string][]string, name string) (time.Time, *apiError) {
	vs, ok := q[name]
	if !ok || len(vs) == 0 || vs[0] == "" {
		e := missing(name)
		return time.Time{}, &e
	}
	v := vs[0]
	t, err := time.ParseInLocation(DateFormat, v, time.UTC)
	if err != nil || len(v) != len(DateFormat) {
		e := unparsable(name, v, "the format YYYYMMDDhhmm (UTC, e.g. 201906010930)")
		return time.Time{}, &e
	}
	return t, nil
}

// retentionText renders the retention for "from_date must be within the past …".
func retentionText(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	case d == time.Hour:
		return "1 hour"
	case d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	}
	return d.String()
}

// window validates from_date and to_date against now: both present and parsable, both in the
// past, from before to, from within the retention.
func (s *server) window(q map[string][]string, now time.Time) (from, to time.Time, e *apiError) {
	if from, e = parseDate(q, "from_date"); e != nil {
		return
	}
	if to, e = parseDate(q, "to_date"); e != nil {
		return
	}
	bad := func(status, code int, msg string) (time.Time, time.Time, *apiError) {
		return time.Time{}, time.Time{}, &apiError{status, code, msg}
	}
	if from.After(now) {
		return bad(http.StatusBadRequest, CodeNotInPast, "from_date must be in the past")
	}
	if to.After(now) {
		return bad(http.StatusBadRequest, CodeNotInPast, "to_date must be in the past")
	}
	if !from.Before(to) {
		return bad(http.StatusBadRequest, CodeInvalidWindow, "from_date must be before to_date")
	}
	if from.Before(now.Add(-s.opts.Retention)) {
		return bad(http.StatusBadRequest, CodeInvalidWindow, "from_date must be within the past "+retentionText(s.opts.Retention))
	}
	return from, to, nil
}

type replayAnswer struct {
	JobID     string `json:"job_id"`
	CreatedAt string `json:"created_at"`
}

func (s *server) replay(w http.ResponseWriter, r *http.Request, a *app.App) {
	now := s.opts.Now()
	if !s.limiter.admit(w, a.ID, now) {
		return
	}
	whID, valid := parseID(r.PathValue("webhook_id"))
	if !valid {
		writeError(w, errNotFound)
		return
	}
	wh, err := s.opts.Apps.GetWebhook(r.Context(), app.GetWebhookParams{ID: whID, AppID: a.ID})
	if errors.Is(err, app.ErrNotFound) {
		writeError(w, errNotFound)
		return
	}
	if err != nil {
		s.storeError(w, r, "get webhook", err)
		return
	}
	if !wh.Valid {
		writeError(w, errWebhookInvalid)
		return
	}
	from, to, e := s.window(r.URL.Query(), now)
	if e != nil {
		writeError(w, *e)
		return
	}
	j, err := s.opts.Jobs.Create(r.Context(), job.CreateParams{
		AppID:     a.ID,
		WebhookID: wh.ID,
		Partition: engine.PartitionFor([]byte(strconv.FormatInt(wh.ID, 10)), s.opts.Partitions),
		FromMs:    from.UnixMilli(),
		ToMs:      to.UnixMilli(),
	})
	if errors.Is(err, job.ErrActiveJobExists) {
		writeError(w, apiError{http.StatusConflict, CodeJobInProgress, msgInProgress})
		return
	}
	if err != nil {
		s.storeError(w, r, "create job", err)
		return
	}
	writeJSON(w, http.StatusAccepted, replayAnswer{JobID: strconv.FormatInt(j.ID, 10), CreatedAt: j.CreatedAt.UTC().Format(TimeFormat)})
}

// ---- jobs (beyond the public API) ----

// JobView is the answer of GET /replay/jobs/{job_id} (and the items of GET /replay/jobs).
type JobView struct {
	JobID     string `json:"job_id"`
	WebhookID string `json:"webhook_id"`
	State     string `json:"state"`
	// FromDate (inclusive) and ToDate (exclusive) are the window as requested, YYYYMMDDhhmm UTC.
	FromDate  string `json:"from_date"`
	ToDate    string `json:"to_date"`
	Partition int32  `json:"partition"`
	Progress  struct {
		// Checkpoint is the delivery_log offset below which every event of the window has been
		// delivered (-1: none yet).
		Checkpoint int64 `json:"checkpoint"`
	} `json:"progress"`
	Counts job.Counters `json:"counts"`
	// Topics are the progress and counts per source topic of a job read from several (the local
	// delivery_log and the mirrored ones); absent for one topic.
	Topics []TopicView `json:"topics,omitempty"`
	// FirstUndeliveredAt is the timestamp of the earliest event that could not be delivered.
	FirstUndeliveredAt string `json:"first_undelivered_at,omitempty"`
	Reason             string `json:"reason,omitempty"`
	// StatusEvent is where the finished job's replay_job_status event stands: pending (being
	// delivered, or waiting for a worker), delivered, given_up; absent while the job runs.
	StatusEvent string `json:"status_event,omitempty"`
	CreatedAt   string `json:"created_at"`
	UpdatedAt   string `json:"updated_at"`
	StartedAt   string `json:"started_at,omitempty"`
	FinishedAt  string `json:"finished_at,omitempty"`
}

// TopicView is a job's progress and counts in one source topic.
type TopicView struct {
	Topic string `json:"topic"`
	// Checkpoint is the topic's offset below which every event of the window is settled.
	Checkpoint        int64 `json:"checkpoint"`
	Read              int64 `json:"read"`
	Delivered         int64 `json:"delivered"`
	DuplicatesDropped int64 `json:"duplicates_dropped"`
	// Redelivered counts the topic's events delivered again after a takeover (job.Counters).
	Redelivered int64 `json:"redelivered"`
	// DuplicatePercent is DuplicatesDropped of Read, in percent (0 when nothing was read).
	DuplicatePercent float64 `json:"duplicate_percent"`
}

const msTimeFormat = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeFormat)
}

func viewJob(j *job.Job) JobView {
	v := JobView{
		JobID:     strconv.FormatInt(j.ID, 10),
		WebhookID: strconv.FormatInt(j.WebhookID, 10),
		State:     j.State.String(),
		FromDate:  time.UnixMilli(j.FromMs).UTC().Format(DateFormat),
		ToDate:    time.UnixMilli(j.ToMs).UTC().Format(DateFormat),
		Partition: j.Partition,
		Counts:    j.Counters,
		Reason:    j.Reason, StatusEvent: j.StatusEvent.String(),
		CreatedAt: formatTime(j.CreatedAt), UpdatedAt: formatTime(j.UpdatedAt),
		StartedAt: formatTime(j.StartedAt), FinishedAt: formatTime(j.FinishedAt),
	}
	v.Progress.Checkpoint = j.Checkpoint
	for _, t := range j.Topics {
		tv := TopicView{Topic: t.Topic, Checkpoint: t.Checkpoint, Read: t.Read, Delivered: t.Delivered, DuplicatesDropped: t.DuplicatesDropped, Redelivered: t.Redelivered}
		if t.Read > 0 {
			tv.DuplicatePercent = 100 * float64(t.DuplicatesDropped) / float64(t.Read)
		}
		v.Topics = append(v.Topics, tv)
	}
	if j.FirstUndeliveredMs != nil {
		v.FirstUndeliveredAt = time.UnixMilli(*j.FirstUndeliveredMs).UTC().Format(msTimeFormat)
	}
	return v
}

func (s *server) getJob(w http.ResponseWriter, r *http.Request, a *app.App) {
	id, ok := parseID(r.PathValue("job_id"))
	if !ok {
		writeError(w, errNotFound)
		return
	}
	j, err := s.opts.Jobs.Get(r.Context(), job.GetParams{ID: id, AppID: a.ID})
	if errors.Is(err, job.ErrNotFound) {
		writeError(w, errNotFound)
		return
	}
	if err != nil {
		s.storeError(w, r, "get job", err)
		return
	}
	writeJSON(w, http.StatusOK, viewJob(j))
}

func (s *server) cancelJob(w http.ResponseWriter, r *http.Request, a *app.App) {
	id, ok := parseID(r.PathValue("job_id"))
	if !ok {
		writeError(w, errNotFound)
		return
	}
	j, err := s.opts.Jobs.Cancel(r.Context(), job.CancelParams{ID: id, AppID: a.ID, Reason: "canceled through the API"})
	switch {
	case errors.Is(err, job.ErrNotFound):
		writeError(w, errNotFound)
	case errors.Is(err, job.ErrInvalidTransition):
		writeError(w, apiError{http.StatusConflict, CodeJobFinished, "The job has already finished; only an active job can be canceled."})
	case err != nil:
		s.storeError(w, r, "cancel job", err)
	default:
		writeJSON(w, http.StatusOK, viewJob(j))
	}
}

// JobList is the answer of GET /replay/jobs.
type JobList struct {
	Jobs []JobView `json:"jobs"`
	// NextCursor, when set, is the cursor parameter of the next page.
	NextCursor string `json:"next_cursor,omitempty"`
}

func (s *server) listJobs(w http.ResponseWriter, r *http.Request, a *app.App) {
	q := r.URL.Query()
	p := job.ListParams{AppID: a.ID}
	if v := q.Get("webhook_id"); v != "" {
		id, ok := parseID(v)
		if !ok {
			writeError(w, unparsable("webhook_id", v, "a decimal webhook id"))
			return
		}
		p.WebhookID = id
	}
	if v := q.Get("cursor"); v != "" {
		id, ok := parseID(v)
		if !ok {
			writeError(w, unparsable("cursor", v, "the next_cursor of the previous page"))
			return
		}
		p.BeforeID = id
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > job.MaxListLimit {
			writeError(w, unparsable("limit", v, fmt.Sprintf("a number from 1 to %d", job.MaxListLimit)))
			return
		}
		p.Limit = n
	}
	for _, v := range q["state"] {
		for name := range strings.SplitSeq(v, ",") {
			st, err := job.ParseState(strings.TrimSpace(name))
			if err != nil {
				writeError(w, unparsable("state", name, "OPEN, STARTED, ONGOING, COMPLETED, INCOMPLETE or CANCELED (comma-separated)"))
				return
			}
			p.States = append(p.States, st)
		}
	}
	res, err := s.opts.Jobs.List(r.Context(), p)
	if err != nil {
		s.storeError(w, r, "list jobs", err)
		return
	}
	out := JobList{Jobs: make([]JobView, 0, len(res.Jobs))}
	for _, j := range res.Jobs {
		out.Jobs = append(out.Jobs, viewJob(j))
	}
	if res.NextBeforeID != 0 {
		out.NextCursor = strconv.FormatInt(res.NextBeforeID, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

// ---- health ----

// healthTimeout bounds the stores' answers to a health check.
const healthTimeout = 2 * time.Second

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	var problems []string
	if err := s.opts.Apps.Ping(ctx); err != nil {
		problems = append(problems, "app store: "+err.Error())
	}
	if err := s.opts.Jobs.Ping(ctx); err != nil {
		problems = append(problems, "job store: "+err.Error())
	}
	if len(problems) > 0 {
		s.opts.Logger.LogAttrs(context.WithoutCancel(ctx), slog.LevelWarn, "api: unhealthy", slog.String("problems", strings.Join(problems, "; ")))
		writeError(w, apiError{http.StatusServiceUnavailable, CodeUnavailable, strings.Join(problems, "; ")})
		return
	}
	if s.opts.Degraded != nil {
		if d := s.opts.Degraded(); len(d) > 0 {
			writeJSON(w, http.StatusOK, Health{Status: "degraded", Degraded: d})
			return
		}
	}
	writeJSON(w, http.StatusOK, Health{Status: "ok"})
}

// Health is GET /healthz's answer while both stores answer: "ok", or "degraded" with what is
// wrong (replays are still served, exactly, perhaps more slowly).
type Health struct {
	Status   string   `json:"status"`
	Degraded []string `json:"degraded,omitempty"`
}
