package mysqldb

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQL server error numbers that abort a transaction but say nothing about the data: running the
// whole transaction again is safe and usually succeeds.
const (
	errLockWaitTimeout = 1205 // ER_LOCK_WAIT_TIMEOUT
	errDeadlock        = 1213 // ER_LOCK_DEADLOCK
)

// IsRetryable is the one place that decides whether a failed store call may be run again as a
// whole (a fresh transaction, after a short backoff). It returns true only for:
//
//   - MySQL 1213 (deadlock found; InnoDB rolled the transaction back), and
//   - MySQL 1205 (lock wait timeout; the driver rolls the rest of the transaction back).
//
// Everything else is final: nil, context cancellation and deadlines (the caller gave up), the
// stores' sentinel errors (job.ErrNotFound, job.ErrLeaseLost, job.ErrActiveJobExists, …:
// answers, not failures), other server errors (schema, syntax, constraint), and connection
// errors. Broken connections are deliberately not retried here: database/sql already retries
// driver.ErrBadConn when nothing was sent, and once a write was sent its outcome is unknown, so
// the caller (a worker polling Lease, or the API answering 503) decides.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == errDeadlock || me.Number == errLockWaitTimeout
	}
	return false
}

// RetryPolicy bounds Retry. The zero value means 8 attempts, 5ms initial backoff, 500ms cap.
type RetryPolicy struct {
	MaxAttempts    int           // total attempts including the first; default 8
	InitialBackoff time.Duration // default 5ms, doubled after each failure, with ±50% jitter
	MaxBackoff     time.Duration // default 500ms
}

// Retry runs fn until it succeeds, returns an error IsRetryable rejects, the attempts run out or
// ctx is done. It returns fn's last error (or ctx's error if ctx ended during a backoff).
func Retry(ctx context.Context, p RetryPolicy, fn func(ctx context.Context) error) error {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 8
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = 5 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 500 * time.Millisecond
	}
	backoff := p.InitialBackoff
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := fn(ctx)
		if err == nil || attempt >= p.MaxAttempts || !IsRetryable(err) {
			return err
		}
		d := backoff/2 + rand.N(backoff)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, p.MaxBackoff)
	}
}
