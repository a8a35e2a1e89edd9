package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const testBody = `{"for_user_id":"2244994945","tweet_create_events":[{"id_str":"1"}]}`

func target(url string) Target {
	return Target{WebhookID: "1095098195724595200", URL: url, Secret: []byte("app-secret")}
}

func TestDeliverSignedPost(t *testing.T) {
	c := newTestClient(t, testOptions(newFakeClock()))
	srv := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case r.Method != http.MethodPost:
			http.Error(w, "method "+r.Method, http.StatusMethodNotAllowed)
		case r.Header.Get("Content-Type") != "application/json":
			http.Error(w, "content type "+r.Header.Get("Content-Type"), http.StatusBadRequest)
		case r.Header.Get("X-Twitter-Webhooks-Signature") != "sha256="+hmacB64("app-secret", string(body)):
			http.Error(w, "bad signature", http.StatusUnauthorized)
		case string(body) != testBody:
			http.Error(w, "body", http.StatusBadRequest)
		case r.Header.Get("User-Agent") != DefaultUserAgent || r.Header.Get("Idempotency-Key") != "":
			http.Error(w, "headers", http.StatusBadRequest)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	res, err := c.Deliver(t.Context(), target(srv.URL+"/hook?x=1"), []byte(testBody))
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 1 || res.Status != http.StatusNoContent {
		t.Errorf("result %+v", res)
	}
}

func TestDeliver5xxThenSuccess(t *testing.T) {
	clk := newFakeClock()
	c := newTestClient(t, testOptions(clk))
	srv := newServer(t, func(_ *server, n int64, w http.ResponseWriter, _ *http.Request) {
		if n <= 2 {
			http.Error(w, "deploying", http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	res, err := c.Deliver(t.Context(), target(srv.URL), []byte(testBody))
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 3 || res.Status != 200 || srv.hits.Load() != 3 {
		t.Errorf("result %+v, hits %d", res, srv.hits.Load())
	}
	// Jitter is the identity in tests: the backoffs are the exponential caps.
	if got, want := clk.Sleeps(), []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}; !reflect.DeepEqual(got, want) {
		t.Errorf("sleeps %v, want %v", got, want)
	}
	if res.Elapsed != 600*time.Millisecond {
		t.Errorf("elapsed on the fake clock %v, want 600ms", res.Elapsed)
	}
}

func TestDeliverRetryAfter(t *testing.T) {
	clk := newFakeClock()
	for _, tc := range []struct {
		name   string
		status int
		header func() string
		want   time.Duration
	}{
		{"429 seconds", http.StatusTooManyRequests, func() string { return "3" }, 3 * time.Second},
		{"503 seconds", http.StatusServiceUnavailable, func() string { return "12" }, 12 * time.Second},
		{"429 http-date", http.StatusTooManyRequests, func() string {
			return clk.Now().Add(7 * time.Second).UTC().Format(http.TimeFormat)
		}, 7 * time.Second},
		{"capped", http.StatusTooManyRequests, func() string { return "3600" }, DefaultMaxRetryAfter},
		{"date in the past is no wait", http.StatusServiceUnavailable, func() string {
			return clk.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
		}, 200 * time.Millisecond},
		{"garbage falls back to backoff", http.StatusTooManyRequests, func() string { return "soon" }, 200 * time.Millisecond},
		{"ignored on 500", http.StatusInternalServerError, func() string { return "9" }, 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk.mu.Lock()
			clk.sleeps = nil
			clk.mu.Unlock()
			c := newTestClient(t, testOptions(clk))
			srv := newServer(t, func(_ *server, n int64, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", tc.header())
					w.WriteHeader(tc.status)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			res, err := c.Deliver(t.Context(), target(srv.URL), []byte(testBody))
			if err != nil || res.Attempts != 2 {
				t.Fatalf("Deliver = %+v, %v", res, err)
			}
			if got := clk.Sleeps(); len(got) != 1 || got[0] != tc.want {
				t.Errorf("waited %v, want [%v]", got, tc.want)
			}
		})
	}
}

func TestDeliverTimeoutRetried(t *testing.T) {
	o := testOptions(newFakeClock())
	o.Timeout = 100 * time.Millisecond
	c := newTestClient(t, o)
	srv := newServer(t, func(s *server, n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			s.block(r)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	res, err := c.Deliver(t.Context(), target(srv.URL), []byte(testBody))
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || res.Status != 200 {
		t.Errorf("result %+v", res)
	}
}

func TestDeliverNotRetried(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 410, 301, 302, 307} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			clk := newFakeClock()
			c := newTestClient(t, testOptions(clk))
			srv := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/moved" {
					t.Error("redirect was followed")
				}
				if code >= 300 && code < 400 {
					w.Header().Set("Location", "/moved")
				}
				w.WriteHeader(code)
				io.WriteString(w, "nope")
			})
			res, err := c.Deliver(t.Context(), target(srv.URL), []byte(testBody))
			var se *StatusError
			if !errors.As(err, &se) || se.Code != code {
				t.Fatalf("Deliver error = %v, want a *StatusError %d", err, code)
			}
			if IsRetryable(err) || res.Attempts != 1 || srv.hits.Load() != 1 || len(clk.Sleeps()) != 0 {
				t.Errorf("retried: result %+v, hits %d, sleeps %v", res, srv.hits.Load(), clk.Sleeps())
			}
			if !strings.Contains(err.Error(), "not retryable") || !strings.Contains(err.Error(), fmt.Sprint(code)) || !strings.Contains(err.Error(), `"nope"`) {
				t.Errorf("error message %q", err)
			}
		})
	}
}

func TestDeliverAttemptsBounded(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(clk)
	o.MaxAttempts = 5
	o.BackoffBase = time.Second
	o.BackoffMax = 3 * time.Second
	c := newTestClient(t, o)
	srv := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	res, err := c.Deliver(t.Context(), target(srv.URL), []byte(testBody))
	if err == nil || res.Attempts != 5 || srv.hits.Load() != 5 || res.Status != 503 {
		t.Fatalf("Deliver = %+v, %v; hits %d", res, err, srv.hits.Load())
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}; !reflect.DeepEqual(clk.Sleeps(), want) {
		t.Errorf("backoffs %v, want %v", clk.Sleeps(), want)
	}
	if !strings.Contains(err.Error(), "after 5 attempt(s): attempts exhausted, last: webhook answered 503 Service Unavailable") {
		t.Errorf("error message %q", err)
	}
}

func TestBackoffFullJitter(t *testing.T) {
	c := newTestClient(t, Options{BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second})
	for n := 1; n <= 80; n++ {
		ceil := min(time.Second, 100*time.Millisecond<<min(n-1, 20))
		for range 20 {
			if d := c.backoff(n); d < 0 || d > ceil {
				t.Fatalf("backoff(%d) = %v, outside [0, %v]", n, d, ceil)
			}
		}
	}
}

func TestDeliverConnectionRefusedRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	o := testOptions(newFakeClock())
	o.MaxAttempts = 3
	c := newTestClient(t, o)
	res, err := c.Deliver(t.Context(), target("http://"+addr), []byte(testBody))
	if err == nil || res.Attempts != 3 || res.Status != 0 {
		t.Fatalf("Deliver = %+v, %v", res, err)
	}
	if !IsRetryable(err) || strings.Contains(err.Error(), "http://") {
		t.Errorf("error %q: want retryable, without the URL", err)
	}
}

func TestDeliverCanceledDuringBackoff(t *testing.T) {
	clk := newFakeClock()
	clk.block = make(chan time.Duration, 1)
	c := newTestClient(t, testOptions(clk))
	srv := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	ctx, cancel := context.WithCancel(t.Context())
	type out struct {
		res Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := c.Deliver(ctx, target(srv.URL), []byte(testBody))
		done <- out{res, err}
	}()
	<-clk.block // Deliver is in its first backoff
	cancel()
	o := <-done
	if !errors.Is(o.err, context.Canceled) || IsRetryable(o.err) || o.res.Attempts != 1 || srv.hits.Load() != 1 {
		t.Fatalf("Deliver = %+v, %v; hits %d", o.res, o.err, srv.hits.Load())
	}
	if !strings.Contains(o.err.Error(), "last attempt: webhook answered 500") {
		t.Errorf("error %q does not name the last attempt", o.err)
	}
}

func TestDeliverCanceledInFlight(t *testing.T) {
	c := newTestClient(t, testOptions(newFakeClock()))
	arrived := make(chan struct{}, 1)
	srv := newServer(t, func(s *server, _ int64, _ http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		s.block(r)
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := c.Deliver(ctx, target(srv.URL), []byte(testBody))
		done <- err
	}()
	<-arrived
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || IsRetryable(err) || srv.hits.Load() != 1 {
		t.Fatalf("Deliver error %v, hits %d", err, srv.hits.Load())
	}
	var te *TimeoutError
	if errors.As(err, &te) {
		t.Errorf("caller cancellation reported as an attempt timeout: %v", err)
	}
}

func TestDeliverRateLimit(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(clk)
	o.RateLimit = 100
	o.RateBurst = 10
	c := newTestClient(t, o)
	srv := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, _ *http.Request) {})
	tg := target(srv.URL)
	const n = 210
	for i := range n {
		if _, err := c.Deliver(t.Context(), tg, []byte(testBody)); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	// The first 10 ride the burst; the other 200 cost 1/100 s each on the clock.
	if got, want := clk.Total(), 2*time.Second; got < want-5*time.Millisecond || got > want+5*time.Millisecond {
		t.Errorf("rate waits sum to %v for %d events at 100/s burst 10, want %v", got, n, want)
	}
	if got := len(clk.Sleeps()); got != n-10 {
		t.Errorf("%d rate waits, want %d", got, n-10)
	}
	// Another webhook has its own budget; the same webhook shares one across callers.
	before := len(clk.Sleeps())
	other := tg
	other.WebhookID = "42"
	if _, err := c.Deliver(t.Context(), other, []byte(testBody)); err != nil {
		t.Fatal(err)
	}
	if len(clk.Sleeps()) != before {
		t.Errorf("another webhook waited on this one's limiter")
	}
	if c.limiter(tg.WebhookID, clk.Now()) != c.limiter(tg.WebhookID, clk.Now()) {
		t.Errorf("one webhook, two limiters")
	}
}

func TestDeliverRateLimitCountsRetries(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(clk)
	o.RateLimit = 1
	o.RateBurst = 1
	o.BackoffBase = time.Millisecond
	o.BackoffMax = time.Millisecond
	c := newTestClient(t, o)
	srv := newServer(t, func(_ *server, n int64, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	if _, err := c.Deliver(t.Context(), target(srv.URL), []byte(testBody)); err != nil {
		t.Fatal(err)
	}
	// Backoff 1ms, then the second attempt waits for the next token: 999ms more.
	if want := []time.Duration{time.Millisecond, 999 * time.Millisecond}; !reflect.DeepEqual(clk.Sleeps(), want) {
		t.Errorf("sleeps %v, want %v", clk.Sleeps(), want)
	}
}

func TestDeliverReusesConnections(t *testing.T) {
	c := newTestClient(t, testOptions(newFakeClock()))
	srv := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"ok":true}`)
	})
	tg := target(srv.URL)
	for range 100 {
		if _, err := c.Deliver(t.Context(), tg, []byte(testBody)); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.newConn.Load(); got != 1 {
		t.Errorf("100 sequential deliveries opened %d connections, want 1", got)
	}
	// Non-2xx answers with bodies are drained, so they keep their connection too.
	bad := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, strings.Repeat("x", 10000), http.StatusNotFound)
	})
	for range 20 {
		c.Deliver(t.Context(), target(bad.URL), []byte(testBody))
	}
	if got := bad.newConn.Load(); got != 1 {
		t.Errorf("20 deliveries answered 404 opened %d connections, want 1", got)
	}

	const workers = 4
	o := testOptions(newFakeClock())
	o.Concurrency = workers
	c4 := newTestClient(t, o)
	srv4 := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, _ *http.Request) {})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range 50 {
				if _, err := c4.Deliver(t.Context(), target(srv4.URL), []byte(testBody)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Not exactly workers: net/http may dial for a request while another's connection is on its
	// way back to the idle pool. What matters is that connections are reused, not per request.
	if got := srv4.newConn.Load(); got > 2*workers {
		t.Errorf("%d workers × 50 deliveries opened %d connections, want at most %d", workers, got, 2*workers)
	}
}

func TestDeliverBadTarget(t *testing.T) {
	c := newTestClient(t, testOptions(newFakeClock()))
	for _, u := range []string{"", "ftp://example.com/", "example.com/hook", "http:///path"} {
		res, err := c.Deliver(t.Context(), target(u), []byte(testBody))
		var te *TargetError
		if !errors.As(err, &te) || IsRetryable(err) || res.Attempts != 0 {
			t.Errorf("Deliver(%q) = %+v, %v; want a *TargetError and no attempt", u, res, err)
		}
	}
}

func TestDeliverRateLimitInfinite(t *testing.T) {
	clk := newFakeClock()
	o := testOptions(clk)
	o.RateLimit = math.Inf(1)
	o.RateBurst = 1
	c := newTestClient(t, o)
	srv := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, _ *http.Request) {})
	for range 50 {
		if _, err := c.Deliver(t.Context(), target(srv.URL), nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(clk.Sleeps()) != 0 {
		t.Errorf("unlimited rate slept %v", clk.Sleeps())
	}
}

// expiringCtx is a context whose Err turns non-nil after a number of calls, as a worker's lease
// context does when its clock passes the deadline between two checks.
type expiringCtx struct {
	context.Context
	calls, after int
}

func (c *expiringCtx) Err() error {
	c.calls++
	if c.calls > c.after {
		return context.DeadlineExceeded
	}
	return nil
}

// TestDeliverChecksTheContextRightBeforeSending: a context that ends after the rate-limit wait
// stops the attempt before any byte leaves.
func TestDeliverChecksTheContextRightBeforeSending(t *testing.T) {
	clk := newFakeClock()
	srv := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, _ *http.Request) {})
	c := newTestClient(t, testOptions(clk))
	ctx := &expiringCtx{Context: t.Context(), after: 1} // the rate-limit wait's check passes
	if _, err := c.Deliver(ctx, target(srv.URL), []byte(testBody)); err == nil {
		t.Fatal("Deliver succeeded with a context that had ended")
	}
	if srv.hits.Load() != 0 {
		t.Fatalf("the webhook got %d requests after the context ended", srv.hits.Load())
	}
}

// TestWriteBoundConnReadsTheClock: a connection whose write-by time has passed refuses to write
// at once, even where the runtime's deadline timer has not fired yet (it is not set here at all).
func TestWriteBoundConnReadsTheClock(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &writeBoundConn{Conn: a}
	c.setWriteBy(time.Now().Add(-time.Millisecond))
	if n, err := c.Write([]byte("late")); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past the bound: %d, %v", n, err)
	}
	c.setWriteBy(time.Time{})
	go io.Copy(io.Discard, b)
	if _, err := c.Write([]byte("unbounded")); err != nil {
		t.Fatalf("write without a bound: %v", err)
	}
}
