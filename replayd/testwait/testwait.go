// Package testwait is how the project's tests wait for something another goroutine or process
// does: on a signal (a channel) with a timeout, or, where the system gives no signal to wait on
// (a row in a database, a file another process writes), on a condition checked with backoff
// until a deadline. Tests use it instead of writing their own loops around time.Sleep.
package testwait

import (
	"fmt"
	"runtime"
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
	if !poll(t, timeout, what, cond) {
		t.Fatalf("timed out after %v waiting for %s", orDefault(timeout), what)
	}
}

// Goroutines waits, as For does, until at most n goroutines are left: those a test's subject
// started have returned (a goroutine that signalled its end may not have yet). After timeout
// the test fails with every goroutine's stack.
func Goroutines(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	what := fmt.Sprintf("at most %d goroutines", n)
	if !poll(t, timeout, what, func() bool { return runtime.NumGoroutine() <= n }) {
		buf := make([]byte, 1<<16)
		t.Fatalf("timed out after %v waiting for %s, %d left:\n%s", orDefault(timeout), what, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	}
}

func orDefault(timeout time.Duration) time.Duration {
	if timeout == 0 {
		return DefaultTimeout
	}
	return timeout
}

// poll checks cond until it is true (true) or timeout has passed (false); the test ending
// meanwhile fails it.
func poll(t testing.TB, timeout time.Duration, what string, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(orDefault(timeout))
	backoff := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
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
	return true
}
