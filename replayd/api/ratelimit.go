package api

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// limiter is the per-app fixed-window rate limit of replay requests: an app's window opens with
// its first request and lasts RateWindow; within it at most RateLimit requests pass. It is per
// process: several replayd instances behind a load balancer each allow RateLimit.
type limiter struct {
	limit  int
	window time.Duration

	mu      sync.Mutex
	buckets map[int64]*bucket
}

type bucket struct {
	start time.Time
	n     int
}

// pruneAt is the number of tracked apps above which expired windows are dropped.
const pruneAt = 4096

func newLimiter(limit int, window time.Duration) *limiter {
	return &limiter{limit: limit, window: window, buckets: map[int64]*bucket{}}
}

// take counts one request of appID at now. It reports whether the request may proceed, how many
// remain in the window, and when the window resets.
func (l *limiter) take(appID int64, now time.Time) (ok bool, remaining int, reset time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[appID]
	if b == nil || !now.Before(b.start.Add(l.window)) {
		if b == nil && len(l.buckets) >= pruneAt {
			for id, old := range l.buckets {
				if !now.Before(old.start.Add(l.window)) {
					delete(l.buckets, id)
				}
			}
		}
		b = &bucket{start: now}
		l.buckets[appID] = b
	}
	reset = b.start.Add(l.window)
	if b.n >= l.limit {
		return false, 0, reset
	}
	b.n++
	return true, l.limit - b.n, reset
}

// admit counts one request of appID at now and sets the answer's x-rate-limit-limit,
// -remaining and -reset (Unix seconds) headers; past the limit it answers 429/88 and reports
// false.
func (l *limiter) admit(w http.ResponseWriter, appID int64, now time.Time) bool {
	ok, remaining, reset := l.take(appID, now)
	h := w.Header()
	h.Set("x-rate-limit-limit", strconv.Itoa(l.limit))
	h.Set("x-rate-limit-remaining", strconv.Itoa(remaining))
	h.Set("x-rate-limit-reset", strconv.FormatInt(reset.Unix(), 10))
	if !ok {
		writeError(w, apiError{http.StatusTooManyRequests, CodeRateLimited, msgRateLimited})
	}
	return ok
}
