package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	xerial "github.com/eapache/go-xerial-snappy"
)

// ---------------------------------------------------------------------------------------------
// Seeds: real encodings from the independent encoder and from our Builder.

func fuzzRecords(base int64) []tRec {
	return []tRec{
		{Offset: base, Timestamp: 1_700_000_000_000, Key: []byte("1095098195724595200"), Value: []byte(`{"for_user_id":"1"}`),
			Headers: []Header{{Key: []byte("event-id"), Value: []byte("e1")}, {Key: []byte("n"), Value: nil}}},
		{Offset: base + 1, Timestamp: 1_699_999_999_000, Key: nil, Value: []byte{}},
		{Offset: base + 2, Timestamp: 1_700_000_000_500, Key: []byte{}, Value: nil},
	}
}

func batchSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	for i, pc := range indepCodecs {
		b := kBatch{base: int64(i * 3), producerID: -1, producerEpoch: -1, baseSeq: -1, recs: fuzzRecords(int64(i * 3))}
		if i%2 == 1 {
			b.attrs, b.maxTS = attrLogAppendTime, 1_800_000_000_000
		}
		seeds = append(seeds, encodeKmsgBatch(tb, b, pc))
	}
	ctl := kBatch{base: 9, attrs: attrTransactional | attrControl, producerID: 3, producerEpoch: 1, baseSeq: -1,
		recs: []tRec{{Offset: 9, Timestamp: 5, Key: ControlKey(ControlCommit), Value: controlValue(1)}}}
	seeds = append(seeds, encodeKmsgBatch(tb, ctl, indepCodecs[0]))
	var bld Builder
	for c := CodecNone; c <= CodecZstd; c++ {
		bld.Reset()
		for _, r := range fuzzRecords(0) {
			bld.Add(&Record{Timestamp: r.Timestamp, Key: r.Key, Value: r.Value, Headers: r.Headers})
		}
		raw, err := bld.Build(nil, BatchOptions{BaseOffset: 100, Codec: c})
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, raw)
	}
	// Two batches back to back, and one cut short.
	two := append(append([]byte(nil), seeds[0]...), seeds[len(seeds)-1]...)
	seeds = append(seeds, two, two[:len(two)-7])
	return seeds
}

func legacySeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	for _, magic := range []int8{0, 1} {
		seeds = append(seeds, encodeLegacy(magic, lMsg{offset: 5, ts: 1000, key: []byte("k"), value: []byte("v")}))
		seeds = append(seeds, encodeLegacy(magic, lMsg{offset: 6, ts: 1000, key: nil, value: nil}))
		var set []byte
		for i := range 3 {
			off := int64(i)
			if magic == 0 {
				off = 10 + int64(i)
			}
			set = append(set, encodeLegacy(magic, lMsg{offset: off, ts: 2000 + int64(i), value: []byte{'a' + byte(i)}})...)
		}
		for _, w := range []struct {
			c   Codec
			enc []byte
		}{
			{CodecGzip, indepGzip(tb, set)},
			{CodecSnappy, xerial.EncodeStream(nil, set)},
			{CodecSnappy, xerial.Encode(set)},
			{CodecLZ4, indepLZ4(tb, set)},
		} {
			attrs := int8(w.c)
			if magic == 1 && w.c == CodecGzip {
				attrs |= attrLogAppendTime
			}
			seeds = append(seeds, encodeLegacy(magic, lMsg{offset: 12, attrs: attrs, ts: 2002, value: w.enc}))
		}
		seeds = append(seeds, encodeLegacy(magic, lMsg{offset: 12, attrs: int8(CodecLZ4), value: kafka3160(tb, indepLZ4(tb, set))}))
	}
	return seeds
}

// ---------------------------------------------------------------------------------------------
// What any decode of arbitrary bytes must satisfy.

func mustCorruption(t *testing.T, what string, err error, file string, pos int64) {
	t.Helper()
	var ce *CorruptionError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s: %v is not a corruption error", what, err)
	}
	if ce.File != file || ce.Pos != pos {
		t.Fatalf("%s: %v names %s at %d, want %s at %d", what, err, ce.File, ce.Pos, file, pos)
	}
}

func checkDecode(t *testing.T, data []byte) {
	const file = "fuzz.log"
	var rr RecordReader
	for _, verify := range []bool{false, true} {
		sc := NewScanner(bytes.NewReader(data), file, int64(len(data)), ScanOptions{VerifyCRC: verify, BufferSize: 64})
		pos := int64(0)
		for sc.Next() {
			b := sc.Batch()
			if b.Pos != pos || int64(len(b.Raw)) != b.Size() || b.Size() > int64(len(data))-pos || !bytes.Equal(b.Raw, data[pos:pos+b.Size()]) {
				t.Fatalf("batch at %d (want %d) of size %d: Raw does not match the input", b.Pos, pos, b.Size())
			}
			if verify && b.VerifyCRC() != nil {
				t.Fatalf("VerifyCRC scan returned a batch whose CRC fails")
			}
			rb, _, err := ReadBatchAt(bytes.NewReader(data), file, int64(len(data)), pos, nil)
			if err != nil || rb.BatchHeader != b.BatchHeader || !bytes.Equal(rb.Raw, b.Raw) {
				t.Fatalf("ReadBatchAt(%d) = %+v, %v; the scanner read %+v", pos, rb.BatchHeader, err, b.BatchHeader)
			}
			checkBatch(t, b, &rr)
			pos += b.Size()
		}
		if sc.ValidEnd() != pos {
			t.Fatalf("ValidEnd %d, batches end at %d", sc.ValidEnd(), pos)
		}
		if err := sc.Err(); err == nil {
			if pos != int64(len(data)) {
				t.Fatalf("clean end at %d of %d bytes", pos, len(data))
			}
		} else {
			mustCorruption(t, "scan", err, file, pos)
		}
	}
}

func checkBatch(t *testing.T, b *Batch, rr *RecordReader) {
	if err := rr.Reset(b); err != nil {
		mustCorruption(t, "Reset", err, b.File, b.Pos)
		return
	}
	var recs []tRec
	for rr.Next() {
		recs = append(recs, copyRecord(rr.Record()))
	}
	nextErr := rr.Err()
	// NextKey reads the same offsets, timestamps and keys; it checks less (not values and
	// headers), so it may read a batch Next refuses, and it fails only as a corruption.
	if err := rr.Reset(b); err != nil {
		t.Fatalf("second Reset: %v", err)
	}
	n := 0
	for rr.NextKey() {
		r := rr.Record()
		if n < len(recs) && (r.Offset != recs[n].Offset || r.Timestamp != recs[n].Timestamp || !bytes.Equal(r.Key, recs[n].Key)) {
			t.Fatalf("NextKey record %d: offset %d ts %d key %q; Next read %+v", n, r.Offset, r.Timestamp, r.Key, recs[n])
		}
		n++
	}
	if err := rr.Err(); err != nil {
		mustCorruption(t, "NextKey", err, b.File, b.Pos)
		if nextErr == nil {
			t.Fatalf("NextKey failed (%v) where Next read the batch", err)
		}
	} else if nextErr == nil && n != len(recs) {
		t.Fatalf("NextKey read %d records, Next %d", n, len(recs))
	}
	if err := nextErr; err != nil {
		mustCorruption(t, "record", err, b.File, b.Pos)
		return
	}
	if b.TimestampType() == LogAppendTime {
		for _, r := range recs {
			if r.Timestamp != b.MaxTimestamp {
				t.Fatalf("LogAppendTime batch with max timestamp %d gave a record at %d", b.MaxTimestamp, r.Timestamp)
			}
		}
	}
	switch {
	case b.Magic == 2:
		if len(recs) != int(b.NumRecords) {
			t.Fatalf("batch promises %d records, gave %d", b.NumRecords, len(recs))
		}
		if b.Codec() == CodecNone && len(recs) > 0 {
			checkRebuild(t, b, recs)
		}
	case b.Codec() == CodecNone: // legacy, uncompressed: one message, re-encodable byte for byte
		if len(recs) != 1 {
			t.Fatalf("legacy message gave %d records", len(recs))
		}
		r := recs[0]
		wantTS := b.MaxTimestamp
		if b.Magic == 0 {
			wantTS = NoTimestamp
		}
		if r.Offset != b.BaseOffset || r.Timestamp != wantTS || len(r.Headers) != 0 {
			t.Fatalf("legacy record %+v does not match its header %+v", r, b.BatchHeader)
		}
		again := encodeLegacy(b.Magic, lMsg{offset: r.Offset, attrs: int8(b.Attributes), ts: r.Timestamp, key: r.Key, value: r.Value})
		if !bytes.Equal(again, b.Raw) {
			t.Fatalf("legacy message re-encodes to %x, was %x", again, b.Raw)
		}
	default: // legacy wrapper
		if b.Magic == 1 && len(recs) > 0 && recs[len(recs)-1].Offset != b.BaseOffset {
			t.Fatalf("magic-1 wrapper at offset %d: last inner record at %d", b.BaseOffset, recs[len(recs)-1].Offset)
		}
	}
}

// checkRebuild: records of an uncompressed magic-2 batch with consecutive offsets, encoded again
// by the Builder, read back the same.
func checkRebuild(t *testing.T, b *Batch, recs []tRec) {
	for i, r := range recs {
		if r.Offset != b.BaseOffset+int64(i) {
			return // offsets with gaps: the Builder cannot write them
		}
	}
	var bld Builder
	for _, r := range recs {
		bld.Add(&Record{Timestamp: r.Timestamp, Key: r.Key, Value: r.Value, Headers: r.Headers})
	}
	raw, err := bld.Build(nil, BatchOptions{
		BaseOffset: b.BaseOffset, PartitionLeaderEpoch: b.PartitionLeaderEpoch,
		LogAppendTime: b.TimestampType() == LogAppendTime, MaxTimestamp: b.MaxTimestamp,
		Transactional: b.IsTransactional(), Control: b.IsControl(),
		HasProducer: true, ProducerID: b.ProducerID, ProducerEpoch: b.ProducerEpoch, BaseSequence: b.BaseSequence,
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	got := scanBytes(raw, "rebuilt", ScanOptions{VerifyCRC: true})
	if got.err != nil {
		t.Fatalf("rebuilt batch does not read back: %v", got.err)
	}
	checkRecords(t, "rebuilt", got.all(), recs)
	h := got.headers[0]
	if h.BaseOffset != b.BaseOffset || h.IsControl() != b.IsControl() || h.IsTransactional() != b.IsTransactional() ||
		h.ProducerID != b.ProducerID || h.ProducerEpoch != b.ProducerEpoch || h.BaseSequence != b.BaseSequence {
		t.Fatalf("rebuilt header %+v, was %+v", h, b.BatchHeader)
	}
}

func FuzzBatchDecode(f *testing.F) {
	for _, s := range batchSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkDecode(t, data) })
}

func FuzzLegacyDecode(f *testing.F) {
	for _, s := range legacySeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkDecode(t, data) })
}

// ---------------------------------------------------------------------------------------------
// Snappy in xerial framing.

func FuzzSnappyFraming(f *testing.F) {
	for _, s := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("snappy "), 3000), []byte(`{"for_user_id":"2244994945"}`)} {
		f.Add(s, uint16(32<<10))
		f.Add(xerial.EncodeStream(nil, s), uint16(7))
		f.Add(EncodeXerialSnappy(nil, s, 100), uint16(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, blockSize uint16) {
		// Decoding arbitrary bytes never panics, as framing or as a block, and when both this
		// package and eapache/go-xerial-snappy accept framed input they agree.
		var d Decompressor
		out, err := d.Decompress(CodecSnappy, nil, data, false)
		if err == nil && IsXerialSnappy(data) {
			if theirs, err2 := xerial.Decode(data); err2 == nil && !bytes.Equal(out, theirs) {
				t.Fatalf("xerial decode differs from eapache's: %q vs %q", out, theirs)
			}
		}
		if ours, err := decodeXerial(nil, data); err == nil && len(ours) > maxDecompressed {
			t.Fatalf("decoded past the limit")
		}

		// Encode, then decode, with ours and the independent library.
		bs := int(blockSize) + 1
		enc := EncodeXerialSnappy([]byte("pre"), data, bs)
		if !bytes.HasPrefix(enc, []byte("pre")) {
			t.Fatalf("EncodeXerialSnappy overwrote dst")
		}
		enc = enc[3:]
		if !IsXerialSnappy(enc) {
			t.Fatalf("EncodeXerialSnappy output is not recognised as xerial")
		}
		for name, dec := range map[string]func([]byte) ([]byte, error){
			"ours":    func(b []byte) ([]byte, error) { return d.Decompress(CodecSnappy, nil, b, false) },
			"eapache": xerial.Decode,
		} {
			got, err := dec(enc)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s decoding of our xerial encoding (block %d): %v, %d bytes, want %d", name, bs, err, len(got), len(data))
			}
		}
		// Chunks are at most blockSize of input each.
		if n := countXerialChunks(t, enc); n != (len(data)+bs-1)/bs {
			t.Fatalf("%d chunks for %d bytes in blocks of %d", n, len(data), bs)
		}
		got, err := d.Decompress(CodecSnappy, nil, xerial.EncodeStream(nil, data), false)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("decoding eapache's encoding: %v", err)
		}
	})
}

func countXerialChunks(t *testing.T, b []byte) int {
	n := 0
	for p := 16; p < len(b); n++ {
		l := int(binary.BigEndian.Uint32(b[p:]))
		p += 4 + l
		if p > len(b) {
			t.Fatalf("chunk overruns")
		}
	}
	return n
}

// ---------------------------------------------------------------------------------------------
// Index files.

func FuzzOffsetIndex(f *testing.F) {
	var good []byte
	for i := range 5 {
		good = appendOffsetEntry(good, 1000, 1000+int64(i*10), int64(4096*(i+1)))
	}
	f.Add(good, int64(1000))
	f.Add(append(append([]byte(nil), good...), make([]byte, 24)...), int64(1000)) // preallocated tail
	f.Add(append(append([]byte(nil), good...), 0, 0, 0, 1), int64(1000))          // torn
	f.Add([]byte{}, int64(0))
	f.Fuzz(func(t *testing.T, data []byte, base int64) {
		base &= 1<<62 - 1
		x, err := ParseOffsetIndex("fuzz.index", base, data)
		if err != nil {
			mustIndexCorruption(t, err, len(data))
			return
		}
		n := x.Len()
		if n*OffsetIndexEntrySize > len(data) || !allZero(data[n*OffsetIndexEntrySize:]) {
			t.Fatalf("%d entries, but bytes after them are not all zero", n)
		}
		var again []byte
		prevOff, prevPos := int64(-1), int64(-1)
		for i := range n {
			off, pos := x.Entry(i)
			if off < base || pos < 0 || off <= prevOff || pos <= prevPos {
				t.Fatalf("entry %d (%d, %d) after (%d, %d), base %d", i, off, pos, prevOff, prevPos, base)
			}
			again = appendOffsetEntry(again, base, off, pos)
			prevOff, prevPos = off, pos
			// Lookup of an entry's offset finds it; of the offset before it, the entry before.
			if o, p := x.Lookup(off); o != off || p != pos {
				t.Fatalf("Lookup(%d) = (%d, %d), want the entry (%d, %d)", off, o, p, off, pos)
			}
			wantO, wantP := base, int64(0)
			if i > 0 {
				wantO, wantP = x.Entry(i - 1)
			}
			if o, p := x.Lookup(off - 1); o != wantO || p != wantP {
				t.Fatalf("Lookup(%d) = (%d, %d), want (%d, %d)", off-1, o, p, wantO, wantP)
			}
		}
		if !bytes.Equal(again, data[:n*OffsetIndexEntrySize]) {
			t.Fatalf("entries re-encode differently")
		}
	})
}

func FuzzTimeIndex(f *testing.F) {
	var good []byte
	for i := range 5 {
		good = appendTimeEntry(good, 50, 1_700_000_000_000+int64(i*1000), 50+int64(i*3))
	}
	f.Add(good, int64(50))
	f.Add(append(append([]byte(nil), good...), make([]byte, 36)...), int64(50))
	f.Add(append(append([]byte(nil), good...), 7), int64(50))
	f.Add([]byte{}, int64(0))
	f.Fuzz(func(t *testing.T, data []byte, base int64) {
		base &= 1<<62 - 1
		x, err := ParseTimeIndex("fuzz.timeindex", base, data)
		if err != nil {
			mustIndexCorruption(t, err, len(data))
			return
		}
		n := x.Len()
		if n*TimeIndexEntrySize > len(data) || !allZero(data[n*TimeIndexEntrySize:]) {
			t.Fatalf("%d entries, but bytes after them are not all zero", n)
		}
		if ts, off := x.LastEntry(); n == 0 && (ts != -1 || off != base) {
			t.Fatalf("LastEntry of an empty index = (%d, %d)", ts, off)
		}
		var again []byte
		prevTS, prevOff := int64(-1<<63), int64(-1)
		for i := range n {
			ts, off := x.Entry(i)
			if off < base || (i > 0 && ts <= prevTS) || off < prevOff {
				t.Fatalf("entry %d (%d, %d) after (%d, %d), base %d", i, ts, off, prevTS, prevOff, base)
			}
			again = appendTimeEntry(again, base, ts, off)
			prevTS, prevOff = ts, off
			if gts, goff := x.Lookup(ts); gts != ts || goff != off {
				t.Fatalf("Lookup(%d) = (%d, %d), want (%d, %d)", ts, gts, goff, ts, off)
			}
			if ts > -1<<63 {
				wantTS, wantOff := int64(-1), base
				if i > 0 {
					wantTS, wantOff = x.Entry(i - 1)
				}
				if gts, goff := x.Lookup(ts - 1); gts != wantTS || goff != wantOff {
					t.Fatalf("Lookup(%d) = (%d, %d), want (%d, %d)", ts-1, gts, goff, wantTS, wantOff)
				}
			}
		}
		if n > 0 {
			if ts, off := x.LastEntry(); ts != prevTS || off != prevOff {
				t.Fatalf("LastEntry = (%d, %d), want (%d, %d)", ts, off, prevTS, prevOff)
			}
		}
		if !bytes.Equal(again, data[:n*TimeIndexEntrySize]) {
			t.Fatalf("entries re-encode differently")
		}
	})
}

func mustIndexCorruption(t *testing.T, err error, size int) {
	t.Helper()
	var ce *CorruptionError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.Pos < 0 || ce.Pos > int64(size) {
		t.Fatalf("index error %v is not a corruption error inside the file", err)
	}
}
