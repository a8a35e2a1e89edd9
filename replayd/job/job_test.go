package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestStateStringParse(t *testing.T) {
	for _, s := range AllStates {
		got, err := ParseState(s.String())
		if err != nil || got != s {
			t.Fatalf("ParseState(%q) = %v, %v", s, got, err)
		}
	}
	if s, err := ParseState("ongoing"); err != nil || s != StateOngoing {
		t.Fatalf("case-insensitive parse: %v %v", s, err)
	}
	if _, err := ParseState("RUNNING"); err == nil {
		t.Fatal("ParseState accepted RUNNING")
	}
	if State(0).String() != "State(0)" || State(0).Valid() {
		t.Fatal("zero state")
	}
	b, err := json.Marshal(Job{ID: 1095098195724595200, State: StateCanceled})
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		ID    string `json:"job_id"`
		State string `json:"state"`
	}
	if err := json.Unmarshal(b, &back); err != nil || back.ID != "1095098195724595200" || back.State != "CANCELED" {
		t.Fatalf("JSON %s -> %+v %v", b, back, err)
	}
}

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
		{ErrLeaseLost, false},
		{ErrActiveJobExists, false},
		{errors.New("other"), false},
	}
	for _, c := range cases {
		if got := IsRetryable(c.err); got != c.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestRetry(t *testing.T) {
	deadlock := &mysql.MySQLError{Number: 1213}
	n := 0
	err := Retry(context.Background(), RetryPolicy{InitialBackoff: time.Microsecond}, func(context.Context) error {
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
	err = Retry(context.Background(), RetryPolicy{MaxAttempts: 4, InitialBackoff: time.Microsecond}, func(context.Context) error { n++; return deadlock })
	if !errors.Is(err, deadlock) || n != 4 {
		t.Fatalf("bounded Retry: %v after %d attempts, want the deadlock after 4", err, n)
	}
	n = 0
	err = Retry(context.Background(), RetryPolicy{}, func(context.Context) error { n++; return ErrLeaseLost })
	if !errors.Is(err, ErrLeaseLost) || n != 1 {
		t.Fatalf("non-retryable: %v after %d attempts", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = Retry(ctx, RetryPolicy{InitialBackoff: time.Hour, MaxBackoff: time.Hour}, func(context.Context) error {
		n++
		cancel()
		return deadlock
	})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Fatalf("Retry during a canceled backoff: %v after %d attempts", err, n)
	}
}
