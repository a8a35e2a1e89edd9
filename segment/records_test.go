package segment

import (
	"bytes"
	"fmt"
	"testing"
)

// Iterating records must not allocate per record once the reader's buffers are warm: the replay
// and index hot paths run it over every event.
func TestRecordIterationDoesNotAllocate(t *testing.T) {
	for c := CodecNone; c <= CodecZstd; c++ {
		t.Run(c.String(), func(t *testing.T) {
			var log []byte
			var bld Builder
			for i := 0; i < 20; i++ {
				bld.Reset()
				for j := 0; j < 50; j++ {
					bld.Add(&Record{Timestamp: int64(j), Key: []byte(fmt.Sprint(j)), Value: bytes.Repeat([]byte("v"), 300),
						Headers: []Header{{Key: []byte("event-id"), Value: []byte(fmt.Sprint(i, j))}, {Key: []byte("h2"), Value: nil}}})
				}
				var err error
				if log, err = bld.Build(log, BatchOptions{BaseOffset: int64(i * 50), Codec: c}); err != nil {
					t.Fatal(err)
				}
			}
			var rr RecordReader
			sc := NewScanner(bytes.NewReader(log), "mem", int64(len(log)), ScanOptions{})
			n := 0
			scanAll := func() {
				sc = NewScanner(bytes.NewReader(log), "mem", int64(len(log)), ScanOptions{})
				for sc.Next() {
					if err := rr.Reset(sc.Batch()); err != nil {
						t.Fatal(err)
					}
					for rr.Next() {
						n++
					}
				}
			}
			scanAll() // warm the buffers
			n = 0
			allocs := testing.AllocsPerRun(5, scanAll)
			records := n / 6 // AllocsPerRun runs it once more to warm up
			if records != 1000 {
				t.Fatalf("iterated %d records per run, want 1000", records)
			}
			// A scan allocates its scanner and its read buffer; a codec may allocate a little per
			// batch. Per record: nothing.
			limit := 0.05
			if raceEnabled {
				limit = 0.2 // see raceEnabled: pools drop entries; still far below one per record
			}
			if perRecord := allocs / float64(records); perRecord > limit {
				t.Fatalf("%.0f allocations for %d records (%.2f per record)", allocs, records, perRecord)
			}
		})
	}
}

// NextKey gives the offsets, timestamps and keys Next does (values and headers left nil), over
// every codec, with log-append time, null keys and headers.
func TestNextKey(t *testing.T) {
	for c := CodecNone; c <= CodecZstd; c++ {
		for _, logAppend := range []bool{false, true} {
			var bld Builder
			for j := 0; j < 40; j++ {
				r := &Record{Timestamp: int64(1000 - 7*j), Key: []byte(fmt.Sprint("k", j)), Value: bytes.Repeat([]byte("v"), j*10),
					Headers: []Header{{Key: []byte("event-id"), Value: []byte(fmt.Sprint(j))}}}
				if j%5 == 0 {
					r.Key, r.Headers = nil, nil
				}
				bld.Add(r)
			}
			raw, err := bld.Build(nil, BatchOptions{BaseOffset: 77, Codec: c, LogAppendTime: logAppend, MaxTimestamp: 5000})
			if err != nil {
				t.Fatal(err)
			}
			sc := NewScanner(bytes.NewReader(raw), "mem", int64(len(raw)), ScanOptions{})
			if !sc.Next() {
				t.Fatal(sc.Err())
			}
			var full, keys RecordReader
			if err := full.Reset(sc.Batch()); err != nil {
				t.Fatal(err)
			}
			if err := keys.Reset(sc.Batch()); err != nil {
				t.Fatal(err)
			}
			n := 0
			for full.Next() {
				if !keys.NextKey() {
					t.Fatalf("%v: NextKey ended after %d records: %v", c, n, keys.Err())
				}
				a, b := full.Record(), keys.Record()
				if a.Offset != b.Offset || a.Timestamp != b.Timestamp || !bytes.Equal(a.Key, b.Key) || (a.Key == nil) != (b.Key == nil) || b.Value != nil || b.Headers != nil {
					t.Fatalf("%v: record %d: NextKey %+v, Next %+v", c, n, b, a)
				}
				n++
			}
			if full.Err() != nil || keys.NextKey() || keys.Err() != nil || n != 40 {
				t.Fatalf("%v: %d records, errors %v, %v", c, n, full.Err(), keys.Err())
			}
		}
	}
}
