package localdb

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestRunSerializesWrapsAndCloses(t *testing.T) {
	errClosed, errBare, errOther := errors.New("closed"), errors.New("expected outcome"), errors.New("broken")
	db, err := Open(Options{Dir: t.TempDir(), Store: "teststore", ErrClosed: errClosed, Bare: []error{errBare}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Run(context.Background(), "op", func() error { return errBare }); err != errBare {
		t.Fatalf("a bare error came back as %v", err)
	}
	if err := db.Run(context.Background(), "op", func() error { return errOther }); !errors.Is(err, errOther) || !strings.HasPrefix(err.Error(), "teststore: op: ") {
		t.Fatalf("an error came back as %v", err)
	}
	// While one operation runs, another waits, and gives up when its context does.
	inside, release := make(chan struct{}), make(chan struct{})
	go db.Run(context.Background(), "long", func() error { close(inside); <-release; return nil })
	<-inside
	ctx, cancel := context.WithCancel(context.Background())
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
	if err := db.Run(context.Background(), "late", func() error { return nil }); !errors.Is(err, errClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
}
