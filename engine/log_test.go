package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/enginetest"
	"github.com/replay/replay/segment"
)

func openLog(t *testing.T, opts engine.Options) *engine.Log {
	t.Helper()
	l, err := engine.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// embeddedFactory writes the suite's batches into an embedded log whose segments roll every
// couple of kilobytes, so reads cross segment boundaries.
func embeddedFactory(t *testing.T, topic string, data [][]enginetest.Batch) enginetest.Harness {
	l := openLog(t, engine.Options{Dir: t.TempDir(), Topic: topic, Partitions: int32(len(data)), SegmentBytes: 2048, IndexIntervalBytes: 256, Retention: -1})
	ctx := context.Background()
	for p, batches := range data {
		for _, b := range batches {
			if _, err := l.AppendBatches(ctx, int32(p), enginetest.Encode(t, b, 0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	return enginetest.Harness{Source: l, Append: func(t *testing.T, p int32, b enginetest.Batch) {
		if _, err := l.AppendBatches(ctx, p, enginetest.Encode(t, b, 0)); err != nil {
			t.Error(err)
		}
	}}
}

func TestLogConformance(t *testing.T) { enginetest.Exercise(t, embeddedFactory) }

func TestLogAppendRoutesAndReopens(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l := openLog(t, engine.Options{Dir: dir, Partitions: 4, SegmentBytes: 4096})
	var recs []engine.Record
	for i := 0; i < 500; i++ {
		recs = append(recs, engine.Record{Key: []byte(fmt.Sprint(1000 + i%17)), Value: []byte(fmt.Sprintf(`{"n":%d}`, i)), Timestamp: 1_763_800_000_000 + int64(i)})
	}
	got, err := l.Append(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	next := map[int32]int64{}
	for i, a := range got {
		if want := engine.PartitionFor(recs[i].Key, 4); a.Partition != want {
			t.Fatalf("record %d went to partition %d, its key belongs in %d", i, a.Partition, want)
		}
		if a.Offset != next[a.Partition] {
			t.Fatalf("record %d got offset %d in partition %d, want %d", i, a.Offset, a.Partition, next[a.Partition])
		}
		next[a.Partition]++
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Open(engine.Options{Dir: dir, Partitions: 5}); err == nil || !strings.Contains(err.Error(), "created with 4 partitions") {
		t.Fatalf("reopening with another partition count: %v", err)
	}
	l2 := openLog(t, engine.Options{Dir: dir})
	for p, n := range next {
		b, err := l2.Bounds(ctx, p)
		if err != nil || b.End != n {
			t.Fatalf("after reopen, partition %d bounds %+v, %v; want end %d", p, b, err, n)
		}
	}
	// Every record reads back where Append said it went.
	for i, a := range got {
		var found bool
		err := l2.ReadBatches(ctx, a.Partition, []int64{a.Offset}, func(b *segment.Batch) error {
			var rr segment.RecordReader
			if err := rr.Reset(b); err != nil {
				return err
			}
			for rr.Next() {
				if r := rr.Record(); r.Offset == a.Offset {
					found = string(r.Value) == string(recs[i].Value) && string(r.Key) == string(recs[i].Key)
				}
			}
			return rr.Err()
		})
		if err != nil || !found {
			t.Fatalf("record %d not read back at %+v: %v", i, a, err)
		}
	}
	if err := l2.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestLogOptionsValidateReportsEverything(t *testing.T) {
	o := engine.Options{Partitions: -1, SegmentBytes: 10, MaxBatchBytes: -5, Sync: 7}
	o.EnsureDefaults()
	err := o.Validate()
	for _, want := range []string{"Dir", "Partitions", "SegmentBytes", "MaxBatchBytes", "Sync"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want it to name %s", err, want)
		}
	}
}

func TestLogSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	openLog(t, engine.Options{Dir: dir, Partitions: 1})
	if _, err := engine.Open(engine.Options{Dir: dir, LockTimeout: 100 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("a second Open of the same directory: %v", err)
	}
}

// Segments roll by record time, and retention deletes whole old segments, never the active one,
// advancing the log start offset.
func TestLogRollByAgeAndRetention(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	now := time.UnixMilli(1_763_800_000_000)
	opts := engine.Options{Dir: dir, Partitions: 1, SegmentAge: time.Hour, Retention: 5 * 24 * time.Hour, Now: func() time.Time { return now }}
	l := openLog(t, opts)
	start := now.Add(-10 * 24 * time.Hour)
	for h := 0; h < 10*24; h += 6 { // one record every six hours for ten days
		ts := start.Add(time.Duration(h) * time.Hour).UnixMilli()
		if _, err := l.Append(ctx, []engine.Record{{Key: []byte("w"), Value: []byte("{}"), Timestamp: ts}}); err != nil {
			t.Fatal(err)
		}
	}
	names, _ := os.ReadDir(filepath.Join(dir, "delivery_log-0"))
	if logs := countExt(names, ".log"); logs != 40 {
		t.Fatalf("%d segments, want one per record (each six hours after the last, past SegmentAge)", logs)
	}
	deleted, err := l.EnforceRetention()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := l.Bounds(ctx, 0)
	// Records older than five days are those of the first 20 segments (one is exactly at the cutoff).
	if deleted != 20 || b.Start != 20 || b.End != 40 {
		t.Fatalf("retention deleted %d segments, bounds %+v; want 20 deleted and [20, 40)", deleted, b)
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	// The active segment stays even when everything is old.
	now = now.Add(30 * 24 * time.Hour)
	if _, err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if b, _ := l.Bounds(ctx, 0); b.Start != 39 || b.End != 40 {
		t.Fatalf("after everything expired, bounds %+v; want the active segment [39, 40) kept", b)
	}
	off, found, err := l.OffsetForTime(ctx, 0, 0)
	if err != nil || !found || off != 39 {
		t.Fatalf("OffsetForTime(0) after retention = %d, %t, %v; want 39", off, found, err)
	}
}

func countExt(entries []os.DirEntry, ext string) int {
	n := 0
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ext {
			n++
		}
	}
	return n
}

// A failed fsync reaches the appender, and the partition takes no more appends until reopened:
// nothing the caller was told is durable may be lost silently.
func TestLogFsyncFailureSurfaces(t *testing.T) {
	dir := t.TempDir()
	var failSync atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failSync.Load() && op.Kind == errorfs.OpFileSync {
			return errorfs.ErrInjected
		}
		return nil
	})
	fs := engine.WithTruncate(errorfs.Wrap(vfs.Default, inj), os.Truncate)
	l := openLog(t, engine.Options{Dir: dir, Partitions: 1, FS: fs})
	ctx := context.Background()
	if _, err := l.Append(ctx, []engine.Record{{Key: []byte("a"), Value: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	failSync.Store(true)
	_, err := l.Append(ctx, []engine.Record{{Key: []byte("a"), Value: []byte("2")}})
	if !errors.Is(err, engine.ErrSync) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Append with a failing fsync: %v, want ErrSync", err)
	}
	if engine.IsRetryable(err) {
		t.Fatal("a failed fsync is classified retryable")
	}
	failSync.Store(false)
	if _, err := l.Append(ctx, []engine.Record{{Key: []byte("a"), Value: []byte("3")}}); err == nil {
		t.Fatal("append after a failed fsync succeeded without a reopen")
	}
	// Readers never saw the record whose fsync failed.
	if b, _ := l.Bounds(ctx, 0); b.End != 1 {
		t.Fatalf("end offset %d after a failed fsync, want 1", b.End)
	}
}

// A write failure likewise.
func TestLogWriteFailureSurfaces(t *testing.T) {
	var failWrite atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failWrite.Load() && op.Kind == errorfs.OpFileWriteAt {
			return errorfs.ErrInjected
		}
		return nil
	})
	l := openLog(t, engine.Options{Dir: t.TempDir(), Partitions: 1, FS: engine.WithTruncate(errorfs.Wrap(vfs.Default, inj), os.Truncate)})
	failWrite.Store(true)
	if _, err := l.Append(context.Background(), []engine.Record{{Key: []byte("a"), Value: []byte("1")}}); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Append with a failing write: %v", err)
	}
}

// Recovery on open: a torn batch at the end of the active segment is cut off, and missing or
// damaged index files of sealed segments are rebuilt, as Kafka does after an unclean shutdown.
func TestLogRecoversTornTailAndIndexes(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	opts := engine.Options{Dir: dir, Partitions: 1, SegmentBytes: 2048, IndexIntervalBytes: 128, Retention: -1}
	l := openLog(t, opts)
	var recs []engine.Record
	for i := 0; i < 200; i++ {
		recs = append(recs, engine.Record{Key: []byte("k"), Value: []byte(fmt.Sprintf(`{"i":%d,"pad":"%040d"}`, i, i)), Timestamp: int64(1e12 + i)})
	}
	for i := range recs { // one batch per record: many batches, several segments
		if _, err := l.Append(ctx, recs[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	pdir := filepath.Join(dir, "delivery_log-0")
	entries, _ := os.ReadDir(pdir)
	var logs []string
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ".log" {
			logs = append(logs, e.Name())
		}
	}
	if len(logs) < 4 {
		t.Fatalf("only %d segments", len(logs))
	}
	active := filepath.Join(pdir, logs[len(logs)-1])
	st, _ := os.Stat(active)
	f, _ := os.OpenFile(active, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(enginetest.Encode(t, enginetest.Batch{Codec: segment.CodecSnappy, Records: []enginetest.Record{{Key: []byte("k"), Value: []byte("torn")}}}, 200)[:30])
	f.Close()
	first := strings.TrimSuffix(logs[0], ".log")
	os.Remove(filepath.Join(pdir, first+".index"))
	os.WriteFile(filepath.Join(pdir, strings.TrimSuffix(logs[1], ".log")+".timeindex"), []byte("garbage!!!!!garbage!!!!!"), 0o644)

	l2 := openLog(t, opts)
	if err := l2.Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(pdir, first+".index")); err != nil {
		t.Fatalf("missing index was not rebuilt: %v", err)
	}
	if st2, _ := os.Stat(active); st2.Size() != st.Size() {
		t.Fatalf("active segment is %d bytes after recovery, want the %d before the torn write", st2.Size(), st.Size())
	}
	if b, _ := l2.Bounds(ctx, 0); b.End != 200 {
		t.Fatalf("end %d after recovery, want 200", b.End)
	}
	// And the log goes on from there.
	if got, err := l2.Append(ctx, recs[:1]); err != nil || got[0].Offset != 200 {
		t.Fatalf("append after recovery: %+v, %v", got, err)
	}
	if err := l2.Check(); err != nil {
		t.Fatal(err)
	}
}
