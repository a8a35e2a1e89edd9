package index

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/indextest"
)

// Live serves the data directory's index, follows a switch to a rebuilt one without a restart,
// looks events up through it, and closes idempotently.
func TestLiveFollowsARebuild(t *testing.T) {
	ctx := t.Context()
	data := t.TempDir()
	l := openLog(t, filepath.Join(data, "log"), 2, nil)
	defer l.Close()
	spec := baseSpec()
	spec.Events = 3000
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	live, err := OpenLive(LiveOptions{DataDir: data, Source: l, Retention: -1, Poll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	before := live.Dir()
	if before != filepath.Join(data, DefaultDir) {
		t.Fatalf("serving %s before any rebuild", before)
	}
	// The builder runs through the rebuild: the rebuild must leave the directory it has open.
	if err := live.Start(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := RebuildIndex(ctx, RebuildOptions{DataDir: data, Source: l, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Live == before || rep.Stats.Entries == 0 {
		t.Fatalf("rebuild report %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(before, "LOCK")); err != nil {
		t.Fatalf("the rebuild removed the index a running Live has open: %v", err)
	}
	if err := live.Follow(ctx); err != nil || live.Dir() != rep.Live {
		t.Fatalf("serving %s after the switch to %s: %v", live.Dir(), rep.Live, err)
	}
	if _, err := os.Stat(before); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the index switched from is still there after Follow: %v", err)
	}
	wh := indextest.Webhook(3)
	from, to := spec.Start.Add(10*time.Minute).UnixMilli(), spec.Start.Add(70*time.Minute).UnixMilli()
	p := engine.PartitionFor(wh, 2)
	got, err := live.Locate(ctx, p, wh, from, to)
	if err != nil {
		t.Fatal(err)
	}
	truth, err := indextest.Truth(t.Context(), l, p, wh, from, to)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range truth {
		if !slices.Contains(got, o) {
			t.Fatalf("Locate missed batch %d", o)
		}
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	if err := live.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := live.Locate(ctx, p, wh, from, to); !errors.Is(err, ErrClosed) {
		t.Fatalf("Locate after Close: %v", err)
	}
}
