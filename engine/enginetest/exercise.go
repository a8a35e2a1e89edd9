package enginetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/segment"
)

const topic = "delivery_log"

// expected is one record as the suite expects to read it back.
type expected struct {
	offset    int64
	batchBase int64
	Record
}

// makeData builds three partitions of batches with several codecs, keys, headers, null values
// and timestamps that go backwards by up to ten seconds.
func makeData(seed uint64) ([][]Batch, [][]expected) {
	rng := rand.New(rand.NewPCG(seed, 99))
	codecs := []segment.Codec{segment.CodecSnappy, segment.CodecSnappy, segment.CodecNone, segment.CodecLZ4, segment.CodecZstd, segment.CodecGzip}
	data := make([][]Batch, 3)
	exp := make([][]expected, 3)
	for p := range data {
		ts := int64(1_763_800_000_000)
		off := int64(0)
		nBatches := 20 + rng.IntN(20)
		for b := 0; b < nBatches; b++ {
			batch := Batch{Codec: codecs[rng.IntN(len(codecs))]}
			n := 1 + rng.IntN(12)
			for i := 0; i < n; i++ {
				ts += rng.Int64N(2000)
				r := Record{
					Key:       []byte(fmt.Sprint(1095098195724595200 + rng.Int64N(30))),
					Value:     []byte(fmt.Sprintf(`{"for_user_id":"%d","favorite_events":[{"id":"%d"}]}`, rng.Int64N(1e9), off)),
					Timestamp: ts - rng.Int64N(10_000),
					Headers:   []segment.Header{{Key: []byte("event-id"), Value: []byte(fmt.Sprint(p, "-", off))}},
				}
				if rng.IntN(20) == 0 {
					r.Value = nil
				}
				batch.Records = append(batch.Records, r)
				exp[p] = append(exp[p], expected{offset: off, batchBase: off - int64(i), Record: r})
				off++
			}
			data[p] = append(data[p], batch)
		}
	}
	return data, exp
}

// got is a record read back, copied out of the reader's buffers.
type got struct {
	offset, batchBase int64
	Record
}

func decode(t *testing.T, rr *segment.RecordReader, b *segment.Batch, out *[]got) {
	t.Helper()
	if err := rr.Reset(b); err != nil {
		t.Fatalf("decoding batch at offset %d: %v", b.BaseOffset, err)
	}
	for rr.Next() {
		r := rr.Record()
		g := got{offset: r.Offset, batchBase: b.BaseOffset, Record: Record{Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value), Timestamp: r.Timestamp}}
		for _, h := range r.Headers {
			g.Headers = append(g.Headers, segment.Header{Key: bytes.Clone(h.Key), Value: bytes.Clone(h.Value)})
		}
		*out = append(*out, g)
	}
	if err := rr.Err(); err != nil {
		t.Fatal(err)
	}
}

func same(t *testing.T, what string, g []got, e []expected) {
	t.Helper()
	if len(g) != len(e) {
		t.Fatalf("%s: read %d records, want %d", what, len(g), len(e))
	}
	for i := range g {
		a, b := g[i], e[i]
		if a.offset != b.offset || a.batchBase != b.batchBase || a.Timestamp != b.Timestamp ||
			!bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Value, b.Value) || (a.Value == nil) != (b.Value == nil) ||
			len(a.Headers) != len(b.Headers) || !bytes.Equal(a.Headers[0].Value, b.Headers[0].Value) {
			t.Fatalf("%s: record %d: got offset %d (batch %d) ts %d key %q value %q, want offset %d (batch %d) ts %d key %q value %q",
				what, i, a.offset, a.batchBase, a.Timestamp, a.Key, a.Value, b.offset, b.batchBase, b.Timestamp, b.Key, b.Value)
		}
	}
}

// Exercise runs the conformance suite against the sources newSource builds, of the topic
// delivery_log.
func Exercise(t *testing.T, newSource Factory) { ExerciseTopic(t, topic, newSource) }

// ExerciseTopic is Exercise with another topic name, for sources that share one cluster.
func ExerciseTopic(t *testing.T, topic string, newSource Factory) {
	data, exp := makeData(1)
	h := newSource(t, topic, data)
	src := h.Source
	t.Cleanup(func() { src.Close() })
	ctx := context.Background()

	t.Run("Partitions", func(t *testing.T) {
		n, err := src.Partitions(ctx)
		if err != nil || n != int32(len(data)) {
			t.Fatalf("Partitions = %d, %v; want %d", n, err, len(data))
		}
		if src.Topic() != topic {
			t.Fatalf("Topic = %q", src.Topic())
		}
	})

	t.Run("Bounds", func(t *testing.T) {
		for p := range data {
			b, err := src.Bounds(ctx, int32(p))
			if err != nil || b.Start != 0 || b.End != int64(len(exp[p])) {
				t.Fatalf("partition %d: Bounds = %+v, %v; want [0, %d)", p, b, err, len(exp[p]))
			}
		}
		if _, err := src.Bounds(ctx, int32(len(data))); !errors.Is(err, engine.ErrUnknownPartition) {
			t.Fatalf("Bounds of a partition past the count: %v, want ErrUnknownPartition", err)
		}
	})

	t.Run("ScanAll", func(t *testing.T) {
		var rr segment.RecordReader
		for p := range data {
			var g []got
			batches := 0
			err := src.Scan(ctx, int32(p), 0, func(b *segment.Batch) error {
				batches++
				decode(t, &rr, b, &g)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if batches != len(data[p]) {
				t.Fatalf("partition %d: scanned %d batches, wrote %d (batch boundaries must be kept)", p, batches, len(data[p]))
			}
			same(t, fmt.Sprintf("partition %d", p), g, exp[p])
		}
	})

	t.Run("ScanFrom", func(t *testing.T) {
		var rr segment.RecordReader
		e := exp[0]
		for _, from := range []int64{0, 1, e[len(e)/2].offset, e[len(e)-1].offset, int64(len(e)), int64(len(e)) + 5} {
			var g []got
			if err := src.Scan(ctx, 0, from, func(b *segment.Batch) error { decode(t, &rr, b, &g); return nil }); err != nil {
				t.Fatalf("Scan from %d: %v", from, err)
			}
			// The first batch returned is the one holding from.
			var want []expected
			for _, r := range e {
				if r.offset >= from || r.batchBase == batchBaseOf(e, from) {
					want = append(want, r)
				}
			}
			same(t, fmt.Sprintf("scan from %d", from), g, want)
		}
	})

	t.Run("ScanStops", func(t *testing.T) {
		calls := 0
		err := src.Scan(ctx, 1, 0, func(*segment.Batch) error { calls++; return engine.ErrStop })
		if err != nil || calls != 1 {
			t.Fatalf("ErrStop: err %v after %d calls, want nil after 1", err, calls)
		}
		boom := errors.New("boom")
		if err := src.Scan(ctx, 1, 0, func(*segment.Batch) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("callback error not returned: %v", err)
		}
	})

	t.Run("ReadBatches", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 5))
		var rr segment.RecordReader
		for p := range data {
			e := exp[p]
			for trial := 0; trial < 10; trial++ {
				var offsets []int64
				for i := 0; i < 1+rng.IntN(8); i++ {
					offsets = append(offsets, rng.Int64N(int64(len(e))+3)) // some past the end
				}
				sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
				wantBases := map[int64]bool{}
				for _, o := range offsets {
					if o < int64(len(e)) {
						wantBases[e[o].batchBase] = true
					}
				}
				var want []expected
				for _, r := range e {
					if wantBases[r.batchBase] {
						want = append(want, r)
					}
				}
				var g []got
				calls := 0
				err := src.ReadBatches(ctx, int32(p), offsets, func(b *segment.Batch) error { calls++; decode(t, &rr, b, &g); return nil })
				if err != nil {
					t.Fatal(err)
				}
				if calls != len(wantBases) {
					t.Fatalf("ReadBatches(%v): %d callbacks for %d distinct batches", offsets, calls, len(wantBases))
				}
				same(t, fmt.Sprintf("partition %d ReadBatches(%v)", p, offsets), g, want)
			}
		}
	})

	t.Run("OffsetForTime", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(6, 6))
		for p := range data {
			e := exp[p]
			lo, hi := e[0].Timestamp-20_000, e[len(e)-1].Timestamp+20_000
			for q := 0; q < 60; q++ {
				target := lo + rng.Int64N(hi-lo)
				if q%4 == 0 {
					target = e[rng.IntN(len(e))].Timestamp
				}
				want, wantFound := int64(len(e)), false
				for _, r := range e {
					if r.Timestamp >= target {
						want, wantFound = r.offset, true
						break
					}
				}
				off, found, err := src.OffsetForTime(ctx, int32(p), target)
				if err != nil || off != want || found != wantFound {
					t.Fatalf("partition %d OffsetForTime(%d) = %d, %t, %v; want %d, %t", p, target, off, found, err, want, wantFound)
				}
			}
		}
	})

	t.Run("WaitForEnd", func(t *testing.T) {
		end := int64(len(exp[2]))
		if got, err := src.WaitForEnd(ctx, 2, end-1); err != nil || got != end {
			t.Fatalf("WaitForEnd below the end = %d, %v; want %d at once", got, err, end)
		}
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if _, err := src.WaitForEnd(short, 2, end); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitForEnd at the end with nothing appended: %v, want DeadlineExceeded", err)
		}
		if h.Append == nil {
			return
		}
		extra := Batch{Codec: segment.CodecSnappy, Records: []Record{{Key: []byte("1"), Value: []byte("{}"), Timestamp: 1_763_900_000_000}}}
		done := make(chan error, 1)
		var newEnd int64
		go func() {
			var err error
			newEnd, err = src.WaitForEnd(ctx, 2, end)
			done <- err
		}()
		h.Append(t, 2, extra)
		select {
		case err := <-done:
			if err != nil || newEnd != end+1 {
				t.Fatalf("WaitForEnd after an append = %d, %v; want %d", newEnd, err, end+1)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("WaitForEnd was not woken by an append")
		}
		var rr segment.RecordReader
		var g []got
		if err := src.Scan(ctx, 2, end, func(b *segment.Batch) error { decode(t, &rr, b, &g); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(g) != 1 || g[0].offset != end || string(g[0].Value) != "{}" {
			t.Fatalf("after append, scan from %d read %+v", end, g)
		}
	})

	t.Run("Close", func(t *testing.T) {
		if err := src.Close(); err != nil {
			t.Fatal(err)
		}
		if err := src.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := src.Bounds(ctx, 0); !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("Bounds after Close: %v, want ErrClosed", err)
		}
	})
}

func batchBaseOf(e []expected, off int64) int64 {
	if off >= int64(len(e)) || off < 0 {
		return -1
	}
	return e[off].batchBase
}
