package mysqldb_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/mysqldb"
)

func TestIsRetryable(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&mysql.MySQLError{Number: 1213, Message: "Deadlock found"}, true},
		{&mysql.MySQLError{Number: 1205, Message: "Lock wait timeout exceeded"}, true},
		{fmt.Errorf("lease: %w", &mysql.MySQLError{Number: 1213}), true},
		{&mysql.MySQLError{Number: 1062, Message: "Duplicate entry"}, false},
		{&mysql.MySQLError{Number: 1146, Message: "Table doesn't exist"}, false},
		{mysql.ErrInvalidConn, false},
		{context.Canceled, false},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{job.ErrLeaseLost, false},
		{job.ErrActiveJobExists, false},
		{errors.New("other"), false},
	}
	for _, c := range cases {
		if got := mysqldb.IsRetryable(c.err); got != c.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestRetry(t *testing.T) {
	deadlock := &mysql.MySQLError{Number: 1213}
	n := 0
	err := mysqldb.Retry(context.Background(), mysqldb.RetryPolicy{InitialBackoff: time.Microsecond}, func(context.Context) error {
		n++
		if n < 3 {
			return deadlock
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("Retry: %v after %d attempts, want success on the 3rd", err, n)
	}
	n = 0
	err = mysqldb.Retry(context.Background(), mysqldb.RetryPolicy{MaxAttempts: 4, InitialBackoff: time.Microsecond}, func(context.Context) error { n++; return deadlock })
	if !errors.Is(err, deadlock) || n != 4 {
		t.Fatalf("bounded Retry: %v after %d attempts, want the deadlock after 4", err, n)
	}
	n = 0
	err = mysqldb.Retry(context.Background(), mysqldb.RetryPolicy{}, func(context.Context) error { n++; return job.ErrLeaseLost })
	if !errors.Is(err, job.ErrLeaseLost) || n != 1 {
		t.Fatalf("non-retryable: %v after %d attempts", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = mysqldb.Retry(ctx, mysqldb.RetryPolicy{InitialBackoff: time.Hour, MaxBackoff: time.Hour}, func(context.Context) error {
		n++
		cancel()
		return deadlock
	})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Fatalf("Retry during a canceled backoff: %v after %d attempts", err, n)
	}
}
