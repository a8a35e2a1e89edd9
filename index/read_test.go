package index

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/indextest"
	"github.com/replay/replay/replayd/testwait"
	"github.com/replay/replay/segment"
)

// faultSource is a source whose batch based at bad goes to fault instead of the read's callback,
// in scans and targeted reads alike.
type faultSource struct {
	engine.Source
	bad   int64
	fault func(b *segment.Batch, fn func(*segment.Batch) error) error
}

func (s faultSource) wrap(fn func(*segment.Batch) error) func(*segment.Batch) error {
	return func(b *segment.Batch) error {
		if b.BaseOffset != s.bad {
			return fn(b)
		}
		return s.fault(b, fn)
	}
}

func (s faultSource) Scan(ctx context.Context, p int32, from int64, fn func(*segment.Batch) error) error {
	return s.Source.Scan(ctx, p, from, s.wrap(fn))
}

func (s faultSource) ReadBatches(ctx context.Context, p int32, offs []int64, fn func(*segment.Batch) error) error {
	return s.Source.ReadBatches(ctx, p, offs, s.wrap(fn))
}

// unframedSource is a source that cannot frame the batch based at bad: its scans and targeted
// reads fail there with a corruption error, as a source's do at a batch whose header is wrong.
func unframedSource(src engine.Source, bad int64) faultSource {
	return faultSource{Source: src, bad: bad, fault: func(b *segment.Batch, _ func(*segment.Batch) error) error {
		return &segment.CorruptionError{File: b.File, Pos: b.Pos, Kind: segment.ErrMalformed, Detail: "test: unframed"}
	}}
}

// flippedSource hands the batch based at bad over with a byte of its records flipped.
func flippedSource(src engine.Source, bad int64) faultSource {
	return faultSource{Source: src, bad: bad, fault: func(b *segment.Batch, fn func(*segment.Batch) error) error {
		c := *b
		c.Raw = slices.Clone(b.Raw)
		c.Raw[len(c.Raw)-2] ^= 0xff
		return fn(&c)
	}}
}

// generatedLog is a log of one partition holding baseSpec's data, closed when the test ends, and
// the base offsets of its batches: its data batches only, or its control batches too.
func generatedLog(t *testing.T, dataOnly bool) (*engine.Log, []int64) {
	t.Helper()
	l := openLog(t, filepath.Join(t.TempDir(), "log"), 1, nil)
	t.Cleanup(func() { l.Close() })
	if _, err := indextest.Generate(t.Context(), l, baseSpec()); err != nil {
		t.Fatal(err)
	}
	var all []int64
	if err := l.Scan(t.Context(), 0, 0, func(b *segment.Batch) error {
		if !dataOnly || !b.IsControl() {
			all = append(all, b.BaseOffset)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return l, all
}

// TestReadStream: the batches of chunks handed over in many shapes (dense runs, which are
// scanned, and sparse picks, read by offset) are handed to fn exactly once each, in order,
// decoded; a batch the source cannot frame is reported to Unframed at its place, whether it is
// met by a targeted read or, listed or not, by a scan, and without Unframed it ends the read.
func TestReadStream(t *testing.T) {
	ctx := t.Context()
	l, all := generatedLog(t, true) // every data batch's base offset
	if len(all) < 200 {
		t.Fatalf("%d batches: too few for dense chunks", len(all))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	scanned := 0
	for q := range 60 {
		// The wanted batches: runs of neighbours and scattered ones, handed over in chunks.
		var want []int64
		for i := 0; i < len(all); {
			if rng.IntN(3) == 0 {
				n := 1 + rng.IntN(60)
				want = append(want, all[i:min(i+n, len(all))]...)
				i += n
			}
			i += 1 + rng.IntN(10)
		}
		var chunks [][]int64
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(80))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		for _, c := range chunks[1:] {
			if dense(c) {
				scanned++
			}
		}
		lookup := func(ctx context.Context, emit func([]int64) error) error {
			for _, c := range chunks {
				if err := emit(c); err != nil {
					return err
				}
			}
			return nil
		}
		// The bad batch: a wanted one, or one between wanted ones (met only by a scan).
		bad := want[rng.IntN(len(want))]
		if i, _ := slices.BinarySearch(all, bad); q%2 == 1 && i+1 < len(all) {
			bad = all[i+1]
		}
		var got, expect []string
		for _, o := range want {
			if o == bad {
				expect = append(expect, fmt.Sprintf("unframed %d", o))
			} else {
				expect = append(expect, fmt.Sprint(o))
			}
		}
		fn := func(b *segment.Batch, rr *segment.RecordReader) error {
			got = append(got, fmt.Sprint(b.BaseOffset))
			for rr.Next() {
				if o := rr.Record().Offset; o < b.BaseOffset || o > b.LastOffset() {
					return fmt.Errorf("batch %d: record at %d", b.BaseOffset, o)
				}
			}
			return rr.Err()
		}
		src := unframedSource(l, bad)
		err := ReadStream(ctx, src, 0, lookup, ReadOptions{Unframed: func(o int64, err error) error {
			if !segment.IsCorruption(err) {
				t.Errorf("unframed %d: %v", o, err)
			}
			got = append(got, fmt.Sprintf("unframed %d", o))
			return nil
		}}, fn)
		if err != nil {
			t.Fatalf("q%d: %v", q, err)
		}
		if !slices.Equal(got, expect) {
			t.Fatalf("q%d (bad %d): handed over\n%v\nwant\n%v", q, bad, got, expect)
		}
		// Without Unframed, an unframed wanted batch ends the read after the batches before it.
		if _, listed := slices.BinarySearch(want, bad); listed {
			got = nil
			err := ReadStream(ctx, src, 0, lookup, ReadOptions{}, fn)
			i := slices.Index(expect, fmt.Sprintf("unframed %d", bad))
			if !segment.IsCorruption(err) || !slices.Equal(got, expect[:i]) {
				t.Fatalf("q%d: %v after %d batches, want a corruption error after %d", q, err, len(got), i)
			}
		}
	}
	if scanned == 0 {
		t.Fatal("no dense chunk: the scans are not exercised")
	}
}

// TestReadStreamCorruptBatch: a batch whose bytes do not match its checksum is handed over at
// its place with the checksum error as its reader's Err, and the read goes on; fn's own errors
// end the read, whatever they are (a corruption error returned by fn is not the source's).
func TestReadStreamCorruptBatch(t *testing.T) {
	ctx := t.Context()
	l, all := generatedLog(t, true)
	bad := all[len(all)/2]
	// The bytes are flipped as the Decoder sees them, in a wrapper of the batch handed over.
	src := flippedSource(l, bad)
	lookup := func(ctx context.Context, emit func([]int64) error) error {
		if err := emit(all[:10]); err != nil {
			return err
		}
		return emit(all[10:])
	}
	var got []int64
	var badErr error
	err := ReadStream(ctx, src, 0, lookup, ReadOptions{}, func(b *segment.Batch, rr *segment.RecordReader) error {
		got = append(got, b.BaseOffset)
		for rr.Next() {
		}
		if b.BaseOffset == bad {
			badErr = rr.Err()
			return nil
		}
		return rr.Err()
	})
	if err != nil || !slices.Equal(got, all) || !errors.Is(badErr, segment.ErrChecksum) {
		t.Fatalf("read %d of %d batches, err %v, the corrupt batch's %v", len(got), len(all), err, badErr)
	}
	got = nil
	err = ReadStream(ctx, src, 0, lookup, ReadOptions{Unframed: func(int64, error) error {
		t.Fatal("a batch's own corruption reported as the source's")
		return nil
	}}, func(b *segment.Batch, rr *segment.RecordReader) error {
		got = append(got, b.BaseOffset)
		for rr.Next() {
		}
		return rr.Err()
	})
	if !errors.Is(err, segment.ErrChecksum) || got[len(got)-1] != bad {
		t.Fatalf("fn's corruption error: %v after batch %d, want it returned at %d", err, got[len(got)-1], bad)
	}
}

// TestReadStreamStop: fn's ErrStop, fn's error and a cancelled context each end the read, the
// lookup (cancelled) and every goroutine the read started, at any batch.
func TestReadStreamStop(t *testing.T) {
	ctx := t.Context()
	l, all := generatedLog(t, false)
	before := runtime.NumGoroutine()
	boom := errors.New("boom")
	for _, at := range []int{0, 1, 5, 100, len(all) - 1} {
		for _, how := range []string{"stop", "error", "cancel"} {
			cctx, cancel := context.WithCancel(ctx)
			lookupEnded := false
			lookup := func(ctx context.Context, emit func([]int64) error) error {
				defer func() { lookupEnded = true }()
				for i := 0; i < len(all); i += 7 {
					if err := emit(all[i:min(i+7, len(all))]); err != nil {
						return err
					}
				}
				<-ctx.Done() // a lookup that goes on until the read ends it
				return ctx.Err()
			}
			n := 0
			err := ReadStream(cctx, l, 0, lookup, ReadOptions{}, func(*segment.Batch, *segment.RecordReader) error {
				if n++; n <= at {
					return nil
				}
				switch how {
				case "stop":
					return engine.ErrStop
				case "error":
					return boom
				}
				cancel()
				return nil
			})
			cancel()
			switch {
			case how == "stop" && (err != nil || n != at+1),
				how == "error" && (!errors.Is(err, boom) || n != at+1),
				how == "cancel" && !errors.Is(err, context.Canceled):
				t.Fatalf("%s at %d: %v after %d batches", how, at, err, n)
			}
			if !lookupEnded {
				t.Fatalf("%s at %d: ReadStream returned before the lookup", how, at)
			}
			testwait.Goroutines(t, before, 5*time.Second)
		}
	}
}
