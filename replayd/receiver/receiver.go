// Package receiver is a webhook receiver for replays: it answers the CRC challenge, verifies the
// signature of every delivery, records what arrived, counts duplicates, and can inject faults on
// request (errors, 429 with Retry-After, latency, timeouts, connection resets).
//
// One sink serves many webhooks: deliveries are routed by URL path (register
// http://HOST:PORT/webhooks/<name> per webhook) and the path is recorded. Paths under /_sink/
// are the control endpoints:
//
//	GET  /_sink/stats            counts, per path first/last delivery and jobs, responses given
//	GET  /_sink/faults           the faults injected now
//	POST /_sink/faults           set them: {"error_rate":0.1,"throttle_rate":0,"retry_after":"1s",
//	                             "latency":"0s","timeout_rate":0,"timeout_hold":"30s","reset_rate":0}
//	GET  /_sink/jobs/{id}?wait=D the job's replay_job_status once it arrived (404 until then,
//	                             waiting up to D for it)
package receiver

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/replay/replay/replayd/delivery"
)

// Faults make the sink misbehave, for testing a replay's retries. Rates are probabilities per
// delivery, in [0, 1]; their sum should not exceed 1 (they are tried in the order below).
type Faults struct {
	ErrorRate    float64       // answer 500
	ThrottleRate float64       // answer 429 with Retry-After: RetryAfter
	RetryAfter   time.Duration // default 1s
	Latency      time.Duration // added to every answer
	TimeoutRate  float64       // hold the request TimeoutHold (longer than the client waits), then 503
	TimeoutHold  time.Duration // default 30s
	ResetRate    float64       // reset the connection (hijack, SO_LINGER 0, close) instead of answering
}

type faultsJSON struct {
	ErrorRate    float64 `json:"error_rate"`
	ThrottleRate float64 `json:"throttle_rate"`
	RetryAfter   string  `json:"retry_after"`
	Latency      string  `json:"latency"`
	TimeoutRate  float64 `json:"timeout_rate"`
	TimeoutHold  string  `json:"timeout_hold"`
	ResetRate    float64 `json:"reset_rate"`
}

// MarshalJSON writes durations as Go duration strings ("250ms").
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{f.ErrorRate, f.ThrottleRate, f.RetryAfter.String(), f.Latency.String(), f.TimeoutRate, f.TimeoutHold.String(), f.ResetRate})
}

// UnmarshalJSON reads what MarshalJSON writes; absent fields are zero.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	out := Faults{ErrorRate: j.ErrorRate, ThrottleRate: j.ThrottleRate, TimeoutRate: j.TimeoutRate, ResetRate: j.ResetRate}
	for _, d := range []struct {
		s   string
		dst *time.Duration
	}{{j.RetryAfter, &out.RetryAfter}, {j.Latency, &out.Latency}, {j.TimeoutHold, &out.TimeoutHold}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return err
		}
		*d.dst = v
	}
	*f = out
	return nil
}

// Validate checks rates and durations.
func (f Faults) Validate() error {
	var errs []error
	sum := 0.0
	for _, r := range []struct {
		name string
		v    float64
	}{{"error_rate", f.ErrorRate}, {"throttle_rate", f.ThrottleRate}, {"timeout_rate", f.TimeoutRate}, {"reset_rate", f.ResetRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			errs = append(errs, fmt.Errorf("%s %v is outside [0, 1]", r.name, r.v))
		}
		sum += r.v
	}
	if sum > 1+1e-9 {
		errs = append(errs, fmt.Errorf("fault rates add up to %v > 1", sum))
	}
	if f.RetryAfter < 0 || f.Latency < 0 || f.TimeoutHold < 0 {
		errs = append(errs, errors.New("negative duration"))
	}
	return errors.Join(errs...)
}

func (f *Faults) defaults() {
	if f.RetryAfter == 0 {
		f.RetryAfter = time.Second
	}
	if f.TimeoutHold == 0 {
		f.TimeoutHold = 30 * time.Second
	}
}

// Delivery is one signed POST the sink received (and answered 200), or one refused for its
// signature (SignatureValid false). It is also the record file's line format (JSON lines).
type Delivery struct {
	At             time.Time       `json:"at"`
	Path           string          `json:"path"`
	EventID        string          `json:"event_id,omitempty"` // the first event object's "id_str"
	Bytes          int             `json:"bytes"`
	SignatureValid bool            `json:"signature_valid"`
	Refused        string          `json:"refused,omitempty"`   // why a POST was refused (401): which signature check failed
	Duplicate      bool            `json:"duplicate,omitempty"` // the same event (id, else body) arrived on this path before
	Status         *Status         `json:"replay_job_status,omitempty"`
	Body           json.RawMessage `json:"body,omitempty"` // in the record file only with Options.RecordBodies
}

// Status is a replay_job_status event the sink received.
type Status struct {
	WebhookID   string `json:"webhook_id"`
	State       string `json:"job_state"`
	Description string `json:"job_state_description"`
	JobID       string `json:"job_id"`
}

// JobStats are a job's deliveries as the sink saw them: every delivery on the job's path after
// the previous status event there, up to its own status event.
type JobStats struct {
	JobID       string    `json:"job_id"`
	Path        string    `json:"path"`
	WebhookID   string    `json:"webhook_id"`
	State       string    `json:"job_state"`
	Description string    `json:"job_state_description"`
	Deliveries  int64     `json:"deliveries"`        // events, the status event not included
	Duplicates  int64     `json:"duplicates"`        // of those, events seen on the path before (in this job or an earlier one)
	FirstAt     time.Time `json:"first_at,omitzero"` // first event delivered
	LastAt      time.Time `json:"last_at,omitzero"`  // last event delivered
	CompletedAt time.Time `json:"completed_at"`      // the status event
}

// PathStats are the deliveries on one path (one webhook).
type PathStats struct {
	WebhookID  string     `json:"webhook_id,omitempty"` // learned from a status event
	Deliveries int64      `json:"deliveries"`
	Duplicates int64      `json:"duplicates"`
	FirstAt    time.Time  `json:"first_at"`
	LastAt     time.Time  `json:"last_at"`
	Jobs       []JobStats `json:"jobs,omitempty"`
	// Pending are the deliveries since the last status event (a job in progress).
	Pending        int64     `json:"pending"`
	PendingFirstAt time.Time `json:"pending_first_at,omitzero"`
	pendingDups    int64
}

// Stats is GET /_sink/stats.
type Stats struct {
	Started       time.Time             `json:"started"`
	Deliveries    int64                 `json:"deliveries"`
	Duplicates    int64                 `json:"duplicates"`
	BadSignatures int64                 `json:"bad_signatures"`
	Responses     map[string]int64      `json:"responses"` // HTTP status given, plus "reset"
	Paths         map[string]*PathStats `json:"paths"`
	Faults        Faults                `json:"faults"`
}

// Options configure a sink.
type Options struct {
	// Secret is the app secret deliveries are signed with (its bytes as printed). A delivery is
	// accepted when its x-twitter-webhooks-signature, or during a rotation's overlap its
	// x-twitter-webhooks-signature-previous, is the signature with it.
	Secret []byte
	// StandardWebhooks requires the Standard Webhooks headers on every POST and verifies them
	// with Secret (delivery.VerifyStandard): a webhook-timestamp more than Tolerance from Now
	// is refused as stale or replayed, and so is a webhook-signature list without a valid v1
	// signature.
	StandardWebhooks bool
	// Tolerance is how far a webhook-timestamp may be from Now. Default
	// delivery.DefaultTolerance (5 minutes).
	Tolerance time.Duration
	// Now is the receiver's clock for the timestamp check. Default time.Now.
	Now func() time.Time
	// Record receives every delivery as a JSON line. If it has a Flush() error method (a
	// bufio.Writer), it is flushed after every status event and by Flush.
	Record         io.Writer
	RecordBodies   bool // put bodies into the record file
	KeepDeliveries bool // keep every delivery in memory, for Deliveries
}

// Sink is an http.Handler.
type Sink struct {
	o Options

	mu         sync.Mutex
	faults     Faults
	deliveries []Delivery
	seen       map[uint64]struct{}
	statuses   map[string]Status
	jobs       map[string]JobStats
	stats      Stats
	changed    chan struct{} // closed and replaced on every delivery
	recordErr  error
}

// New makes a sink that verifies signatures with secret, keeps every delivery in memory and, if
// record is not nil, writes every delivery to it (bodies included) as a JSON line.
func New(secret []byte, record io.Writer) *Sink {
	return NewWithOptions(Options{Secret: secret, Record: record, RecordBodies: true, KeepDeliveries: true})
}

// NewWithOptions makes a sink.
func NewWithOptions(o Options) *Sink {
	if o.Tolerance == 0 {
		o.Tolerance = delivery.DefaultTolerance
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Sink{o: o, seen: map[uint64]struct{}{}, statuses: map[string]Status{}, jobs: map[string]JobStats{}, changed: make(chan struct{})}
	s.stats = Stats{Started: time.Now().UTC(), Responses: map[string]int64{}, Paths: map[string]*PathStats{}}
	s.faults.defaults()
	return s
}

// SetFaults changes the faults injected from now on.
func (s *Sink) SetFaults(f Faults) {
	f.defaults()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// Faults are the faults injected now.
func (s *Sink) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sink/") {
		s.control(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet:
		token := r.URL.Query().Get("crc_token")
		if token == "" {
			http.Error(w, "crc_token missing", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"response_token": delivery.CRCResponse(s.o.Secret, token)})
	case http.MethodPost:
		s.receive(w, r)
	default:
		http.Error(w, "GET (CRC challenge) or POST (events) only", http.StatusMethodNotAllowed)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (s *Sink) control(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_sink/stats" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Stats())
	case r.URL.Path == "/_sink/faults" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Faults())
	case r.URL.Path == "/_sink/faults" && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		var f Faults
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&f); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if err := f.Validate(); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		s.SetFaults(f)
		writeJSON(w, http.StatusOK, s.Faults())
	case strings.HasPrefix(r.URL.Path, "/_sink/jobs/") && r.Method == http.MethodGet:
		id := strings.TrimPrefix(r.URL.Path, "/_sink/jobs/")
		wait := time.Duration(0)
		if v := r.URL.Query().Get("wait"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "wait: want a duration such as 30s"})
				return
			}
			wait = min(d, 5*time.Minute)
		}
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		js, err := s.WaitJob(ctx, id)
		if err != nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no replay_job_status for job " + id + " yet"})
			return
		}
		writeJSON(w, http.StatusOK, js)
	default:
		http.Error(w, "unknown control endpoint: GET /_sink/stats, GET|POST /_sink/faults, GET /_sink/jobs/{id}?wait=30s", http.StatusNotFound)
	}
}

func (s *Sink) count(resp string) {
	s.mu.Lock()
	s.stats.Responses[resp]++
	s.mu.Unlock()
}

func (s *Sink) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	f := s.faults
	s.mu.Unlock()
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	switch p := rand.Float64(); {
	case p < f.ErrorRate:
		s.count("500")
		http.Error(w, "injected failure", http.StatusInternalServerError)
		return
	case p < f.ErrorRate+f.ThrottleRate:
		s.count("429")
		w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter.Round(time.Second).Seconds())))
		http.Error(w, "injected throttle", http.StatusTooManyRequests)
		return
	case p < f.ErrorRate+f.ThrottleRate+f.TimeoutRate:
		s.count("timeout")
		t := time.NewTimer(f.TimeoutHold)
		select {
		case <-t.C:
			http.Error(w, "injected timeout", http.StatusServiceUnavailable)
		case <-r.Context().Done(): // the client gave up, as intended
			t.Stop()
		}
		return
	case p < f.ErrorRate+f.ThrottleRate+f.TimeoutRate+f.ResetRate:
		s.count("reset")
		reset(w)
		return
	}
	if reason := s.verify(r.Header, body); reason != "" {
		s.count("401")
		s.record(Delivery{At: time.Now().UTC(), Path: r.URL.Path, Bytes: len(body), Body: body, Refused: reason})
		http.Error(w, reason, http.StatusUnauthorized)
		return
	}
	d := Delivery{At: time.Now().UTC(), Path: r.URL.Path, Bytes: len(body), SignatureValid: true, Body: body}
	d.EventID, _ = EventIDOf(body)
	var ev struct {
		Status *Status `json:"replay_job_status"`
	}
	if d.EventID == "" && json.Unmarshal(body, &ev) == nil && ev.Status != nil {
		d.Status = ev.Status
	}
	s.record(d)
	w.WriteHeader(http.StatusOK)
}

// verify checks a POST's signatures; it returns why it is refused, or "".
func (s *Sink) verify(h http.Header, body []byte) string {
	want := []byte(delivery.Sign(s.o.Secret, body))
	if !hmac.Equal([]byte(h.Get(delivery.SignatureHeader)), want) && !hmac.Equal([]byte(h.Get(delivery.PreviousSignatureHeader)), want) {
		return "bad signature: " + delivery.SignatureHeader + " is not the signature of the body with this secret"
	}
	if s.o.StandardWebhooks {
		if err := delivery.VerifyStandard(s.o.Secret, h, body, s.o.Now(), s.o.Tolerance); err != nil {
			return err.Error()
		}
	}
	return ""
}

// reset closes the connection with a TCP RST instead of answering.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// record accounts for a delivery and writes it to the record.
func (s *Sink) record(d Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !d.SignatureValid {
		s.stats.BadSignatures++
	} else {
		s.stats.Responses["200"]++
		ps := s.stats.Paths[d.Path]
		if ps == nil {
			ps = &PathStats{FirstAt: d.At}
			s.stats.Paths[d.Path] = ps
		}
		if d.Status != nil {
			st := *d.Status
			s.statuses[st.JobID] = st
			ps.WebhookID = st.WebhookID
			js := JobStats{JobID: st.JobID, Path: d.Path, WebhookID: st.WebhookID, State: st.State, Description: st.Description,
				Deliveries: ps.Pending, Duplicates: ps.pendingDups, FirstAt: ps.PendingFirstAt, LastAt: ps.LastAt, CompletedAt: d.At}
			if ps.Pending == 0 {
				js.LastAt = time.Time{}
			}
			ps.Jobs = append(ps.Jobs, js)
			s.jobs[st.JobID] = js
			ps.Pending, ps.pendingDups, ps.PendingFirstAt = 0, 0, time.Time{}
		} else {
			h := xxhash.New()
			h.WriteString(d.Path)
			h.Write([]byte{0})
			if d.EventID != "" {
				h.WriteString(d.EventID)
			} else {
				h.Write(d.Body)
			}
			k := h.Sum64()
			_, d.Duplicate = s.seen[k]
			s.seen[k] = struct{}{}
			s.stats.Deliveries++
			ps.Deliveries++
			ps.Pending++
			if ps.Pending == 1 {
				ps.PendingFirstAt = d.At
			}
			ps.LastAt = d.At
			if d.Duplicate {
				s.stats.Duplicates++
				ps.Duplicates++
				ps.pendingDups++
			}
		}
	}
	if s.o.KeepDeliveries {
		d.Body = append(json.RawMessage(nil), d.Body...)
		s.deliveries = append(s.deliveries, d)
	}
	if s.o.Record != nil {
		rec := d
		if !s.o.RecordBodies {
			rec.Body = nil
		}
		line, _ := json.Marshal(rec)
		if _, err := s.o.Record.Write(append(line, '\n')); err != nil && s.recordErr == nil {
			s.recordErr = err
		}
		if d.Status != nil {
			s.flushLocked()
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Sink) flushLocked() {
	if f, ok := s.o.Record.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil && s.recordErr == nil {
			s.recordErr = err
		}
	}
}

// Flush flushes the record writer and returns the first error writing the record, if any.
func (s *Sink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.o.Record != nil {
		s.flushLocked()
	}
	return s.recordErr
}

// Deliveries returns what arrived so far, in arrival order (with Options.KeepDeliveries).
func (s *Sink) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.deliveries...)
}

// BadSignatures counts POSTs refused for a wrong signature.
func (s *Sink) BadSignatures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.stats.BadSignatures)
}

// Stats is a snapshot of the counters.
func (s *Sink) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Faults = s.faults
	st.Responses = make(map[string]int64, len(s.stats.Responses))
	for k, v := range s.stats.Responses {
		st.Responses[k] = v
	}
	st.Paths = make(map[string]*PathStats, len(s.stats.Paths))
	for k, v := range s.stats.Paths {
		c := *v
		c.Jobs = append([]JobStats(nil), v.Jobs...)
		st.Paths[k] = &c
	}
	return st
}

// WaitStatus waits for the replay_job_status event of jobID.
func (s *Sink) WaitStatus(ctx context.Context, jobID string) (Status, error) {
	js, err := s.WaitJob(ctx, jobID)
	if err != nil {
		return Status{}, err
	}
	return Status{WebhookID: js.WebhookID, State: js.State, Description: js.Description, JobID: js.JobID}, nil
}

// WaitJob waits for the replay_job_status event of jobID and returns the job's deliveries.
func (s *Sink) WaitJob(ctx context.Context, jobID string) (JobStats, error) {
	for {
		s.mu.Lock()
		js, ok := s.jobs[jobID]
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return js, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return JobStats{}, fmt.Errorf("no replay_job_status event for job %s: %w", jobID, ctx.Err())
		}
	}
}

// CheckReplay checks what a replay delivered: got are the deliveries in arrival order, the
// replay_job_status event last; want are the window's unique event bodies in log order. Every
// event of want must arrive exactly once, validly signed, none more than maxAhead-1 places before
// its place in log order (the delivery window's bound; 1 for strict order), and nothing else but
// the status event.
func CheckReplay(got []Delivery, want []string, maxAhead int) error {
	if len(got) != len(want)+1 {
		return fmt.Errorf("%d deliveries, want %d events and the status event", len(got), len(want))
	}
	place := make(map[string]int, len(want))
	for i, w := range want {
		place[w] = i
	}
	for i, d := range got[:len(want)] {
		p, ok := place[string(d.Body)]
		switch {
		case !ok:
			return fmt.Errorf("delivery %d is not an event of the window, or arrived twice: %s", i+1, d.Body)
		case !d.SignatureValid || d.Duplicate:
			return fmt.Errorf("delivery %d: signature valid %t, duplicate %t: %s", i+1, d.SignatureValid, d.Duplicate, d.Body)
		case p-i >= maxAhead:
			return fmt.Errorf("delivery %d is event %d in log order: %d or more ahead", i+1, p+1, maxAhead)
		}
		delete(place, string(d.Body))
	}
	return nil
}
