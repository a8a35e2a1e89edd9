package engine_test

import (
	"io/fs"
	"sync/atomic"
	"syscall"

	"context"
	"fmt"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/enginetest"
	"github.com/replay/replay/segment"
)

// brokerDir writes the suite's batches as a broker would lay them out: a directory per
// partition, segments rolled every few batches, and the active segment's index files preallocated
// (zero-filled past their entries) as a live broker leaves them.
func brokerDirFactory(t *testing.T, topic string, data [][]enginetest.Batch) enginetest.Harness {
	dir := t.TempDir()
	writers := make([]*segment.Writer, len(data))
	for p, batches := range data {
		pdir := filepath.Join(dir, fmt.Sprintf("%s-%d", topic, p))
		if err := os.MkdirAll(pdir, 0o755); err != nil {
			t.Fatal(err)
		}
		var w *segment.Writer
		next := int64(0)
		for i, b := range batches {
			if i%4 == 0 {
				if w != nil {
					if err := w.Close(); err != nil {
						t.Fatal(err)
					}
				}
				var err error
				if w, err = segment.CreateWriter(pdir, next, segment.WriterOptions{IndexIntervalBytes: 128}); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Append(enginetest.Encode(t, b, next)); err != nil {
				t.Fatal(err)
			}
			next += int64(len(b.Records))
		}
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		preallocateIndexes(t, pdir, w.Base())
		writers[p] = w
	}
	t.Cleanup(func() {
		for _, w := range writers {
			w.Close()
		}
	})
	src, err := engine.OpenDir(engine.DirOptions{Dir: dir, Topic: topic, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return enginetest.Harness{Source: src, Append: func(t *testing.T, p int32, b enginetest.Batch) {
		w := writers[p]
		if err := w.Append(enginetest.Encode(t, b, w.NextOffset())); err != nil {
			t.Error(err)
		}
		if err := w.Sync(); err != nil {
			t.Error(err)
		}
	}}
}

func preallocateIndexes(t *testing.T, dir string, base int64) {
	for _, ext := range []string{segment.IndexExt, segment.TimeIndexExt} {
		f, err := os.OpenFile(filepath.Join(dir, segment.FileName(base, ext)), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(make([]byte, 12*100)); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

func TestDirSourceConformance(t *testing.T) { enginetest.Exercise(t, brokerDirFactory) }

// The embedded log's own directory is a broker's layout too: a DirSource reads it.
func TestDirSourceReadsEmbeddedLog(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l := openLog(t, engine.Options{Dir: dir, Partitions: 2, SegmentBytes: 2048})
	var recs []engine.Record
	for i := 0; i < 300; i++ {
		recs = append(recs, engine.Record{Key: []byte(fmt.Sprint(i % 7)), Value: []byte(fmt.Sprintf(`{"n":%d}`, i)), Timestamp: int64(1e12 + i)})
	}
	if _, err := l.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	src, err := engine.OpenDir(engine.DirOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for p := int32(0); p < 2; p++ {
		want, _ := l.Bounds(ctx, p)
		got, err := src.Bounds(ctx, p)
		if err != nil || got != want {
			t.Fatalf("partition %d: DirSource bounds %+v, %v; the log says %+v", p, got, err, want)
		}
		var n int64
		var rr segment.RecordReader
		err = src.Scan(ctx, p, 0, func(b *segment.Batch) error {
			if err := rr.Reset(b); err != nil {
				return err
			}
			for rr.Next() {
				if rr.Record().Offset != n {
					return fmt.Errorf("offset %d, want %d", rr.Record().Offset, n)
				}
				n++
			}
			return rr.Err()
		})
		if err != nil || n != want.End {
			t.Fatalf("partition %d: scanned %d records, %v; want %d", p, n, err, want.End)
		}
	}
}

// A broker deletes segments under a reader and rolls new ones; the log start follows, reads
// in flight finish, and a torn batch at the end of the active segment is not yet data.
func TestDirSourceLiveBroker(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "delivery_log-0")
	os.MkdirAll(pdir, 0o755)
	ctx := context.Background()
	batch := func(base int64) []byte {
		return enginetest.Encode(t, enginetest.Batch{Codec: segment.CodecSnappy, Records: []enginetest.Record{{Key: []byte("k"), Value: []byte("v"), Timestamp: 1e12 + base}}}, base)
	}
	for base := int64(0); base < 30; base += 10 {
		w, err := segment.CreateWriter(pdir, base, segment.WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for o := base; o < base+10; o++ {
			if err := w.Append(batch(o)); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()
	}
	src, err := engine.OpenDir(engine.DirOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if b, _ := src.Bounds(ctx, 0); b.Start != 0 || b.End != 30 {
		t.Fatalf("bounds %+v", b)
	}
	// Delete the first segment while a scan is in the middle of it.
	calls := 0
	err = src.Scan(ctx, 0, 0, func(b *segment.Batch) error {
		calls++
		if calls == 2 {
			for _, ext := range []string{".log", ".index", ".timeindex"} {
				os.Remove(filepath.Join(pdir, segment.FileName(0, ext)))
			}
		}
		return nil
	})
	if err != nil || calls != 30 {
		t.Fatalf("scan with a segment deleted under it: %d batches, %v", calls, err)
	}
	if b, _ := src.Bounds(ctx, 0); b.Start != 10 || b.End != 30 {
		t.Fatalf("after deletion, bounds %+v; want [10, 30)", b)
	}
	// Half a batch at the end of the active segment: the broker is writing it.
	f, _ := os.OpenFile(filepath.Join(pdir, segment.FileName(20, ".log")), os.O_WRONLY|os.O_APPEND, 0)
	half := batch(30)
	f.Write(half[:len(half)/2])
	if b, err := src.Bounds(ctx, 0); err != nil || b.End != 30 {
		t.Fatalf("with a batch half written, bounds %+v, %v; want end 30", b, err)
	}
	f.Write(half[len(half)/2:])
	f.Close()
	if b, err := src.Bounds(ctx, 0); err != nil || b.End != 31 {
		t.Fatalf("after the batch is whole, bounds %+v, %v; want end 31", b, err)
	}
}

func TestDirSourceErrors(t *testing.T) {
	if _, err := engine.OpenDir(engine.DirOptions{Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "no partition") {
		t.Fatalf("empty directory: %v", err)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "delivery_log-1"), 0o755)
	if _, err := engine.OpenDir(engine.DirOptions{Dir: dir}); err == nil || !strings.Contains(err.Error(), "delivery_log-0") {
		t.Fatalf("missing partition 0: %v", err)
	}
}

// TestDirSourceSealedSegmentBecomesLastAndRollsAgain: a broker truncates its log into a segment
// the source had cached as sealed (that segment is the last one now and grows again), then rolls
// it: the source reads the segment's new batches, not its stale copy.
func TestDirSourceSealedSegmentBecomesLastAndRollsAgain(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "delivery_log-0")
	os.MkdirAll(pdir, 0o755)
	ctx := t.Context()
	batch := func(base int64, v string) []byte {
		return enginetest.Encode(t, enginetest.Batch{Codec: segment.CodecNone, Records: []enginetest.Record{{Key: []byte("k"), Value: []byte(v), Timestamp: 1e12 + base}}}, base)
	}
	write := func(base, from, to int64, v string) {
		w, err := segment.OpenWriter(pdir, base, segment.WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for o := from; o < to; o++ {
			if err := w.Append(batch(o, v)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 0, 10, "old")
	write(10, 10, 20, "old")
	src, err := engine.OpenDir(engine.DirOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	scan := func() []string {
		var out []string
		var rr segment.RecordReader
		if err := src.Scan(ctx, 0, 0, func(b *segment.Batch) error {
			rr.Reset(b)
			for rr.Next() {
				out = append(out, string(rr.Record().Value))
			}
			return rr.Err()
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := scan(); len(got) != 20 { // segment 0 cached as sealed
		t.Fatalf("%d records, want 20", len(got))
	}
	// Truncate to offset 5: segment 10 goes, segment 0 keeps 5 batches and is the last one.
	for _, ext := range []string{".log", ".index", ".timeindex"} {
		os.Remove(filepath.Join(pdir, segment.FileName(10, ext)))
	}
	data, _ := os.ReadFile(filepath.Join(pdir, segment.FileName(0, ".log")))
	size := int64(0)
	for i := 0; i < 5; i++ {
		size += int64(len(batch(int64(i), "old")))
	}
	os.WriteFile(filepath.Join(pdir, segment.FileName(0, ".log")), data[:size], 0o644)
	os.Remove(filepath.Join(pdir, segment.FileName(0, ".index")))
	os.Remove(filepath.Join(pdir, segment.FileName(0, ".timeindex")))
	if got := scan(); len(got) != 5 {
		t.Fatalf("after the truncation: %d records, want 5", len(got))
	}
	// New batches at the truncated offsets, then a roll: segment 0 is sealed again.
	write(0, 5, 12, "new")
	write(12, 12, 15, "new")
	got := scan()
	if len(got) != 15 {
		t.Fatalf("after the refill and roll: %d records, want 15", len(got))
	}
	for i, v := range got[5:] {
		if v != "new" {
			t.Fatalf("record %d is %q: a stale copy of the segment", 5+i, v)
		}
	}
}

// A segment that retention deletes between the listing of the partition and its open (here: its
// open fails once as not existing) makes the source list again and answer, not hang: the error
// path used to take the partition's lock it already held.
func TestDirSourceSegmentGoneBetweenListAndOpen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l := openLog(t, engine.Options{Dir: dir, Partitions: 1, SegmentBytes: 2048})
	var recs []engine.Record
	for i := 0; i < 200; i++ {
		recs = append(recs, engine.Record{Key: []byte("k"), Value: []byte(fmt.Sprintf(`{"n":%d}`, i)), Timestamp: int64(1e12 + i)})
	}
	if _, err := l.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	want, _ := l.Bounds(ctx, 0)
	var armed, fired atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && op.Kind == errorfs.OpOpen && strings.HasSuffix(op.Path, "00000000000000000000.log") && fired.CompareAndSwap(false, true) {
			return &fs.PathError{Op: "open", Path: op.Path, Err: syscall.ENOENT}
		}
		return nil
	})
	src, err := engine.OpenDir(engine.DirOptions{Dir: dir, FS: errorfs.Wrap(vfs.Default, inj)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	armed.Store(true)
	done := make(chan error, 1)
	var got engine.Bounds
	go func() {
		var err error
		got, err = src.Bounds(ctx, 0)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil || got != want || !fired.Load() {
			t.Fatalf("bounds %+v, %v (injected: %v); want %+v", got, err, fired.Load(), want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Bounds hung after a segment's open failed")
	}
}
