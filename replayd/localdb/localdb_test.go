package localdb

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/replay/replay/index/diskreserve"
	"github.com/replay/replay/index/pebblelog"
	"github.com/replay/replay/replayd/testwait"
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

// After a fatal error the database is opened again by itself (at most once a second), keeping
// what was committed before.
func TestReopensAfterAPebbleFatalError(t *testing.T) {
	errUnavailable := errors.New("unavailable")
	db, err := Open(Options{Dir: t.TempDir(), Store: "teststore", ErrClosed: errors.New("closed"), ErrUnavailable: errUnavailable})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Write(t.Context(), "set", func() error { return db.Pebble.Set([]byte("k"), []byte("v"), db.WriteOptions) }); err != nil {
		t.Fatal(err)
	}
	db.Write(t.Context(), "write", func() error {
		db.plog.Fatalf("pebble: fatal commit error: %s", "no space left on device")
		return nil
	})
	if err := db.Run(t.Context(), "read", func() error { return nil }); !errors.Is(err, errUnavailable) {
		t.Fatalf("Run right after the fatal error: %v, want ErrUnavailable", err)
	}
	testwait.For(t, 10*time.Second, "the store to be usable again", func() bool {
		return db.Run(t.Context(), "read", func() error { return nil }) == nil
	})
	var got string
	if err := db.Run(t.Context(), "get", func() error {
		v, closer, err := db.Pebble.Get([]byte("k"))
		if err != nil {
			return err
		}
		got = string(v)
		return closer.Close()
	}); err != nil || got != "v" {
		t.Fatalf("after reopening: %q, %v; want what was committed before", got, err)
	}
}

// Below the disk reserve a write is refused as unavailable before it runs, naming the reserve;
// reads go on; once space returns, writes do too.
func TestWriteRefusedBelowTheDiskReserve(t *testing.T) {
	errUnavailable := errors.New("unavailable")
	fs := diskreserve.NewFreeFS(vfs.Default, 1<<30)
	db, err := Open(Options{Dir: t.TempDir(), Store: "teststore", ErrClosed: errors.New("closed"), ErrUnavailable: errUnavailable, FS: fs, DiskReserve: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Write(t.Context(), "set", func() error { return nil }); err != nil {
		t.Fatalf("write with 1 GiB free: %v", err)
	}
	fs.Free.Store(10 << 20)
	ran := false
	err = db.Write(t.Context(), "set", func() error { ran = true; return nil })
	if ran || !errors.Is(err, errUnavailable) || !errors.Is(err, diskreserve.ErrLowDisk) || !strings.Contains(err.Error(), "teststore: set: ") {
		t.Fatalf("write with 10 MiB free below a 64 MiB reserve: ran %v, %v", ran, err)
	}
	if err := db.Run(t.Context(), "get", func() error { return nil }); err != nil {
		t.Fatalf("read with a low disk: %v", err)
	}
	fs.Free.Store(1 << 30)
	if err := db.Write(t.Context(), "set", func() error { return nil }); err != nil {
		t.Fatalf("write once space returned: %v", err)
	}
}
