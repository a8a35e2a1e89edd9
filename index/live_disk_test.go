package index

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/diskreserve"
	"github.com/replay/replay/index/indextest"
	"github.com/replay/replay/index/pebblelog"
	"github.com/replay/replay/replayd/testwait"
)

// liveExact checks that Live's lookup of a webhook's hour holds every batch the log has for it.
func liveExact(t *testing.T, live *Live, src engine.Source, spec indextest.Spec) {
	t.Helper()
	wh := indextest.Webhook(3)
	from, to := spec.Start.Add(10*time.Minute).UnixMilli(), spec.Start.Add(70*time.Minute).UnixMilli()
	p := engine.PartitionFor(wh, 2)
	got, err := live.Locate(t.Context(), p, wh, from, to)
	if err != nil {
		t.Fatalf("Locate: %v", err)
	}
	truth, err := indextest.Truth(t.Context(), src, p, wh, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(truth) == 0 {
		t.Fatal("the test's window holds no event of the webhook")
	}
	for _, o := range truth {
		if !slices.Contains(got, o) {
			t.Fatalf("Locate missed batch %d (got %d batches, the log has %d)", o, len(got), len(truth))
		}
	}
}

// caughtUp says whether every partition's checkpoint is the log's end.
func caughtUp(t *testing.T, live *Live, src engine.Source) bool {
	t.Helper()
	lag, err := live.Lag(t.Context())
	if err != nil {
		t.Fatalf("Lag: %v", err)
	}
	for _, l := range lag {
		if l.Lag != 0 {
			return false
		}
	}
	return len(lag) > 0
}

// A disk below the index's reserve stops the builder before Pebble could meet a full disk: Live
// is degraded and says why, lookups stay exact (the log is scanned where the index has nothing),
// and once space returns the builder runs again by itself and catches up.
func TestLiveDegradesOnALowDiskAndRecovers(t *testing.T) {
	data := t.TempDir()
	l := openLog(t, filepath.Join(data, "log"), 2, nil)
	defer l.Close()
	spec := baseSpec()
	spec.Events = 3000
	if _, err := indextest.Generate(t.Context(), l, spec); err != nil {
		t.Fatal(err)
	}
	fs := diskreserve.NewFreeFS(vfs.Default, 1<<20)
	live, err := OpenLive(LiveOptions{DataDir: data, Source: l, Retention: -1, Poll: time.Hour,
		FS: fs, DiskReserve: 64 << 20, RetryMin: 5 * time.Millisecond, RetryMax: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if err := live.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the builder to fail at least twice on the low disk", func() bool {
		h := live.Health()
		return h.Degraded && h.Failures >= 2
	})
	h := live.Health()
	if !strings.Contains(h.Err, "below the reserve of 64 MiB") || !strings.Contains(h.Err, "1.0 MiB free") || h.Since.IsZero() {
		t.Fatalf("health while the disk is low: %+v; want the reserve, the free space and since when", h)
	}
	if caughtUp(t, live, l) {
		t.Fatal("the builder committed below the disk reserve")
	}
	liveExact(t, live, l, spec)

	fs.Free.Store(1 << 40)
	testwait.For(t, 10*time.Second, "the builder to run again and catch up", func() bool {
		h := live.Health()
		return !h.Degraded && h.Recovered == 1 && caughtUp(t, live, l)
	})
	if h := live.Health(); h.Err != "" || h.Failures != 0 {
		t.Fatalf("health after recovery: %+v", h)
	}
	liveExact(t, live, l, spec)
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
}

// After a Pebble fatal error the index refuses work; Live reopens its directory (once the disk
// has room) and builds on, and lookups are exact again without a restart.
func TestLiveReopensAfterAFatalError(t *testing.T) {
	data := t.TempDir()
	l := openLog(t, filepath.Join(data, "log"), 2, nil)
	defer l.Close()
	spec := baseSpec()
	spec.Events = 2000
	if _, err := indextest.Generate(t.Context(), l, spec); err != nil {
		t.Fatal(err)
	}
	live, err := OpenLive(LiveOptions{DataDir: data, Source: l, Retention: -1, Poll: time.Hour,
		RetryMin: 5 * time.Millisecond, RetryMax: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if err := live.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the first catch-up", func() bool { return caughtUp(t, live, l) })
	live.mu.RLock()
	old := live.ix
	live.mu.RUnlock()
	// What Pebble does when a commit cannot reach its WAL (see TestPebbleFatalErrorIsTheIndexsError).
	func() (err error) {
		defer pebblelog.Recover(&err)
		old.plog.Fatalf("pebble: fatal commit error: %v", errors.New("no space left on device"))
		return nil
	}()
	// New events: the builder's next commit meets the fatal error.
	spec.Start = spec.Start.Add(3 * time.Hour)
	if _, err := indextest.Generate(t.Context(), l, spec); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the index to be reopened and the builder to catch up", func() bool {
		live.mu.RLock()
		reopened := live.ix != old
		live.mu.RUnlock()
		return reopened && live.Health().Recovered >= 1 && caughtUp(t, live, l)
	})
	liveExact(t, live, l, spec)
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
}
