package index

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/indextest"
)

func openTopicLog(t *testing.T, dir, topic string, parts int32) *engine.Log {
	t.Helper()
	l, err := engine.Open(engine.Options{
		Dir: filepath.Join(dir, topic), Topic: topic, Partitions: parts, SegmentBytes: 256 << 10,
		MaxBatchBytes: 16 << 10, Retention: -1, Sync: engine.SyncNever,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestIndexTopics: an index of two topics (engine.Topics) holds each topic's partitions under
// its ordinal: its lookups in topic i are those of an index of topic i alone, it verifies clean,
// it records its topic list, and an index of one topic or another list is refused.
func TestIndexTopics(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	local, mirror := openTopicLog(t, dir, "delivery_log", 3), openTopicLog(t, dir, "dc2.delivery_log", 3)
	for i, l := range []*engine.Log{local, mirror} {
		spec := baseSpec()
		spec.Events, spec.Seed = 3000, uint64(11+i)
		if _, err := indextest.Generate(ctx, l, spec); err != nil {
			t.Fatal(err)
		}
	}
	ts, err := engine.NewTopics(ctx, local, mirror)
	if err != nil {
		t.Fatal(err)
	}
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"), Retention: -1})
	build(t, ix, ts)
	if got := ix.Topics(); !slices.Equal(got, []string{"delivery_log", "dc2.delivery_log"}) || ix.Partitions() != 6 {
		t.Fatalf("meta: topics %v, %d partitions; want both topics, 6", got, ix.Partitions())
	}
	verifyClean(t, ix, ts)
	lag, err := ix.Lag(ctx, ts)
	if err != nil || len(lag) != 6 {
		t.Fatalf("Lag = %v, %v; want 6 partitions", lag, err)
	}

	// Each topic alone, in an index of its own: the same batches.
	for i, l := range []*engine.Log{local, mirror} {
		one := openIndex(t, Options{Dir: filepath.Join(dir, fmt.Sprintf("one%d", i)), Retention: -1})
		build(t, one, l)
		for w := range 20 {
			key := indextest.Webhook(w)
			p := engine.PartitionFor(key, 3)
			from, to := t0.Add(10*time.Minute).UnixMilli(), t0.Add(70*time.Minute).UnixMilli()
			want, err := one.LookupPartition(ctx, l, p, key, from, to)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ix.LookupPartition(ctx, ts, engine.Partition(i, p, 3), key, from, to)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got.Offsets) != fmt.Sprint(want.Offsets) {
				t.Fatalf("topic %d webhook %d: %v in the two-topic index, %v alone", i, w, got.Offsets, want.Offsets)
			}
			if i == 0 {
				if got, err := ix.Lookup(ctx, ts, key, from, to); err != nil || fmt.Sprint(got.Offsets) != fmt.Sprint(want.Offsets) || got.Partition != p {
					t.Fatalf("Lookup looks in the first topic: %v %v, want partition %d %v", got, err, p, want.Offsets)
				}
			}
		}
		// An index of one topic refuses the two, naming what to do.
		_, err := one.LookupPartition(ctx, ts, 0, indextest.Webhook(0), 0, 1)
		if !errors.Is(err, ErrTopics) || !strings.Contains(err.Error(), "rebuild") || !strings.Contains(err.Error(), "dc2.delivery_log") {
			t.Fatalf("one-topic index, two topics: %v, want a TopicsError saying rebuild", err)
		}
		one.Close()
	}
	// The two-topic index refuses one topic, and the topics in another order.
	if _, err := ix.LookupPartition(ctx, local, 0, indextest.Webhook(0), 0, 1); !errors.Is(err, ErrTopics) {
		t.Fatalf("two-topic index, one topic: %v, want a TopicsError", err)
	}
	swapped, err := engine.NewTopics(ctx, mirror, local)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Build(ctx, swapped, BuildOptions{}); !errors.Is(err, ErrTopics) {
		t.Fatalf("build with the topics swapped: %v, want a TopicsError", err)
	}
	// The list survives a reopen.
	ix.Close()
	ix = openIndex(t, Options{Dir: filepath.Join(dir, "index"), ReadOnly: true})
	if got := ix.Topics(); !slices.Equal(got, []string{"delivery_log", "dc2.delivery_log"}) {
		t.Fatalf("reopened: topics %v", got)
	}
	verifyClean(t, ix, ts)
}
