// Package sink is a webhook receiver for replays: it answers the CRC challenge, verifies the
// signature of every delivery, records what arrived, and can inject faults on request.
package sink

import (
	"context"
	"crypto/hmac"
	"encoding/json"

	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/replay/replay/replayd/delivery"
)

// Faults make the sink misbehave, for testing a replay's retries. Rates are probabilities per
// delivery, in [0, 1].
type Faults struct {
	ErrorRate    float64       // answer 500
	ThrottleRate float64       // answer 429 with Retry-After: RetryAfter
	RetryAfter   time.Duration // default 1s
	Latency      time.Duration // added to every answer
}

// Delivery is one POST the sink received.
type Delivery struct {
	At             time.Time       `json:"at"`
	Body           json.RawMessage `json:"body"`
	SignatureValid bool            `json:"signature_valid"`
	Duplicate      bool            `json:"duplicate"` // the same body arrived before
}

// Status is a replay_job_status event the sink received.
type Status struct {
	WebhookID   string `json:"webhook_id"`
	State       string `json:"job_state"`
	Description string `json:"job_state_description"`
	JobID       string `json:"job_id"`
}

// Sink is an http.Handler. Secret is the app secret deliveries are signed with.
type Sink struct {
	secret []byte
	record io.Writer // JSON lines of Delivery, when set

	mu         sync.Mutex
	faults     Faults
	deliveries []Delivery
	seen       map[uint64]bool
	statuses   map[string]Status
	changed    chan struct{} // closed and replaced on every delivery
	badSig     int
}

// New makes a sink that verifies signatures with secret and, if record is not nil, writes every
// delivery to it as a JSON line.
func New(secret []byte, record io.Writer) *Sink {
	return &Sink{secret: secret, record: record, seen: map[uint64]bool{}, statuses: map[string]Status{}, changed: make(chan struct{})}
}

// SetFaults changes the faults injected from now on.
func (s *Sink) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.RetryAfter == 0 {
		f.RetryAfter = time.Second
	}
	s.faults = f
}

func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		token := r.URL.Query().Get("crc_token")
		if token == "" {
			http.Error(w, "crc_token missing", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"response_token": delivery.CRCResponse(s.secret, token)})
	case http.MethodPost:
		s.receive(w, r)
	default:
		http.Error(w, "GET (CRC challenge) or POST (events) only", http.StatusMethodNotAllowed)
	}
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
		select {
		case <-time.After(f.Latency):
		case <-r.Context().Done():
			return
		}
	}
	switch p := rand.Float64(); {
	case p < f.ErrorRate:
		http.Error(w, "injected failure", http.StatusInternalServerError)
		return
	case p < f.ErrorRate+f.ThrottleRate:
		w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter.Round(time.Second).Seconds())))
		http.Error(w, "injected throttle", http.StatusTooManyRequests)
		return
	}
	valid := hmac.Equal([]byte(r.Header.Get(delivery.SignatureHeader)), []byte(delivery.Sign(s.secret, body)))
	if !valid {
		s.mu.Lock()
		s.badSig++
		s.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	h := xxhash.Sum64(body)
	d := Delivery{At: time.Now().UTC(), Body: append(json.RawMessage(nil), body...), SignatureValid: valid, Duplicate: s.seen[h]}
	s.seen[h] = true
	s.deliveries = append(s.deliveries, d)
	var ev struct {
		Status *Status `json:"replay_job_status"`
	}
	if json.Unmarshal(body, &ev) == nil && ev.Status != nil {
		s.statuses[ev.Status.JobID] = *ev.Status
	}
	if s.record != nil {
		line, _ := json.Marshal(d)
		s.record.Write(append(line, '\n'))
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// Deliveries returns what arrived so far, in arrival order.
func (s *Sink) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.deliveries...)
}

// BadSignatures counts POSTs refused for a wrong signature.
func (s *Sink) BadSignatures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.badSig
}

// WaitStatus waits for the replay_job_status event of jobID.
func (s *Sink) WaitStatus(ctx context.Context, jobID string) (Status, error) {
	for {
		s.mu.Lock()
		st, ok := s.statuses[jobID]
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return st, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Status{}, fmt.Errorf("no replay_job_status event for job %s: %w", jobID, ctx.Err())
		}
	}
}
