package segment

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestBatchReaderAgreesWithReadBatch: for random ascending offset sets, from dense (every
// offset) to sparse, a BatchReader returns exactly the batches ReadBatch does, byte for byte, with
// batches small and larger than its minimum and maximum reads, with and without an offset index.
func TestBatchReaderAgreesWithReadBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	recs := jitteredRecords(rng, 3000)
	// A few large records make batches beyond batchReadMin and one beyond batchReadMax.
	for _, i := range []int{40, 41, 900, 2100} {
		recs[i].value = bytes.Repeat([]byte{'z'}, 40<<10)
	}
	recs[1500].value = make([]byte, batchReadMax+1000)
	for i := range recs[1500].value {
		recs[1500].value[i] = byte(rng.Uint32())
	}
	for _, interval := range []int{0, 4096, 1 << 30} {
		fs := vfs.NewMem()
		writeSegment(t, fs, "", 100, recs, 9, CodecNone, interval)
		seg, err := OpenSegment(fs, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, density := range []float64{1, 0.5, 0.1, 0.01, 0.001} {
			var offsets []int64
			for off := int64(90); off < 3110; off++ {
				if rng.Float64() < density {
					offsets = append(offsets, off)
				}
			}
			type got struct {
				pos, base int64
				raw       []byte
			}
			var want, have []got
			var buf []byte
			next := int64(-1)
			for _, off := range offsets {
				if off < next {
					continue
				}
				var b Batch
				var ok bool
				b, buf, ok, err = seg.ReadBatch(off, buf)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					want = append(want, got{b.Pos, b.BaseOffset, slices.Clone(b.Raw)})
					next = b.NextOffset()
				}
			}
			r := seg.NewBatchReader(nil)
			next = -1
			for k, off := range offsets {
				if off < next {
					continue
				}
				b, ok, err := r.Read(off, offsets[k+1:])
				if err != nil {
					t.Fatalf("interval %d density %v: Read(%d): %v", interval, density, off, err)
				}
				if ok {
					if err := b.VerifyCRC(); err != nil {
						t.Fatalf("Read(%d): %v", off, err)
					}
					have = append(have, got{b.Pos, b.BaseOffset, slices.Clone(b.Raw)})
					next = b.NextOffset()
				}
			}
			if len(have) != len(want) {
				t.Fatalf("interval %d density %v: %d batches, ReadBatch %d", interval, density, len(have), len(want))
			}
			for i := range want {
				if have[i].pos != want[i].pos || have[i].base != want[i].base || !bytes.Equal(have[i].raw, want[i].raw) {
					t.Fatalf("interval %d density %v: batch %d at %d (base %d), ReadBatch's at %d (base %d)", interval, density, i, have[i].pos, have[i].base, want[i].pos, want[i].base)
				}
			}
		}
		seg.Close()
	}
}

// TestBatchReaderCorruption: a torn or malformed batch is a *CorruptionError naming the file and
// the byte position, as ReadBatch reports it.
func TestBatchReaderCorruption(t *testing.T) {
	fs := vfs.NewMem()
	writeSegment(t, fs, "", 0, jitteredRecords(rand.New(rand.NewPCG(5, 5)), 200), 10, CodecSnappy, 0)
	seg, _ := OpenSegment(fs, "", 0)
	var last Batch
	sc := seg.Scanner(ScanOptions{})
	for sc.Next() {
		last = *sc.Batch()
	}
	seg.Close()
	// Cut the last batch short: the segment now ends inside it.
	data, err := readWhole(fs, FileName(0, LogExt))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := fs.Create(FileName(0, LogExt), vfs.WriteCategoryUnspecified)
	f.Write(data[:len(data)-10])
	f.Close()
	seg, _ = OpenSegment(fs, "", 0)
	defer seg.Close()
	_, _, err = seg.NewBatchReader(nil).Read(last.BaseOffset, nil)
	var ce *CorruptionError
	if !errors.As(err, &ce) || !errors.Is(err, ErrTornTail) || ce.Pos != last.Pos {
		t.Fatalf("Read of a torn batch: %v, want ErrTornTail at %d", err, last.Pos)
	}
	_, _, _, want := seg.ReadBatch(last.BaseOffset, nil)
	if want == nil || want.Error() != err.Error() {
		t.Fatalf("Read says %v, ReadBatch %v", err, want)
	}
}

// FuzzBatchReader: over arbitrary .log bytes (seeded with real batches, concatenated and cut),
// a BatchReader never panics, and for every offset set it returns what ReadBatch returns, or the
// same error.
func FuzzBatchReader(f *testing.F) {
	seeds := batchSeeds(f)
	var all []byte
	for _, s := range seeds {
		f.Add(s, uint64(0), uint8(1))
		all = append(all, s...)
	}
	f.Add(all, uint64(3), uint8(2))
	f.Add(all[:len(all)-7], uint64(9), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, first uint64, step uint8) {
		fs := vfs.NewMem()
		w, _ := fs.Create(FileName(0, LogExt), vfs.WriteCategoryUnspecified)
		w.Write(data)
		w.Close()
		seg, err := OpenSegment(fs, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer seg.Close()
		var offsets []int64
		for off := int64(first % 200); off < 400 && len(offsets) < 100; off += int64(step%16) + 1 {
			offsets = append(offsets, off)
		}
		r := seg.NewBatchReader(nil)
		var buf []byte
		for k, off := range offsets {
			b, ok, err := r.Read(off, offsets[k+1:])
			var wb Batch
			var wok bool
			var werr error
			wb, buf, wok, werr = seg.ReadBatch(off, buf)
			if (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
				t.Fatalf("Read(%d) error %v, ReadBatch %v", off, err, werr)
			}
			if err != nil {
				return
			}
			if ok != wok || (ok && (b.Pos != wb.Pos || !bytes.Equal(b.Raw, wb.Raw))) {
				t.Fatalf("Read(%d) = %v at %d, ReadBatch %v at %d", off, ok, b.Pos, wok, wb.Pos)
			}
		}
	})
}
