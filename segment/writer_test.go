package segment

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

type testRecord struct {
	ts      int64
	key     []byte
	value   []byte
	headers []Header
}

// writeSegment writes recs into a new segment at base in batches of batchSize, and returns the
// offsets it assigned.
func writeSegment(t testing.TB, fs vfs.FS, dir string, base int64, recs []testRecord, batchSize int, codec Codec, interval int) {
	t.Helper()
	w, err := CreateWriter(dir, base, WriterOptions{FS: fs, IndexIntervalBytes: interval})
	if err != nil {
		t.Fatal(err)
	}
	var bld Builder
	var buf []byte
	off := base
	for i := 0; i < len(recs); i += batchSize {
		bld.Reset()
		for _, r := range recs[i:min(i+batchSize, len(recs))] {
			bld.Add(&Record{Timestamp: r.ts, Key: r.key, Value: r.value, Headers: r.headers})
		}
		if buf, err = bld.Build(buf[:0], BatchOptions{BaseOffset: off, Codec: codec}); err != nil {
			t.Fatal(err)
		}
		if err := w.Append(buf); err != nil {
			t.Fatal(err)
		}
		off += int64(bld.Len())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := CheckSegment(fs, dir, base); err != nil {
		t.Fatalf("CheckSegment after writing: %v", err)
	}
}

// jitteredRecords makes n records whose timestamps wander forwards and backwards.
func jitteredRecords(rng *rand.Rand, n int) []testRecord {
	recs := make([]testRecord, n)
	ts := int64(1_700_000_000_000)
	for i := range recs {
		ts += rng.Int64N(1000)
		jitter := rng.Int64N(20_000) - 10_000 // up to 10 s out of order either way
		recs[i] = testRecord{
			ts:    ts + jitter,
			key:   []byte(fmt.Sprint(rng.IntN(50))),
			value: bytes.Repeat([]byte{byte('a' + i%26)}, 50+rng.IntN(400)),
		}
	}
	return recs
}

func readAll(t testing.TB, fs vfs.FS, dir string, base int64) []Record {
	t.Helper()
	seg, err := OpenSegment(fs, dir, base)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	var out []Record
	var rr RecordReader
	sc := seg.Scanner(ScanOptions{VerifyCRC: true})
	for sc.Next() {
		if err := rr.Reset(sc.Batch()); err != nil {
			t.Fatal(err)
		}
		for rr.Next() {
			r := rr.Record()
			out = append(out, Record{Offset: r.Offset, Timestamp: r.Timestamp,
				Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value)})
		}
		if err := rr.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWriterRoundTripEveryCodec(t *testing.T) {
	for c := CodecNone; c <= CodecZstd; c++ {
		t.Run(c.String(), func(t *testing.T) {
			fs := vfs.NewMem()
			recs := jitteredRecords(rand.New(rand.NewPCG(1, uint64(c))), 500)
			writeSegment(t, fs, "", 1000, recs, 7, c, 4096)
			got := readAll(t, fs, "", 1000)
			if len(got) != len(recs) {
				t.Fatalf("read %d records, wrote %d", len(got), len(recs))
			}
			for i, r := range got {
				if r.Offset != 1000+int64(i) || r.Timestamp != recs[i].ts || !bytes.Equal(r.Key, recs[i].key) || !bytes.Equal(r.Value, recs[i].value) {
					t.Fatalf("record %d: got offset %d ts %d key %q, want offset %d ts %d key %q",
						i, r.Offset, r.Timestamp, r.Key, 1000+i, recs[i].ts, recs[i].key)
				}
			}
		})
	}
}

// The writer indexes as a broker does: an entry once more than index.interval.bytes were
// appended since the last one, naming the batch's last offset and its position, and a time
// entry whenever the largest timestamp so far grew.
func TestWriterIndexSemantics(t *testing.T) {
	fs := vfs.NewMem()
	recs := jitteredRecords(rand.New(rand.NewPCG(2, 2)), 2000)
	writeSegment(t, fs, "", 0, recs, 5, CodecSnappy, 4096)
	seg, err := OpenSegment(fs, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	// Replay the broker's rule over the batches and compare entry by entry.
	var wantIdx [][2]int64
	var wantTime [][2]int64
	var since int64
	maxTS, maxOff, lastTimeEntry := int64(-1), int64(0), int64(-1)
	sc := seg.Scanner(ScanOptions{})
	for sc.Next() {
		b := sc.Batch()
		if b.MaxTimestamp > maxTS {
			maxTS, maxOff = b.MaxTimestamp, b.LastOffset()
		}
		if since > 4096 {
			wantIdx = append(wantIdx, [2]int64{b.LastOffset(), b.Pos})
			if maxTS > lastTimeEntry {
				wantTime = append(wantTime, [2]int64{maxTS, maxOff})
				lastTimeEntry = maxTS
			}
			since = 0
		}
		since += b.Size()
	}
	if maxTS > lastTimeEntry {
		wantTime = append(wantTime, [2]int64{maxTS, maxOff}) // added when the segment is closed
	}
	x := seg.OffsetIndex()
	if x.Len() != len(wantIdx) || len(wantIdx) < 10 {
		t.Fatalf("offset index has %d entries, want %d (and at least 10 for the test to mean something)", x.Len(), len(wantIdx))
	}
	for i, w := range wantIdx {
		if o, p := x.Entry(i); o != w[0] || p != w[1] {
			t.Fatalf("offset index entry %d = (%d, %d), want (%d, %d)", i, o, p, w[0], w[1])
		}
	}
	tx := seg.TimeIndex()
	if tx.Len() != len(wantTime) {
		t.Fatalf("time index has %d entries, want %d", tx.Len(), len(wantTime))
	}
	for i, w := range wantTime {
		if ts, o := tx.Entry(i); ts != w[0] || o != w[1] {
			t.Fatalf("time index entry %d = (%d, %d), want (%d, %d)", i, ts, o, w[0], w[1])
		}
	}
	st, _ := fs.Stat(FileName(0, IndexExt))
	if st.Size() != int64(x.Len()*OffsetIndexEntrySize) {
		t.Fatalf(".index is %d bytes for %d entries: not trimmed", st.Size(), x.Len())
	}
}

// OffsetForTime must answer as ListOffsets does: the first offset whose record timestamp is at
// least T, even though timestamps go backwards. Brute force over the records is the oracle.
func TestOffsetForTimeWithBackwardsTimestamps(t *testing.T) {
	for _, interval := range []int{0, 512, 4096, 1 << 30} {
		t.Run(fmt.Sprint("interval=", interval), func(t *testing.T) {
			fs := vfs.NewMem()
			rng := rand.New(rand.NewPCG(3, uint64(interval)))
			recs := jitteredRecords(rng, 3000)
			writeSegment(t, fs, "", 500, recs, 1+rng.IntN(9), CodecLZ4, interval)
			seg, err := OpenSegment(fs, "", 500)
			if err != nil {
				t.Fatal(err)
			}
			defer seg.Close()
			lo, hi := recs[0].ts-20_000, recs[len(recs)-1].ts+20_000
			for q := 0; q < 400; q++ {
				target := lo + rng.Int64N(hi-lo)
				if q%7 == 0 {
					target = recs[rng.IntN(len(recs))].ts // exact hits
				}
				want, wantFound := int64(0), false
				for i, r := range recs {
					if r.ts >= target {
						want, wantFound = 500+int64(i), true
						break
					}
				}
				got, found, err := seg.OffsetForTime(target)
				if err != nil {
					t.Fatal(err)
				}
				if found != wantFound || got != want {
					t.Fatalf("OffsetForTime(%d) = %d, %t; want %d, %t", target, got, found, want, wantFound)
				}
			}
		})
	}
}

func TestPositionOf(t *testing.T) {
	fs := vfs.NewMem()
	recs := jitteredRecords(rand.New(rand.NewPCG(4, 4)), 1000)
	writeSegment(t, fs, "", 100, recs, 6, CodecNone, 1024)
	seg, err := OpenSegment(fs, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	for off := int64(90); off < 1105; off++ {
		pos, found, err := seg.PositionOf(off)
		if err != nil {
			t.Fatal(err)
		}
		if off >= 1100 {
			if found {
				t.Fatalf("PositionOf(%d) found a batch at %d past the segment's end", off, pos)
			}
			continue
		}
		b, _, err := ReadBatchAt(seg.ReaderAt(), seg.Path, seg.Size(), pos, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := max(off, 100)
		if b.BaseOffset > want || b.LastOffset() < want {
			t.Fatalf("PositionOf(%d) = batch [%d, %d]", off, b.BaseOffset, b.LastOffset())
		}
	}
}

func TestWriterRefusesBadAppends(t *testing.T) {
	fs := vfs.NewMem()
	w, err := CreateWriter("", 10, WriterOptions{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var bld Builder
	bld.Add(&Record{Timestamp: 1, Value: []byte("x")})
	early, _ := bld.Build(nil, BatchOptions{BaseOffset: 9})
	if err := w.Append(early); err == nil {
		t.Fatal("appended a batch whose offset is before the segment's base")
	}
	good, _ := bld.Build(nil, BatchOptions{BaseOffset: 10})
	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 1
	if err := w.Append(bad); !errors.Is(err, ErrChecksum) {
		t.Fatalf("append of a batch with a bad CRC: %v, want ErrChecksum", err)
	}
	if w.Size() != 0 {
		t.Fatalf("a refused append wrote %d bytes", w.Size())
	}
	if err := w.Append(good); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateWriter("", 10, WriterOptions{FS: fs}); err == nil {
		t.Fatal("CreateWriter overwrote an existing segment")
	}
	if err := (&WriterOptions{IndexIntervalBytes: -1}).Validate(); err == nil {
		t.Fatal("Validate accepted a negative index interval")
	}
}

// A failed fsync must reach the caller, and the writer must refuse to go on as if nothing happened.
func TestWriterSurfacesSyncFailure(t *testing.T) {
	inj := errorfs.ErrInjected
	failing := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSync {
			return inj
		}
		return nil
	}))
	w, err := CreateWriter("", 0, WriterOptions{FS: failing})
	if err != nil {
		t.Fatal(err)
	}
	var bld Builder
	bld.Add(&Record{Timestamp: 1, Value: []byte("x")})
	b, _ := bld.Build(nil, BatchOptions{})
	if err := w.Append(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); !errors.Is(err, inj) {
		t.Fatalf("Sync = %v, want the injected error", err)
	}
	b2, _ := bld.Build(nil, BatchOptions{BaseOffset: 1})
	if err := w.Append(b2); err == nil {
		t.Fatal("Append after a failed fsync succeeded")
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after a failed fsync reported success")
	}
}

// Reopening a segment rebuilds its indexes from the log and appends where it ended: the result is
// the same files as writing everything in one go.
func TestOpenWriterContinuesSegment(t *testing.T) {
	recs := jitteredRecords(rand.New(rand.NewPCG(8, 8)), 600)
	oneGo := vfs.NewMem()
	writeSegment(t, oneGo, "", 0, recs, 5, CodecSnappy, 1024)

	twice := vfs.NewMem()
	writeSegment(t, twice, "", 0, recs[:300], 5, CodecSnappy, 1024)
	w, err := OpenWriter("", 0, WriterOptions{FS: twice, IndexIntervalBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if w.NextOffset() != 300 {
		t.Fatalf("reopened writer continues at %d, want 300", w.NextOffset())
	}
	var bld Builder
	for i := 300; i < 600; i += 5 {
		bld.Reset()
		for _, r := range recs[i:min(i+5, 600)] {
			bld.Add(&Record{Timestamp: r.ts, Key: r.key, Value: r.value})
		}
		b, _ := bld.Build(nil, BatchOptions{BaseOffset: int64(i), Codec: CodecSnappy})
		if err := w.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := CheckSegment(twice, "", 0); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{LogExt, IndexExt} {
		a, _ := readWhole(oneGo, FileName(0, ext))
		b, _ := readWhole(twice, FileName(0, ext))
		if !bytes.Equal(a, b) {
			t.Fatalf("%s differs between one writer and a reopened one (%d vs %d bytes)", ext, len(a), len(b))
		}
	}
	// A torn tail is refused, naming where the valid bytes end.
	f, _ := twice.OpenReadWrite(FileName(0, LogExt), vfs.WriteCategoryUnspecified)
	st, _ := f.Stat()
	f.WriteAt([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0}, st.Size())
	f.Close()
	_, err = OpenWriter("", 0, WriterOptions{FS: twice})
	var ce *CorruptionError
	if !errors.As(err, &ce) || !errors.Is(err, ErrTornTail) || ce.Pos != st.Size() {
		t.Fatalf("OpenWriter on a torn segment: %v, want ErrTornTail at %d", err, st.Size())
	}
}

// ReadBatch finds, for every offset, the batch that PositionOf finds, reading it whole.
func TestReadBatchAgreesWithPositionOf(t *testing.T) {
	for _, interval := range []int{0, 300, 1 << 30} {
		fs := vfs.NewMem()
		writeSegment(t, fs, "", 100, jitteredRecords(rand.New(rand.NewPCG(9, uint64(interval))), 700), 7, CodecSnappy, interval)
		seg, err := OpenSegment(fs, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var buf []byte
		for off := int64(95); off < 805; off++ {
			pos, found, err := seg.PositionOf(off)
			if err != nil {
				t.Fatal(err)
			}
			var b Batch
			var ok bool
			b, buf, ok, err = seg.ReadBatch(off, buf)
			if err != nil || ok != found || (found && b.Pos != pos) {
				t.Fatalf("interval %d: ReadBatch(%d) = pos %d, %t, %v; PositionOf = %d, %t", interval, off, b.Pos, ok, err, pos, found)
			}
			if found {
				if err := b.VerifyCRC(); err != nil || b.LastOffset() < off {
					t.Fatalf("ReadBatch(%d): batch [%d, %d], %v", off, b.BaseOffset, b.LastOffset(), err)
				}
			}
		}
		seg.Close()
	}
}

// The writer's own batches are snappy unless asked otherwise, and read back as written.
func TestAppendRecordsDefaultsToSnappy(t *testing.T) {
	for _, o := range []WriterOptions{{}, {NoCompression: true}, {Codec: CodecZstd}} {
		fs := vfs.NewMem()
		o.FS = fs
		w, err := CreateWriter("", 7, o)
		if err != nil {
			t.Fatal(err)
		}
		recs := []Record{{Key: []byte("a"), Value: []byte("1"), Timestamp: 5}, {Value: []byte("2"), Timestamp: 6}}
		if err := w.AppendRecords(recs); err != nil {
			t.Fatal(err)
		}
		if err := w.AppendRecords(recs[:1]); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		want := CodecSnappy
		if o.NoCompression {
			want = CodecNone
		} else if o.Codec != CodecNone {
			want = o.Codec
		}
		seg, err := OpenSegment(fs, "", 7)
		if err != nil {
			t.Fatal(err)
		}
		sc := seg.Scanner(ScanOptions{VerifyCRC: true})
		var bases []int64
		for sc.Next() {
			if c := sc.Batch().Codec(); c != want {
				t.Fatalf("options %+v: batch codec %v, want %v", o, c, want)
			}
			bases = append(bases, sc.Batch().BaseOffset)
		}
		if sc.Err() != nil || len(bases) != 2 || bases[0] != 7 || bases[1] != 9 {
			t.Fatalf("batches at %v, %v", bases, sc.Err())
		}
		seg.Close()
		if err := CheckSegment(fs, "", 7); err != nil {
			t.Fatal(err)
		}
	}
	if err := (&WriterOptions{NoCompression: true, Codec: CodecGzip}).Validate(); err == nil {
		t.Fatal("Validate accepted NoCompression with a codec")
	}
}
