package localdb

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/replay/replay/index/pebblelog"
)

func TestRunSerializesWrapsAndCloses(t *testing.T) {
	errClosed, errBare, errOther := errors.New("closed"), errors.New("expected outcome"), errors.New("broken")
	db, err := Open(Options{Dir: t.TempDir(), Store: "teststore", ErrClosed: errClosed, Bare: []error{errBare}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Run(t.Context(), "op", func() error { return errBare }); err != errBare {
		t.Fatalf("a bare error came back as %v", err)
	}
	if err := db.Run(t.Context(), "op", func() error { return errOther }); !errors.Is(err, errOther) || !strings.HasPrefix(err.Error(), "teststore: op: ") {
		t.Fatalf("an error came back as %v", err)
	}
	// While one operation runs, another waits, and gives up when its context does.
	inside, release := make(chan struct{}), make(chan struct{})
	go db.Run(t.Context(), "long", func() error { close(inside); <-release; return nil })
	<-inside
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := db.Run(ctx, "waiting", func() error { t.Error("ran during another operation"); return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting with a canceled context: %v", err)
	}
	close(release)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := db.Run(t.Context(), "late", func() error { return nil }); !errors.Is(err, errClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
}

// A Pebble fatal error inside an operation is that operation's error, and every later one's,
// not a panic of the process.
func TestRunReportsAPebbleFatalError(t *testing.T) {
	errUnavailable := errors.New("unavailable")
	db, err := Open(Options{Dir: t.TempDir(), Store: "teststore", ErrClosed: errors.New("closed"), ErrUnavailable: errUnavailable})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var fe *pebblelog.FatalError
	err = db.Run(t.Context(), "write", func() error {
		db.plog.Fatalf("pebble: fatal commit error: %s", "no space left on device")
		return nil
	})
	if !errors.As(err, &fe) || fe.DB != "teststore" || !errors.Is(err, errUnavailable) || !strings.HasPrefix(err.Error(), "teststore: write: ") {
		t.Fatalf("Run with a fatal error: %v", err)
	}
	if err := db.Run(t.Context(), "read", func() error { return nil }); !errors.As(err, &fe) {
		t.Fatalf("Run after the fatal error: %v, want it", err)
	}
}
