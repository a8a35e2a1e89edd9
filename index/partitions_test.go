package index

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/indextest"
)

// refusedCount asserts that err is a *PartitionCountError naming the topic and both counts.
func refusedCount(t *testing.T, what string, err error, topic string, index, source int32) {
	t.Helper()
	var pe *PartitionCountError
	if !errors.As(err, &pe) || !errors.Is(err, ErrPartitionCount) {
		t.Fatalf("%s with a %d-partition source on a %d-partition index: %v, want a *PartitionCountError", what, source, index, err)
	}
	if pe.Topic != topic || pe.Index != index || pe.Source != source {
		t.Fatalf("%s: %+v, want topic %q, index %d, source %d", what, pe, topic, index, source)
	}
	msg := err.Error()
	for _, s := range []string{fmt.Sprintf("%q has %d partitions", topic, source), fmt.Sprintf("built with %d", index)} {
		if !strings.Contains(msg, s) {
			t.Fatalf("%s: %q does not say %q", what, msg, s)
		}
	}
}

// checkRefused runs every entry point given a source with src, whose partition count is not the
// index's, and requires each to refuse.
func checkRefused(t *testing.T, ix *Index, src engine.Source, index, source int32) {
	t.Helper()
	ctx := context.Background()
	topic := src.Topic()
	_, err := ix.Lookup(ctx, src, indextest.Webhook(0), t0.UnixMilli(), t0.Add(3*time.Hour).UnixMilli())
	refusedCount(t, "Lookup", err, topic, index, source)
	_, err = ix.LookupPartition(ctx, src, 0, indextest.Webhook(0), t0.UnixMilli(), t0.Add(3*time.Hour).UnixMilli())
	refusedCount(t, "LookupPartition", err, topic, index, source)
	if !ix.Options().ReadOnly { // a read-only index refuses to build anyway
		refusedCount(t, "Build", ix.Build(ctx, src, BuildOptions{}), topic, index, source)
		refusedCount(t, "Build of partition 0", ix.Build(ctx, src, BuildOptions{Partitions: []int32{0}}), topic, index, source)
		refusedCount(t, "BuildPartition", ix.BuildPartition(ctx, src, 0, false, nil), topic, index, source)
	}
	_, err = ix.Verify(ctx, src, nil, nil)
	refusedCount(t, "Verify", err, topic, index, source)
	_, err = ix.EnforceRetention(ctx, src)
	refusedCount(t, "EnforceRetention", err, topic, index, source)
	_, err = ix.Lag(ctx, src)
	refusedCount(t, "Lag", err, topic, index, source)
}

// TestIndexPartitionCount: the first build records the topic's partition count; a source with
// another count is refused by every entry point; an index from before the count was recorded
// keeps working and adopts the count of its next build.
func TestIndexPartitionCount(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l4 := openLog(t, filepath.Join(dir, "log4"), 4, nil)
	defer l4.Close()
	l3 := openLog(t, filepath.Join(dir, "log3"), 3, nil)
	defer l3.Close()
	spec := baseSpec()
	spec.Events = 1500
	for _, l := range []*engine.Log{l4, l3} {
		if _, err := indextest.Generate(ctx, l, spec); err != nil {
			t.Fatal(err)
		}
	}
	ixDir := filepath.Join(dir, "index")
	ix := openIndex(t, Options{Dir: ixDir, Retention: -1})
	if n := ix.Partitions(); n != 0 {
		t.Fatalf("a new index has partition count %d, want 0 (none recorded)", n)
	}
	build(t, ix, l4)
	if n := ix.Partitions(); n != 4 {
		t.Fatalf("after the first build: partition count %d, want 4", n)
	}
	before := allEntries(t, ix)
	checkRefused(t, ix, l3, 4, 3)
	// Nothing was written by the refused calls; the right source still works.
	if after := allEntries(t, ix); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("a refused call changed the index")
	}
	verifyClean(t, ix, l4)
	if _, err := ix.Lookup(ctx, l4, indextest.Webhook(0), t0.UnixMilli(), t0.Add(3*time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	// The count is in the meta: it survives a reopen, read-only too.
	ix.Close()
	ix = openIndex(t, Options{Dir: ixDir, ReadOnly: true})
	if n := ix.Partitions(); n != 4 {
		t.Fatalf("reopened: partition count %d, want 4", n)
	}
	checkRefused(t, ix, l3, 4, 3)
	ix.Close()

	// An old index: its meta without the count (as written before it was recorded).
	ix = openIndex(t, Options{Dir: ixDir})
	if err := ix.db.Set([]byte(keyMeta), []byte(`{"version":1,"bucket_width_ms":60000}`), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	ix = openIndex(t, Options{Dir: ixDir})
	if n := ix.Partitions(); n != 0 {
		t.Fatalf("old meta: partition count %d, want 0", n)
	}
	// Lookups and verify of an old index are not refused (it does not know its count) ...
	if _, err := ix.Lookup(ctx, l4, indextest.Webhook(0), t0.UnixMilli(), t0.Add(3*time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	verifyClean(t, ix, l4)
	// ... and its next build adopts the source's count, after which another count is refused.
	build(t, ix, l4)
	if n := ix.Partitions(); n != 4 {
		t.Fatalf("old index after a build: partition count %d, want 4", n)
	}
	checkRefused(t, ix, l3, 4, 3)
	ix.Close()
	ix = openIndex(t, Options{Dir: ixDir})
	if n := ix.Partitions(); n != 4 {
		t.Fatalf("old index reopened after its build: partition count %d, want 4", n)
	}
	// A meta with a negative count is corrupt.
	if err := ix.db.Set([]byte(keyMeta), []byte(`{"version":1,"bucket_width_ms":60000,"partitions":-2}`), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	if _, err := Open(Options{Dir: ixDir}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a negative partition count: %v, want ErrCorrupt", err)
	}

	// Check holds the index's keys to its count.
	ix = openIndex(t, Options{Dir: filepath.Join(dir, "check"), Retention: -1})
	build(t, ix, l3)
	if err := ix.Check(); err != nil {
		t.Fatal(err)
	}
	if err := ix.db.Set(appendPartKey(nil, prefixCheckpoint, 3), make([]byte, 8), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := ix.Check(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "partition 3 in an index of 3 partitions") {
		t.Fatalf("Check with a checkpoint of partition 3 in a 3-partition index: %v", err)
	}

	// ImportPartitions refuses an index of another count.
	a := openIndex(t, Options{Dir: filepath.Join(dir, "a"), Retention: -1})
	build(t, a, l3)
	b := openIndex(t, Options{Dir: filepath.Join(dir, "b"), Retention: -1})
	build(t, b, l4)
	if _, err := a.ImportPartitions(b, func(int32) bool { return true }); !errors.Is(err, ErrPartitionCount) {
		t.Fatalf("import of a 4-partition index into a 3-partition one: %v", err)
	}
}
