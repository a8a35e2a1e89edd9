package index

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/replay/replay/index/pebblelog"
)

// After Pebble reports a fatal error through its logger (in a commit, say), the index refuses
// further work with that error instead of the process panicking: the entry point that was
// running returns it, and so do every later call and Close.
//
// The fatal error is raised through the logger directly: Pebble 2.1's own reaction to a failing
// WAL (rotateWAL panics, then a deferred unlock of an unlocked mutex is a fatal runtime error)
// cannot be caught by any logger or recover, so an injected disk failure would not reach it.
func TestPebbleFatalErrorIsTheIndexsError(t *testing.T) {
	ix := openIndex(t, Options{Dir: filepath.Join(t.TempDir(), "index")})
	entry := func() (err error) {
		defer pebblelog.Recover(&err)
		ix.plog.Fatalf("pebble: fatal commit error: %v", errors.New("no space left on device"))
		return nil
	}
	var fe *pebblelog.FatalError
	if err := entry(); !errors.As(err, &fe) || fe.DB != "index" {
		t.Fatalf("entry point: %v, want the index's pebblelog.FatalError", err)
	}
	if _, _, err := ix.Checkpoint(0); !errors.As(err, &fe) {
		t.Fatalf("Checkpoint after the fatal error: %v, want it", err)
	}
	if _, err := ix.Stats(); !errors.As(err, &fe) {
		t.Fatalf("Stats after the fatal error: %v, want it", err)
	}
	if err := ix.Close(); !errors.As(err, &fe) {
		t.Fatalf("Close after the fatal error: %v, want it", err)
	}
}
