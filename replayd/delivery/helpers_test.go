package delivery

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is the Now/Sleep seam: Sleep records the wait and moves the clock, without waiting.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
	// block, when set, makes Sleep report on the channel and then wait for ctx to end.
	block chan time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	f.sleeps = append(f.sleeps, d)
	f.now = f.now.Add(d)
	block := f.block
	f.mu.Unlock()
	if block != nil {
		block <- d
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (f *fakeClock) Sleeps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

func (f *fakeClock) Total() time.Duration {
	var sum time.Duration
	for _, d := range f.Sleeps() {
		sum += d
	}
	return sum
}

// testOptions are options for a local test server: private destinations allowed, fake clock,
// jitter off (the full backoff), no rate limit in the way.
func testOptions(clk *fakeClock) Options {
	return Options{
		AllowPrivate: true,
		Timeout:      5 * time.Second,
		RateLimit:    1e6,
		RateBurst:    1000,
		Now:          clk.Now,
		Sleep:        clk.Sleep,
		Jitter:       func(d time.Duration) time.Duration { return d },
	}
}

func newTestClient(t *testing.T, o Options) *Client {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// server is an httptest server on 127.0.0.1 counting requests and new connections. Handlers that
// block select on release, which is closed before the server, so Close never waits on them.
type server struct {
	*httptest.Server
	hits    atomic.Int64
	newConn atomic.Int64
	release chan struct{}
}

func newServer(t *testing.T, h func(s *server, n int64, w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{release: make(chan struct{})}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.hits.Add(1)
		h(s, n, w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.newConn.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(s.release) })
	return s
}

// block waits until the client gives up on r or the test ends.
func (s *server) block(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.release:
	}
}

// hmacB64 is the test's own signature computation, independent of Sign.
func hmacB64(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
