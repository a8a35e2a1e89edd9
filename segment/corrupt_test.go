package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"strings"
	"testing"

	xerial "github.com/eapache/go-xerial-snappy"
)

// corruptLog is a log of small batches of every kind, each encoded independently (kmsg for
// magic 2, kmsg.MessageV0/V1 for legacy), with the byte position of each.
type corruptLog struct {
	data   []byte
	starts []int64
	crcAt  []int // first CRC-covered byte of each batch, relative to its start
	names  []string
	// records of each batch, as an independent decoder put them in
	want [][]tRec
}

func buildCorruptLog(t testing.TB) corruptLog {
	t.Helper()
	var l corruptLog
	add := func(name string, raw []byte, crcAt int, want []tRec) {
		l.starts = append(l.starts, int64(len(l.data)))
		l.data = append(l.data, raw...)
		l.crcAt = append(l.crcAt, crcAt)
		l.names = append(l.names, name)
		l.want = append(l.want, want)
	}
	const ts = 1_700_000_000_000
	small := func(base int64) []tRec {
		return []tRec{
			{Offset: base, Timestamp: ts, Key: []byte("k"), Value: []byte("value one"), Headers: []Header{{Key: []byte("event-id"), Value: []byte("x")}}},
			{Offset: base + 1, Timestamp: ts - 7, Key: nil, Value: []byte("value two value two")},
		}
	}
	next := int64(0)
	for _, pc := range indepCodecs {
		b := kBatch{base: next, producerID: -1, producerEpoch: -1, baseSeq: -1, recs: small(next)}
		add("magic2/"+pc.name, encodeKmsgBatch(t, b, pc), offAttributes, b.wantRecords())
		next += 2
	}
	// Legacy entries: uncompressed magic 0 and 1, and wrappers of each.
	for _, magic := range []int8{0, 1} {
		m := lMsg{offset: next, ts: ts, key: []byte("key"), value: []byte("a legacy value")}
		wts := int64(ts)
		if magic == 0 {
			wts = NoTimestamp
		}
		add(fmt.Sprintf("magic%d/none", magic), encodeLegacy(magic, m), LogOverhead+4, []tRec{{Offset: next, Timestamp: wts, Key: m.key, Value: m.value}})
		next++
		var set []byte
		var want []tRec
		for i := range 3 {
			inner := lMsg{offset: next + int64(i), ts: ts + int64(i), value: []byte(fmt.Sprintf("inner %d", i))}
			if magic == 1 {
				inner.offset = int64(i)
			}
			set = append(set, encodeLegacy(magic, inner)...)
			r := tRec{Offset: next + int64(i), Timestamp: ts + int64(i), Value: inner.value}
			if magic == 0 {
				r.Timestamp = NoTimestamp
			}
			want = append(want, r)
		}
		for _, w := range []struct {
			name  string
			codec Codec
			enc   []byte
		}{
			{"gzip", CodecGzip, indepGzip(t, set)},
			{"snappy-xerial", CodecSnappy, xerial.EncodeStream(nil, set)},
		} {
			add(fmt.Sprintf("magic%d/%s", magic, w.name), encodeLegacy(magic, lMsg{offset: next + 2, attrs: int8(w.codec), ts: ts + 2, value: w.enc}), LogOverhead+4, want)
		}
		next += 3
		// Offsets repeat between the two wrappers above; the reader does not care, and neither
		// does this test.
	}
	return l
}

func checkCorruption(t *testing.T, err error, kind error, file string, pos int64) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v at byte %d", kind, pos)
	}
	if !errors.Is(err, kind) || !errors.Is(err, ErrCorrupt) || !IsCorruption(err) {
		t.Fatalf("error %q: want %v (and ErrCorrupt)", err, kind)
	}
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("error %q is not a *CorruptionError", err)
	}
	if ce.File != file || ce.Pos != pos {
		t.Fatalf("error %q names %s at %d, want %s at %d", err, ce.File, ce.Pos, file, pos)
	}
	if msg := err.Error(); !strings.Contains(msg, file) || !strings.Contains(msg, fmt.Sprint(pos)) {
		t.Fatalf("error text %q does not name the file %s and byte %d", msg, file, pos)
	}
}

func TestCorruptLogReadsWhole(t *testing.T) {
	l := buildCorruptLog(t)
	got := scanBytes(l.data, "whole.log", ScanOptions{VerifyCRC: true, BufferSize: 64})
	if got.err != nil {
		t.Fatal(got.err)
	}
	if len(got.records) != len(l.want) {
		t.Fatalf("%d batches, want %d", len(got.records), len(l.want))
	}
	for i := range l.want {
		if got.pos[i] != l.starts[i] {
			t.Errorf("batch %d (%s) at %d, want %d", i, l.names[i], got.pos[i], l.starts[i])
		}
		checkRecords(t, l.names[i], got.records[i], l.want[i])
	}
}

// A file cut anywhere inside its last batch: everything before is returned, and the scan says
// the tail is torn at the last batch's start, which is also where the file can be truncated.
func TestCorruptTornTail(t *testing.T) {
	l := buildCorruptLog(t)
	// Make each kind of batch the last one in turn.
	for k := range l.starts {
		end := int64(len(l.data))
		if k+1 < len(l.starts) {
			end = l.starts[k+1]
		}
		start := l.starts[k]
		for cut := start + 1; cut < end; cut++ {
			data := l.data[:cut]
			for _, opts := range []ScanOptions{{VerifyCRC: true, BufferSize: 4096}, {VerifyCRC: false, BufferSize: 16}} {
				const file = "torn/00000000000000000000.log"
				sc := NewScanner(bytes.NewReader(data), file, int64(len(data)), opts)
				n := 0
				var rr RecordReader
				for sc.Next() {
					if sc.Batch().Pos != l.starts[n] {
						t.Fatalf("%s cut at %d: batch %d at %d, want %d", l.names[k], cut, n, sc.Batch().Pos, l.starts[n])
					}
					if err := rr.Reset(sc.Batch()); err != nil {
						t.Fatalf("%s cut at %d: batch %d: %v", l.names[k], cut, n, err)
					}
					for rr.Next() {
					}
					if rr.Err() != nil {
						t.Fatalf("%s cut at %d: batch %d: %v", l.names[k], cut, n, rr.Err())
					}
					n++
				}
				if n != k {
					t.Fatalf("%s cut at %d: %d batches returned, want the %d before it (err %v)", l.names[k], cut, n, k, sc.Err())
				}
				checkCorruption(t, sc.Err(), ErrTornTail, file, start)
				if !IsTornTail(sc.Err()) {
					t.Fatalf("IsTornTail false for %v", sc.Err())
				}
				if sc.ValidEnd() != start {
					t.Fatalf("%s cut at %d: ValidEnd %d, want %d", l.names[k], cut, sc.ValidEnd(), start)
				}
				if sc.Next() {
					t.Fatalf("Next after the error returned a batch")
				}
			}
			_, _, err := ReadBatchAt(bytes.NewReader(data), "torn.log", int64(len(data)), start, nil)
			checkCorruption(t, err, ErrTornTail, "torn.log", start)
		}
	}
}

// A single bit flipped anywhere in the bytes a batch's CRC covers is reported as a checksum
// mismatch of that batch: by the scanner when it verifies CRCs, else by RecordReader.Reset. No
// record of the damaged batch is ever returned, and nothing panics.
func TestCorruptBitFlips(t *testing.T) {
	l := buildCorruptLog(t)
	const file = "flip/00000000000000000000.log"
	prefix := l.data[l.starts[0]:l.starts[1]] // an intact batch before the damaged one
	start := int64(len(prefix))
	var rr RecordReader
	for k := range l.starts {
		end := int64(len(l.data))
		if k+1 < len(l.starts) {
			end = l.starts[k+1]
		}
		batch := l.data[l.starts[k]:end]
		data := append(append([]byte(nil), prefix...), batch...)
		buf := make([]byte, len(data))
		for at := start + int64(l.crcAt[k]); at < int64(len(data)); at++ {
			for bit := range 8 {
				copy(buf, data)
				buf[at] ^= 1 << bit
				what := fmt.Sprintf("%s: bit %d of batch byte %d", l.names[k], bit, at-start)
				kind := ErrChecksum
				if at-start == offMagic {
					// A legacy magic byte is CRC-covered, but once it is damaged the reader cannot
					// know which format's CRC to check: malformed (unknown magic, bad framing) is
					// as right as a checksum mismatch. Either way no record may come out.
					kind = ErrCorrupt
				}
				check := func(what string, err error) {
					t.Helper()
					if err == nil || !errors.Is(err, kind) {
						t.Fatalf("%s: error %v, want %v", what, err, kind)
					}
					checkCorruption(t, err, kind, file, start)
				}

				// With VerifyCRC, the scanner stops at the batch.
				sc := NewScanner(bytes.NewReader(buf), file, int64(len(buf)), ScanOptions{VerifyCRC: true, BufferSize: 512})
				n := 0
				for sc.Next() {
					n++
				}
				if n != 1 {
					t.Fatalf("%s: VerifyCRC scan returned %d batches, want 1 (err %v)", what, n, sc.Err())
				}
				check(what+" (scan with VerifyCRC)", sc.Err())
				if sc.ValidEnd() != start {
					t.Fatalf("%s: ValidEnd %d, want %d", what, sc.ValidEnd(), start)
				}

				// Without it, the record reader refuses the batch at Reset; no record of it is read.
				sc = NewScanner(bytes.NewReader(buf), file, int64(len(buf)), ScanOptions{BufferSize: 512})
				n = 0
				var err error
				for err == nil && sc.Next() {
					if err = rr.Reset(sc.Batch()); err != nil {
						break
					}
					for rr.Next() {
						if n > 0 {
							t.Fatalf("%s: a record of the damaged batch was returned: %+v", what, copyRecord(rr.Record()))
						}
					}
					err = rr.Err()
					n++
				}
				if err == nil {
					err = sc.Err()
				}
				check(what+" (scan, then RecordReader)", err)

				// And so does a targeted read.
				b, _, err := ReadBatchAt(bytes.NewReader(buf), file, int64(len(buf)), start, nil)
				if err == nil {
					err = rr.Reset(&b)
				}
				check(what+" (ReadBatchAt)", err)
			}
		}
	}
}

// Bytes outside the CRC (offset, length, leader epoch, magic) can be damaged too. Such damage
// may go unnoticed (a base offset is not checked by anything), but it must never panic, and
// whatever error comes back is a corruption error naming the file.
func TestCorruptOutsideCRCNeverPanics(t *testing.T) {
	l := buildCorruptLog(t)
	buf := make([]byte, len(l.data))
	for k, start := range l.starts {
		for at := start; at < start+int64(l.crcAt[k]); at++ {
			for bit := range 8 {
				copy(buf, l.data)
				buf[at] ^= 1 << bit
				got := scanBytes(buf, "outside.log", ScanOptions{VerifyCRC: bit%2 == 0, BufferSize: 4096})
				if got.err != nil && !IsCorruption(got.err) {
					t.Fatalf("%s: bit %d of batch byte %d: %v is not a corruption error", l.names[k], bit, at-start, got.err)
				}
				if len(got.records) < k {
					t.Fatalf("%s: bit %d of batch byte %d: only %d batches before it were read (%v)", l.names[k], bit, at-start, len(got.records), got.err)
				}
			}
		}
	}
}

func TestCorruptErrorKinds(t *testing.T) {
	for _, kind := range []error{ErrTornTail, ErrChecksum, ErrMalformed} {
		err := fmt.Errorf("wrapped: %w", &CorruptionError{File: "f.log", Pos: 1234, Kind: kind, Detail: "d"})
		if !errors.Is(err, ErrCorrupt) || !errors.Is(err, kind) {
			t.Errorf("%v does not match ErrCorrupt and its kind", err)
		}
		for _, other := range []error{ErrTornTail, ErrChecksum, ErrMalformed} {
			if other != kind && errors.Is(err, other) {
				t.Errorf("%v matches %v too", err, other)
			}
		}
		if IsTornTail(err) != (kind == ErrTornTail) {
			t.Errorf("IsTornTail(%v) wrong", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "f.log") || !strings.Contains(msg, "1234") {
			t.Errorf("%q does not name the file and position", msg)
		}
	}
	if IsCorruption(errors.New("i/o error")) {
		t.Errorf("a plain error counted as corruption")
	}
}

// Malformed contents under a valid CRC (what a buggy writer produces) are ErrMalformed, not a
// wrong record.
func TestCorruptMalformedUnderValidCRC(t *testing.T) {
	fixCRC := func(raw []byte) []byte {
		raw[17], raw[18], raw[19], raw[20] = 0, 0, 0, 0
		c := crcOf(raw[21:])
		raw[17], raw[18], raw[19], raw[20] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
		return raw
	}
	base := func() []byte {
		b := kBatch{producerID: -1, producerEpoch: -1, baseSeq: -1, recs: []tRec{{Offset: 0, Timestamp: 1, Key: []byte("k"), Value: []byte("v")}, {Offset: 1, Timestamp: 2, Value: []byte("w")}}}
		return encodeKmsgBatch(t, b, indepCodecs[0])
	}
	cases := map[string]func([]byte) []byte{
		"record count too high": func(raw []byte) []byte { raw[60] = 3; return fixCRC(raw) },
		"record count too low":  func(raw []byte) []byte { raw[60] = 1; return fixCRC(raw) },
		"codec 6":               func(raw []byte) []byte { raw[22] |= 6; return fixCRC(raw) },
		"gzip codec on plain records": func(raw []byte) []byte {
			raw[22] |= byte(CodecGzip)
			return fixCRC(raw)
		},
		"record length overruns": func(raw []byte) []byte { raw[61] = 0x7e; return fixCRC(raw) },
	}
	for name, mutate := range cases {
		raw := mutate(base())
		got := scanBytes(raw, "bad.log", ScanOptions{VerifyCRC: true})
		if got.err == nil {
			t.Errorf("%s: no error; records %+v", name, got.records)
			continue
		}
		if !errors.Is(got.err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, got.err)
		}
		var ce *CorruptionError
		if errors.As(got.err, &ce) && ce.Pos != 0 {
			t.Errorf("%s: position %d", name, ce.Pos)
		}
		// NextKey checks the same framing.
		raw = mutate(base())
		sc := NewScanner(bytes.NewReader(raw), "bad.log", int64(len(raw)), ScanOptions{VerifyCRC: true})
		var err error
		if !sc.Next() {
			err = sc.Err()
		} else {
			var rr RecordReader
			if err = rr.Reset(sc.Batch()); err == nil {
				for rr.NextKey() {
				}
				err = rr.Err()
			}
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: NextKey: %v, want ErrMalformed", name, err)
		}
	}
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, crcC) }

// A few bytes that claim to decompress to hundreds of megabytes are rejected as malformed
// without allocating what they claim: a damaged log must not make a reader balloon.
func TestCorruptCodecSizeClaimsDoNotAllocate(t *testing.T) {
	const claim = 200 << 20
	snappyBlock := append(binary.AppendUvarint(nil, claim), 0, 'x') // literal of 1 byte
	xerialFramed := xerial.EncodeStream(nil, []byte("intact first chunk"))
	xerialFramed = binary.BigEndian.AppendUint32(xerialFramed, uint32(len(snappyBlock)))
	xerialFramed = append(xerialFramed, snappyBlock...)
	zstdFrame := []byte{0x28, 0xB5, 0x2F, 0xFD, 0xE0} // single segment, 8-byte content size
	zstdFrame = binary.LittleEndian.AppendUint64(zstdFrame, claim)
	zstdFrame = append(zstdFrame, 0x09, 0, 0, 'x') // last block, raw, 1 byte
	cases := []struct {
		name    string
		codec   Codec
		payload []byte
	}{
		{"snappy-raw", CodecSnappy, snappyBlock},
		{"snappy-xerial", CodecSnappy, xerialFramed},
		{"zstd", CodecZstd, zstdFrame},
	}
	var rr RecordReader
	for _, c := range cases {
		recs := []tRec{{Offset: 0, Timestamp: 1, Value: []byte("v")}}
		// Warm the reader's decoder with a good batch of the codec.
		good := encodeKmsgBatch(t, kBatch{producerID: -1, producerEpoch: -1, baseSeq: -1, recs: recs}, indepCodecs[0])
		pc := payloadCodec{c.name, c.codec, nil}
		for _, ic := range indepCodecs {
			if ic.codec == c.codec {
				good = encodeKmsgBatch(t, kBatch{producerID: -1, producerEpoch: -1, baseSeq: -1, recs: recs}, ic)
			}
		}
		pc.enc = func(testing.TB, []byte) []byte { return c.payload }
		bad := encodeKmsgBatch(t, kBatch{producerID: -1, producerEpoch: -1, baseSeq: -1, recs: recs}, pc)
		for _, raw := range [][]byte{good, bad} {
			sc := NewScanner(bytes.NewReader(raw), "claim.log", int64(len(raw)), ScanOptions{VerifyCRC: true, BufferSize: 4096})
			if !sc.Next() {
				t.Fatalf("%s: %v", c.name, sc.Err())
			}
			rr.buf = nil // as cold as a new reader, its decoders still warm
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before := ms.TotalAlloc
			err := rr.Reset(sc.Batch())
			runtime.ReadMemStats(&ms)
			if &raw[0] == &good[0] {
				if err != nil {
					t.Fatalf("%s: good batch: %v", c.name, err)
				}
				continue
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: a payload claiming %d bytes gave %v, want ErrMalformed", c.name, claim, err)
			}
			if got := ms.TotalAlloc - before; got > 16<<20 {
				t.Errorf("%s: a %d-byte payload made the reader allocate %d MiB", c.name, len(c.payload), got>>20)
			}
		}
	}
}
