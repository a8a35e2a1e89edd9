// Package testwait is how the daemon's tests wait for something another goroutine or process
// does: on a signal (a channel) with a timeout, or, where the system gives no signal to wait on
// (a row in a database, a file another process writes), on a condition checked with backoff
// until a deadline. Tests use it instead of writing their own loops around time.Sleep.
package testwait

import (
	"testing"
	"time"
)

// DefaultTimeout bounds a wait when the test names none.
const DefaultTimeout = 60 * time.Second

// Recv waits for a value from ch and returns it; after timeout (DefaultTimeout if 0) or when
// the test's context ends, the test fails.
func Recv[T any](t testing.TB, ch <-chan T, timeout time.Duration) T {
	t.Helper()
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out after %v waiting for a value on the channel", timeout)
	case <-t.Context().Done():
		t.Fatalf("test ended waiting for a value on the channel")
	}
	var zero T
	return zero
}

// For checks cond until it is true: at once, then with a backoff from 1ms doubling to 50ms.
// After timeout (DefaultTimeout if 0) the test fails, saying what it waited for.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	deadline := time.Now().Add(timeout)
	backoff := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-t.Context().Done():
			timer.Stop()
			t.Fatalf("test ended waiting for %s", what)
		}
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}
