package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replay/replay/replayd/testwait"
	"github.com/replay/replay/segment"
)

// decodeLog is n snappy batches of 8 records each, batch i's records keyed "i", a control
// batch every 17th; corrupt names batches whose payload gets a flipped byte (a CRC mismatch).
func decodeLog(t *testing.T, n int, corrupt map[int]bool) []byte {
	t.Helper()
	var log []byte
	var bld segment.Builder
	for i := range n {
		bld.Reset()
		for j := range 8 {
			bld.Add(&segment.Record{Timestamp: int64(i), Key: []byte(strconv.Itoa(i)), Value: bytes.Repeat([]byte{byte(j)}, 200)})
		}
		var err error
		if log, err = bld.Build(log, segment.BatchOptions{BaseOffset: int64(i * 8), Codec: segment.CodecSnappy, Control: i%17 == 16}); err != nil {
			t.Fatal(err)
		}
		if corrupt[i] {
			log[len(log)-3] ^= 0xff
		}
	}
	return log
}

// feed scans log into d.Add (so every batch's bytes are the scanner's reused buffer's) and
// flushes; it returns the first error.
func feed(d *Decoder, log []byte) error {
	sc := segment.NewScanner(bytes.NewReader(log), "mem", int64(len(log)), segment.ScanOptions{})
	for sc.Next() {
		if err := d.Add(sc.Batch()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return d.Flush()
}

// withProcs runs the test with GOMAXPROCS at least 4, so the Decoder has workers on any machine.
func withProcs(t *testing.T) {
	old := runtime.GOMAXPROCS(max(4, runtime.GOMAXPROCS(0)))
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
}

// randomDelay makes decode times random: from nothing to a few hundred microseconds of spinning.
func randomDelay(*segment.Batch) {
	for range rand.IntN(4) * rand.IntN(20000) {
		runtime.Gosched()
	}
}

// TestDecoderOrder: many batches with random decode times are handed over in log order, each
// once, decoded (their records read back), a corrupt one at its own place with its error, and a
// control batch undecoded; at most DecodeAhead are decoded ahead of the callback.
func TestDecoderOrder(t *testing.T) {
	withProcs(t)
	const n = 600
	corrupt := map[int]bool{0: true, 5: true, 6: true, 301: true, n - 1: true}
	log := decodeLog(t, n, corrupt)
	before := runtime.NumGoroutine()
	var started, handed, maxAhead atomic.Int64
	next := 0
	d := NewDecoder(t.Context(), func(b *segment.Batch, rr *segment.RecordReader) error {
		handed.Add(1)
		if want := int64(next * 8); b.BaseOffset != want {
			return fmt.Errorf("batch at %d handed over, want %d", b.BaseOffset, want)
		}
		i := next
		next++
		switch {
		case b.IsControl():
			if rr != nil {
				return fmt.Errorf("control batch %d handed over with a reader", i)
			}
			return nil
		case corrupt[i]:
			if rr.Next() || !errors.Is(rr.Err(), segment.ErrChecksum) {
				return fmt.Errorf("corrupt batch %d: err %v, want a checksum error", i, rr.Err())
			}
			return nil
		}
		records := 0
		for rr.Next() {
			if r := rr.Record(); string(r.Key) != strconv.Itoa(i) || r.Offset != int64(i*8+records) || len(r.Value) != 200 || r.Value[0] != byte(records) {
				return fmt.Errorf("batch %d record %d: offset %d key %q", i, records, r.Offset, r.Key)
			}
			records++
		}
		if rr.Err() != nil || records != 8 {
			return fmt.Errorf("batch %d: %d records, err %v", i, records, rr.Err())
		}
		return nil
	})
	d.delay = func(b *segment.Batch) {
		ahead := started.Add(1) - handed.Load()
		for m := maxAhead.Load(); ahead > m && !maxAhead.CompareAndSwap(m, ahead); m = maxAhead.Load() {
		}
		randomDelay(b)
	}
	if err := feed(d, log); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if next != n {
		t.Fatalf("%d batches handed over, want %d", next, n)
	}
	// The first batch is decoded before it is counted as handed over, hence the 1.
	if m := maxAhead.Load(); m > int64(DecodeAhead())+1 {
		t.Fatalf("%d batches decoded ahead of the callback, want at most %d", m, DecodeAhead())
	}
	testwait.Goroutines(t, before, 5*time.Second)
}

// TestDecoderStop: the callback's error (ErrStop, or another) stops the Decoder at that batch:
// nothing after it is handed over, Add and Flush keep returning it, and Close leaves no
// goroutine behind, with batches still being decoded.
func TestDecoderStop(t *testing.T) {
	withProcs(t)
	log := decodeLog(t, 300, nil)
	before := runtime.NumGoroutine()
	boom := errors.New("boom")
	for _, stopErr := range []error{ErrStop, boom} {
		for _, at := range []int{0, 1, 2, 40, 299} {
			seen := 0
			d := NewDecoder(t.Context(), func(b *segment.Batch, rr *segment.RecordReader) error {
				seen++
				if seen == at+1 {
					return stopErr
				}
				return nil
			})
			d.delay = randomDelay
			if err := feed(d, log); !errors.Is(err, stopErr) {
				t.Fatalf("stop at %d: %v, want %v", at, err, stopErr)
			}
			if seen != at+1 {
				t.Fatalf("stop at %d: %d batches handed over", at, seen)
			}
			if err := d.Add(&segment.Batch{}); !errors.Is(err, stopErr) {
				t.Fatalf("Add after the stop: %v", err)
			}
			if err := d.Flush(); !errors.Is(err, stopErr) {
				t.Fatalf("Flush after the stop: %v", err)
			}
			d.Close()
			d.Close()
			testwait.Goroutines(t, before, 5*time.Second)
		}
	}
}

// TestDecoderCancel: a context ending while the head batch is being decoded ends the wait for it
// with the context's error; Close then waits for the decode under way and leaves nothing behind.
func TestDecoderCancel(t *testing.T) {
	withProcs(t)
	log := decodeLog(t, 100, nil)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(t.Context())
	release := make(chan struct{})
	held := make(chan struct{})
	var decodes atomic.Int64
	d := NewDecoder(ctx, func(*segment.Batch, *segment.RecordReader) error { return nil })
	d.delay = func(*segment.Batch) {
		if decodes.Add(1) == 2 { // the first decode after the inline first batch's
			close(held)
			<-release
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- feed(d, log) }()
	<-held
	cancel()
	close(release) // the adding goroutine itself may be the one holding it

	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("read: %v, want context.Canceled", err)
	}
	d.Close()
	testwait.Goroutines(t, before, 5*time.Second)
}

// TestDecoderOneProc: with GOMAXPROCS 1 there are no workers; every batch is decoded inline.
func TestDecoderOneProc(t *testing.T) {
	old := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(old)
	log := decodeLog(t, 50, map[int]bool{3: true})
	before := runtime.NumGoroutine()
	n := 0
	d := NewDecoder(t.Context(), func(b *segment.Batch, rr *segment.RecordReader) error {
		if b.BaseOffset != int64(n*8) {
			return fmt.Errorf("batch %d out of order", b.BaseOffset)
		}
		n++
		return nil
	})
	d.delay = func(*segment.Batch) {
		if g := runtime.NumGoroutine(); g > before {
			t.Errorf("%d goroutines while decoding, want %d", g, before)
		}
	}
	if err := feed(d, log); err != nil || n != 50 {
		t.Fatalf("%d batches, err %v", n, err)
	}
	d.Close()
}
