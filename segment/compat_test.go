package segment

// Compatibility tests against an independent encoder: franz-go's kmsg types for the framing and
// the codec libraries (stdlib gzip, golang/snappy, eapache/go-xerial-snappy as sarama uses it,
// pierrec/lz4, klauspost/zstd) for the payloads; and against files a real Kafka 0.8 broker wrote.

import (
	"bufio"
	"bytes"
	stdgzip "compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	xerial "github.com/eapache/go-xerial-snappy"
	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ---------------------------------------------------------------------------------------------
// Independent codecs.

// payloadCodec is one way an independent library compresses a batch payload.
type payloadCodec struct {
	name  string
	codec Codec
	enc   func(t testing.TB, src []byte) []byte
}

var crcC = crc32.MakeTable(crc32.Castagnoli)

func indepGzip(t testing.TB, src []byte) []byte {
	var buf bytes.Buffer
	w := stdgzip.NewWriter(&buf)
	if _, err := w.Write(src); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func indepLZ4(t testing.TB, src []byte, opts ...lz4.Option) []byte {
	var buf bytes.Buffer
	w := lz4.NewWriter(&buf)
	if err := w.Apply(opts...); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(src); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func indepZstd(t testing.TB, src []byte) []byte {
	w, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(src, nil)
}

var indepCodecs = []payloadCodec{
	{"none", CodecNone, func(_ testing.TB, src []byte) []byte { return append([]byte(nil), src...) }},
	{"gzip", CodecGzip, indepGzip},
	{"snappy-raw", CodecSnappy, func(_ testing.TB, src []byte) []byte { return snappy.Encode(nil, src) }},
	{"snappy-xerial", CodecSnappy, func(_ testing.TB, src []byte) []byte { return xerial.EncodeStream(nil, src) }},
	{"lz4", CodecLZ4, func(t testing.TB, src []byte) []byte { return indepLZ4(t, src) }},
	{"lz4-64k-checksums", CodecLZ4, func(t testing.TB, src []byte) []byte {
		return indepLZ4(t, src, lz4.BlockSizeOption(lz4.Block64Kb), lz4.BlockChecksumOption(true), lz4.ChecksumOption(true))
	}},
	{"zstd", CodecZstd, indepZstd},
}

// indepDecompress decompresses with the independent libraries (eapache's Decode reads both a
// raw snappy block and xerial framing).
func indepDecompress(t testing.TB, c Codec, src []byte) []byte {
	t.Helper()
	switch c {
	case CodecNone:
		return src
	case CodecGzip:
		r, err := stdgzip.NewReader(bytes.NewReader(src))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		return out
	case CodecSnappy:
		out, err := xerial.Decode(src)
		if err != nil {
			t.Fatalf("snappy: %v", err)
		}
		return out
	case CodecLZ4:
		out, err := io.ReadAll(lz4.NewReader(bytes.NewReader(src)))
		if err != nil {
			t.Fatalf("lz4: %v", err)
		}
		return out
	case CodecZstd:
		d, err := zstd.NewReader(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		out, err := d.DecodeAll(src, nil)
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		return out
	}
	t.Fatalf("no independent decoder for codec %v", c)
	return nil
}

// ---------------------------------------------------------------------------------------------
// Records, copied out of the reader so they outlive it.

type tRec struct {
	Offset    int64
	Timestamp int64
	Key       []byte
	Value     []byte
	Headers   []Header
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func copyRecord(r *Record) tRec {
	out := tRec{Offset: r.Offset, Timestamp: r.Timestamp, Key: cloneBytes(r.Key), Value: cloneBytes(r.Value)}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, Header{Key: cloneBytes(h.Key), Value: cloneBytes(h.Value)})
	}
	return out
}

func showBytes(b []byte) string {
	if b == nil {
		return "null"
	}
	if len(b) > 40 {
		return fmt.Sprintf("%q...(%d bytes)", b[:40], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// sameBytes compares two byte strings, a null one differing from an empty one.
func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

// diffRecord says how got differs from want, or "" when they are the same record.
func diffRecord(got, want tRec) string {
	var d []string
	if got.Offset != want.Offset {
		d = append(d, fmt.Sprintf("offset %d, want %d", got.Offset, want.Offset))
	}
	if got.Timestamp != want.Timestamp {
		d = append(d, fmt.Sprintf("timestamp %d, want %d", got.Timestamp, want.Timestamp))
	}
	if !sameBytes(got.Key, want.Key) {
		d = append(d, fmt.Sprintf("key %s, want %s", showBytes(got.Key), showBytes(want.Key)))
	}
	if !sameBytes(got.Value, want.Value) {
		d = append(d, fmt.Sprintf("value %s, want %s", showBytes(got.Value), showBytes(want.Value)))
	}
	if len(got.Headers) != len(want.Headers) {
		d = append(d, fmt.Sprintf("%d headers, want %d", len(got.Headers), len(want.Headers)))
	} else {
		for i := range got.Headers {
			g, w := got.Headers[i], want.Headers[i]
			if !bytes.Equal(g.Key, w.Key) || !sameBytes(g.Value, w.Value) {
				d = append(d, fmt.Sprintf("header %d %s=%s, want %s=%s", i, showBytes(g.Key), showBytes(g.Value), showBytes(w.Key), showBytes(w.Value)))
			}
		}
	}
	return strings.Join(d, "; ")
}

func checkRecords(t testing.TB, what string, got, want []tRec) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if d := diffRecord(got[i], want[i]); d != "" {
			t.Errorf("%s: record %d: %s", what, i, d)
		}
	}
}

// scanned is what scanning a byte string gave.
type scanned struct {
	headers []BatchHeader
	pos     []int64
	records [][]tRec // per batch
	err     error    // the scanner's or a record reader's first error
}

func (s *scanned) all() []tRec {
	var out []tRec
	for _, r := range s.records {
		out = append(out, r...)
	}
	return out
}

// scanBytes reads every batch of data with a Scanner and a RecordReader.
func scanBytes(data []byte, file string, opts ScanOptions) scanned {
	var out scanned
	sc := NewScanner(bytes.NewReader(data), file, int64(len(data)), opts)
	var rr RecordReader
	for sc.Next() {
		b := sc.Batch()
		out.headers = append(out.headers, b.BatchHeader)
		out.pos = append(out.pos, b.Pos)
		var recs []tRec
		if err := rr.Reset(b); err != nil {
			out.err = err
			return out
		}
		for rr.Next() {
			recs = append(recs, copyRecord(rr.Record()))
		}
		out.records = append(out.records, recs)
		if err := rr.Err(); err != nil {
			out.err = err
			return out
		}
	}
	out.err = sc.Err()
	return out
}

// ---------------------------------------------------------------------------------------------
// Magic-2 batches encoded with kmsg.

type kBatch struct {
	base          int64
	leaderEpoch   int32
	attrs         int16
	maxTS         int64 // 0: the largest record timestamp
	producerID    int64
	producerEpoch int16
	baseSeq       int32
	recs          []tRec // Offset is the absolute offset; Timestamp the record's CreateTime
}

// encodeKmsgBatch encodes b with kmsg's types and the payload codec pc, computing Length and
// the CRC-32C (over everything from the attributes on) as KIP-98 specifies.
func encodeKmsgBatch(t testing.TB, b kBatch, pc payloadCodec) []byte {
	t.Helper()
	firstTS := b.recs[0].Timestamp
	maxTS := firstTS
	var records []byte
	for _, r := range b.recs {
		maxTS = max(maxTS, r.Timestamp)
		kr := kmsg.Record{
			TimestampDelta64: r.Timestamp - firstTS,
			OffsetDelta:      int32(r.Offset - b.base),
			Key:              r.Key,
			Value:            r.Value,
		}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kmsg.Header{Key: string(h.Key), Value: h.Value})
		}
		body := kr.AppendTo(nil) // with Length 0, a one-byte varint
		kr.Length = int32(len(body) - 1)
		records = kr.AppendTo(records)
	}
	if b.maxTS != 0 {
		maxTS = b.maxTS
	}
	attrs := b.attrs&^attrCodecMask | int16(pc.codec)
	last := b.recs[len(b.recs)-1].Offset - b.base
	kb := kmsg.RecordBatch{
		FirstOffset:          b.base,
		PartitionLeaderEpoch: b.leaderEpoch,
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      int32(last),
		FirstTimestamp:       firstTS,
		MaxTimestamp:         maxTS,
		ProducerID:           b.producerID,
		ProducerEpoch:        b.producerEpoch,
		FirstSequence:        b.baseSeq,
		NumRecords:           int32(len(b.recs)),
		Records:              pc.enc(t, records),
	}
	out := kb.AppendTo(nil)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], crcC))
	return out
}

// wantRecords is what a reader must report for b's records.
func (b kBatch) wantRecords() []tRec {
	out := make([]tRec, len(b.recs))
	for i, r := range b.recs {
		out[i] = r
		if b.attrs&attrLogAppendTime != 0 {
			out[i].Timestamp = b.maxTS
		}
		// A header key cannot be null on the wire as kmsg writes it: it reads back empty.
		out[i].Headers = nil
		for _, h := range r.Headers {
			k := h.Key
			if k == nil {
				k = []byte{}
			}
			out[i].Headers = append(out[i].Headers, Header{Key: k, Value: h.Value})
		}
	}
	return out
}

// testRecords are records with every shape a reader must tell apart.
func testRecords(base, ts int64) []tRec {
	rng := rand.New(rand.NewSource(1))
	big := make([]byte, 100<<10) // spans several xerial chunks and lz4 blocks
	for i := range big {
		big[i] = "abcdefgh"[rng.Intn(8)] // compressible but not trivially
	}
	return []tRec{
		{Offset: base, Timestamp: ts, Key: []byte("1095098195724595200"), Value: []byte(`{"for_user_id":"2244994945","favorite_events":[]}`),
			Headers: []Header{{Key: []byte("event-id"), Value: []byte("e-1")}, {Key: []byte("empty"), Value: []byte{}}, {Key: []byte("null"), Value: nil}}},
		{Offset: base + 1, Timestamp: ts + 5, Key: nil, Value: []byte("null key")},
		{Offset: base + 2, Timestamp: ts - 3000, Key: []byte("null value, negative delta"), Value: nil},
		{Offset: base + 3, Timestamp: ts + 1000, Key: []byte{}, Value: []byte{}},
		{Offset: base + 4, Timestamp: ts + 1<<40, Key: []byte("big"), Value: big, Headers: []Header{{Key: []byte{}, Value: []byte("empty key")}}},
		{Offset: base + 5, Timestamp: ts - 1<<33, Key: nil, Value: nil},
	}
}

func TestCompatKmsgBatches(t *testing.T) {
	const ts = 1_700_000_000_000
	compacted := []tRec{ // offset gaps, as after compaction
		{Offset: 100, Timestamp: ts, Key: []byte("a"), Value: []byte("1")},
		{Offset: 103, Timestamp: ts + 1, Key: []byte("b"), Value: []byte("2")},
		{Offset: 109, Timestamp: ts + 2, Key: []byte("c"), Value: nil},
	}
	cases := []struct {
		name string
		b    kBatch
	}{
		{"plain", kBatch{base: 0, leaderEpoch: 3, producerID: -1, producerEpoch: -1, baseSeq: -1, recs: testRecords(0, ts)}},
		{"base-offset", kBatch{base: 1 << 40, producerID: -1, producerEpoch: -1, baseSeq: -1, recs: testRecords(1<<40, ts)}},
		{"compacted", kBatch{base: 100, producerID: -1, producerEpoch: -1, baseSeq: -1, recs: compacted}},
		{"log-append-time", kBatch{base: 7, attrs: attrLogAppendTime, maxTS: ts + 123_456, producerID: -1, producerEpoch: -1, baseSeq: -1, recs: testRecords(7, ts)}},
		{"transactional", kBatch{base: 50, attrs: attrTransactional, producerID: 4242, producerEpoch: 7, baseSeq: 99, recs: testRecords(50, ts)}},
		{"idempotent", kBatch{base: 60, producerID: 11, producerEpoch: 0, baseSeq: 0, recs: testRecords(60, ts)}},
	}
	for _, pc := range indepCodecs {
		for _, c := range cases {
			t.Run(pc.name+"/"+c.name, func(t *testing.T) {
				raw := encodeKmsgBatch(t, c.b, pc)
				for _, verify := range []bool{false, true} {
					got := scanBytes(raw, "kmsg.log", ScanOptions{VerifyCRC: verify})
					if got.err != nil {
						t.Fatalf("VerifyCRC=%v: %v", verify, got.err)
					}
					if len(got.headers) != 1 {
						t.Fatalf("%d batches, want 1", len(got.headers))
					}
					h := got.headers[0]
					last := c.b.recs[len(c.b.recs)-1].Offset
					if h.Magic != 2 || h.BaseOffset != c.b.base || h.LastOffset() != last || h.NextOffset() != last+1 ||
						h.NumRecords != int32(len(c.b.recs)) || h.Size() != int64(len(raw)) || h.PartitionLeaderEpoch != c.b.leaderEpoch {
						t.Errorf("header %+v does not match the batch (base %d, last %d, %d records, %d bytes)", h, c.b.base, last, len(c.b.recs), len(raw))
					}
					if h.Codec() != pc.codec {
						t.Errorf("codec %v, want %v", h.Codec(), pc.codec)
					}
					if h.ProducerID != c.b.producerID || h.ProducerEpoch != c.b.producerEpoch || h.BaseSequence != c.b.baseSeq {
						t.Errorf("producer %d/%d/%d, want %d/%d/%d", h.ProducerID, h.ProducerEpoch, h.BaseSequence, c.b.producerID, c.b.producerEpoch, c.b.baseSeq)
					}
					if h.IsTransactional() != (c.b.attrs&attrTransactional != 0) || h.IsControl() {
						t.Errorf("transactional=%v control=%v, want %v false", h.IsTransactional(), h.IsControl(), c.b.attrs&attrTransactional != 0)
					}
					wantTT := CreateTime
					if c.b.attrs&attrLogAppendTime != 0 {
						wantTT = LogAppendTime
					}
					if h.TimestampType() != wantTT {
						t.Errorf("timestamp type %v, want %v", h.TimestampType(), wantTT)
					}
					checkRecords(t, "records", got.all(), c.b.wantRecords())
				}
				// The same batch read by position, as replay does.
				b, _, err := ReadBatchAt(bytes.NewReader(raw), "kmsg.log", int64(len(raw)), 0, nil)
				if err != nil {
					t.Fatalf("ReadBatchAt: %v", err)
				}
				if err := b.VerifyCRC(); err != nil {
					t.Fatalf("VerifyCRC: %v", err)
				}
				var rr RecordReader
				if err := rr.Reset(&b); err != nil {
					t.Fatal(err)
				}
				var recs []tRec
				for rr.Next() {
					recs = append(recs, copyRecord(rr.Record()))
				}
				if rr.Err() != nil {
					t.Fatal(rr.Err())
				}
				checkRecords(t, "ReadBatchAt records", recs, c.b.wantRecords())
			})
		}
	}
}

// controlValue is a transaction marker's value: version int16, coordinator epoch int32.
func controlValue(epoch int32) []byte {
	return binary.BigEndian.AppendUint32([]byte{0, 0}, uint32(epoch))
}

func TestCompatKmsgControlBatchesInALog(t *testing.T) {
	const ts = 1_600_000_000_000
	// A transaction: two data batches, then a commit marker; then an aborted one and its marker.
	batches := []kBatch{
		{base: 0, attrs: attrTransactional, producerID: 5, producerEpoch: 1, baseSeq: 0, recs: testRecords(0, ts)[:3]},
		{base: 3, attrs: attrTransactional, producerID: 5, producerEpoch: 1, baseSeq: 3, recs: testRecords(3, ts)[:2]},
		{base: 5, attrs: attrTransactional | attrControl, producerID: 5, producerEpoch: 1, baseSeq: -1,
			recs: []tRec{{Offset: 5, Timestamp: ts + 10, Key: []byte{0, 0, 0, 1}, Value: controlValue(3)}}},
		{base: 6, attrs: attrTransactional, producerID: 5, producerEpoch: 2, baseSeq: 0, recs: testRecords(6, ts)[:1]},
		{base: 7, attrs: attrTransactional | attrControl, producerID: 5, producerEpoch: 2, baseSeq: -1,
			recs: []tRec{{Offset: 7, Timestamp: ts + 20, Key: []byte{0, 0, 0, 0}, Value: controlValue(3)}}},
	}
	var log []byte
	var starts []int64
	for i, b := range batches {
		starts = append(starts, int64(len(log)))
		log = append(log, encodeKmsgBatch(t, b, indepCodecs[i%len(indepCodecs)])...)
	}
	got := scanBytes(log, "txn.log", ScanOptions{VerifyCRC: true})
	if got.err != nil {
		t.Fatal(got.err)
	}
	if len(got.headers) != len(batches) {
		t.Fatalf("%d batches, want %d", len(got.headers), len(batches))
	}
	wantControl := map[int]ControlType{2: ControlCommit, 4: ControlAbort}
	for i, b := range batches {
		h := got.headers[i]
		if got.pos[i] != starts[i] {
			t.Errorf("batch %d at byte %d, want %d", i, got.pos[i], starts[i])
		}
		if !h.IsTransactional() {
			t.Errorf("batch %d: not transactional", i)
		}
		ct, isControl := wantControl[i]
		if h.IsControl() != isControl {
			t.Errorf("batch %d: IsControl %v, want %v", i, h.IsControl(), isControl)
		}
		checkRecords(t, fmt.Sprintf("batch %d", i), got.records[i], b.wantRecords())
		if isControl {
			if len(got.records[i]) != 1 {
				t.Fatalf("control batch %d: %d records", i, len(got.records[i]))
			}
			typ, err := ParseControlKey(got.records[i][0].Key)
			if err != nil || typ != ct {
				t.Errorf("control batch %d: ParseControlKey = %v, %v; want %v", i, typ, err, ct)
			}
			if !bytes.Equal(ControlKey(ct), got.records[i][0].Key) {
				t.Errorf("ControlKey(%v) = %x, the wire has %x", ct, ControlKey(ct), got.records[i][0].Key)
			}
		}
	}
	if _, err := ParseControlKey([]byte{0, 0, 1}); err == nil {
		t.Errorf("ParseControlKey accepted a 3-byte key")
	}
}

// ---------------------------------------------------------------------------------------------
// The reverse: our Builder's batches, read by kmsg and the codec libraries.

func TestCompatBuilderReadByKmsg(t *testing.T) {
	const ts = 1_700_000_000_000
	type variant struct {
		name string
		o    BatchOptions
	}
	variants := []variant{
		{"plain", BatchOptions{BaseOffset: 0}},
		{"offset-epoch", BatchOptions{BaseOffset: 1<<33 + 5, PartitionLeaderEpoch: 9}},
		{"log-append-time", BatchOptions{BaseOffset: 3, LogAppendTime: true, MaxTimestamp: ts + 777}},
		{"transactional", BatchOptions{BaseOffset: 8, Transactional: true, HasProducer: true, ProducerID: 77, ProducerEpoch: 3, BaseSequence: 12}},
	}
	var bld Builder
	for c := CodecNone; c <= CodecZstd; c++ {
		for _, v := range variants {
			t.Run(c.String()+"/"+v.name, func(t *testing.T) {
				v.o.Codec = c
				recs := testRecords(v.o.BaseOffset, ts)
				bld.Reset()
				for i := range recs {
					r := Record{Offset: -99, Timestamp: recs[i].Timestamp, Key: recs[i].Key, Value: recs[i].Value, Headers: recs[i].Headers}
					bld.Add(&r)
				}
				if bld.Len() != len(recs) {
					t.Fatalf("Len %d, want %d", bld.Len(), len(recs))
				}
				prefix := []byte("prefix")
				out, err := bld.Build(append([]byte(nil), prefix...), v.o)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.HasPrefix(out, prefix) {
					t.Fatalf("Build overwrote dst")
				}
				raw := out[len(prefix):]
				var kb kmsg.RecordBatch
				if err := kb.ReadFrom(raw); err != nil {
					t.Fatalf("kmsg cannot read the batch: %v", err)
				}
				if kb.Magic != 2 || int(kb.Length) != len(raw)-12 || kb.FirstOffset != v.o.BaseOffset ||
					kb.PartitionLeaderEpoch != v.o.PartitionLeaderEpoch || kb.NumRecords != int32(len(recs)) ||
					kb.LastOffsetDelta != int32(len(recs)-1) {
					t.Errorf("kmsg header %+v", kb)
				}
				if got := crc32.Checksum(raw[21:], crcC); uint32(kb.CRC) != got {
					t.Errorf("CRC field %#x, CRC-32C of the batch is %#x", uint32(kb.CRC), got)
				}
				if Codec(kb.Attributes&7) != c {
					t.Errorf("attributes %#x, want codec %v", kb.Attributes, c)
				}
				wantAttrs := int16(c)
				if v.o.LogAppendTime {
					wantAttrs |= attrLogAppendTime
				}
				if v.o.Transactional {
					wantAttrs |= attrTransactional
				}
				if kb.Attributes != wantAttrs {
					t.Errorf("attributes %#x, want %#x", kb.Attributes, wantAttrs)
				}
				minTS, maxTS := recs[0].Timestamp, recs[0].Timestamp
				for _, r := range recs {
					minTS, maxTS = min(minTS, r.Timestamp), max(maxTS, r.Timestamp)
				}
				if v.o.LogAppendTime {
					maxTS = v.o.MaxTimestamp
				}
				if kb.FirstTimestamp != recs[0].Timestamp || kb.MaxTimestamp != maxTS {
					t.Errorf("first/max timestamp %d/%d, want %d/%d", kb.FirstTimestamp, kb.MaxTimestamp, recs[0].Timestamp, maxTS)
				}
				wantPID, wantEpoch, wantSeq := int64(-1), int16(-1), int32(-1)
				if v.o.HasProducer {
					wantPID, wantEpoch, wantSeq = v.o.ProducerID, v.o.ProducerEpoch, v.o.BaseSequence
				}
				if kb.ProducerID != wantPID || kb.ProducerEpoch != wantEpoch || kb.FirstSequence != wantSeq {
					t.Errorf("producer %d/%d/%d, want %d/%d/%d", kb.ProducerID, kb.ProducerEpoch, kb.FirstSequence, wantPID, wantEpoch, wantSeq)
				}
				if c == CodecSnappy && IsXerialSnappy(kb.Records) {
					t.Errorf("snappy payload is xerial-framed; the Compressor documents a raw block")
				}
				data := indepDecompress(t, c, kb.Records)
				var got []tRec
				for len(data) > 0 {
					length, n := binary.Varint(data)
					if n <= 0 || length < 0 || int(length) > len(data)-n {
						t.Fatalf("record %d: bad length varint", len(got))
					}
					var kr kmsg.Record
					if err := kr.ReadFrom(data[:n+int(length)]); err != nil {
						t.Fatalf("kmsg cannot read record %d: %v", len(got), err)
					}
					data = data[n+int(length):]
					ts := kb.FirstTimestamp + kr.TimestampDelta64
					if kb.Attributes&attrLogAppendTime != 0 {
						ts = kb.MaxTimestamp
					}
					r := tRec{Offset: kb.FirstOffset + int64(kr.OffsetDelta), Timestamp: ts, Key: kr.Key, Value: kr.Value}
					for _, h := range kr.Headers {
						r.Headers = append(r.Headers, Header{Key: []byte(h.Key), Value: h.Value})
					}
					got = append(got, r)
				}
				want := kBatch{attrs: wantAttrs, maxTS: maxTS, recs: recs}.wantRecords()
				checkRecords(t, "kmsg records", got, want)
				// And our own reader agrees.
				ours := scanBytes(raw, "builder.log", ScanOptions{VerifyCRC: true})
				if ours.err != nil {
					t.Fatal(ours.err)
				}
				checkRecords(t, "our records", ours.all(), want)
			})
		}
	}
	bld.Reset()
	if _, err := bld.Build(nil, BatchOptions{}); err == nil {
		t.Errorf("Build of an empty batch succeeded")
	}
	bld.Add(&Record{Value: []byte("x")})
	if _, err := bld.Build(nil, BatchOptions{Codec: 5}); err == nil {
		t.Errorf("Build with codec 5 succeeded")
	}
}

func TestCompatSetLogAppendTimeAndBaseOffset(t *testing.T) {
	var bld Builder
	for i := range 3 {
		bld.Add(&Record{Timestamp: 1000 + int64(i), Value: []byte{byte(i)}})
	}
	raw, err := bld.Build(nil, BatchOptions{Codec: CodecGzip})
	if err != nil {
		t.Fatal(err)
	}
	SetBaseOffset(raw, 500)
	SetLogAppendTime(raw, 99_999)
	var kb kmsg.RecordBatch
	if err := kb.ReadFrom(raw); err != nil {
		t.Fatal(err)
	}
	if kb.FirstOffset != 500 || kb.MaxTimestamp != 99_999 || kb.Attributes != int16(CodecGzip)|attrLogAppendTime {
		t.Errorf("kmsg reads base %d max %d attrs %#x", kb.FirstOffset, kb.MaxTimestamp, kb.Attributes)
	}
	if uint32(kb.CRC) != crc32.Checksum(raw[21:], crcC) {
		t.Errorf("CRC not recomputed")
	}
	got := scanBytes(raw, "", ScanOptions{VerifyCRC: true})
	if got.err != nil {
		t.Fatal(got.err)
	}
	for i, r := range got.all() {
		if r.Offset != 500+int64(i) || r.Timestamp != 99_999 {
			t.Errorf("record %d: offset %d timestamp %d", i, r.Offset, r.Timestamp)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Legacy message sets (magic 0 and 1), encoded with kmsg.MessageV0/V1.

type lMsg struct {
	offset int64
	attrs  int8
	ts     int64 // magic 1 only
	key    []byte
	value  []byte
}

// encodeLegacy encodes one log entry of the given magic, with its size and CRC-32 (IEEE, over
// everything from the magic byte on) computed as the Kafka protocol specifies.
func encodeLegacy(magic int8, m lMsg) []byte {
	var out []byte
	if magic == 0 {
		k := kmsg.MessageV0{Offset: m.offset, Magic: 0, Attributes: m.attrs, Key: m.key, Value: m.value}
		out = k.AppendTo(nil)
	} else {
		k := kmsg.MessageV1{Offset: m.offset, Magic: 1, Attributes: m.attrs, Timestamp: m.ts, Key: m.key, Value: m.value}
		out = k.AppendTo(nil)
	}
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[12:], crc32.ChecksumIEEE(out[16:]))
	return out
}

// legacyInner returns inner messages for a wrapper: offsets 0..n-1 relative (magic 1) or
// absolute first..first+n-1 (magic 0).
func legacyInner(magic int8, first int64, ts int64) ([]lMsg, []byte) {
	msgs := []lMsg{
		{ts: ts, key: []byte("k0"), value: []byte("hello")},
		{ts: ts - 10, key: nil, value: []byte("null key")},
		{ts: ts + 10, key: []byte("null value"), value: nil},
		{ts: ts + 20, key: []byte{}, value: []byte{}},
		{ts: ts + 30, key: []byte("big"), value: bytes.Repeat([]byte("0123456789abcdef"), 5000)},
	}
	var set []byte
	for i := range msgs {
		if magic == 0 {
			msgs[i].offset = first + int64(i)
		} else {
			msgs[i].offset = int64(i)
		}
		set = append(set, encodeLegacy(magic, msgs[i])...)
	}
	return msgs, set
}

// kafka3160 rewrites an lz4 frame's header checksum the way Kafka's magic-0 writer computed it:
// over the magic number and the descriptor instead of the descriptor alone.
func kafka3160(t testing.TB, frame []byte) []byte {
	frame = append([]byte(nil), frame...)
	flg := frame[4]
	hcAt := 6
	if flg&0x08 != 0 {
		hcAt += 8
	}
	if flg&0x01 != 0 {
		hcAt += 4
	}
	if frame[hcAt] != byte(xxhash32(frame[4:hcAt])>>8) {
		t.Fatalf("lz4 writer's header checksum is not xxh32(descriptor)>>8")
	}
	frame[hcAt] = byte(xxhash32(frame[0:hcAt]) >> 8)
	if frame[hcAt] == byte(xxhash32(frame[4:hcAt])>>8) {
		t.Fatalf("the broken checksum equals the right one; pick another frame")
	}
	return frame
}

func TestCompatLegacyMessageSets(t *testing.T) {
	const ts = 1_500_000_000_000
	type wrapperCodec struct {
		name  string
		codec Codec
		enc   func(t testing.TB, src []byte) []byte
	}
	wrappers := []wrapperCodec{
		{"gzip", CodecGzip, indepGzip},
		{"snappy-xerial", CodecSnappy, func(_ testing.TB, src []byte) []byte { return xerial.EncodeStream(nil, src) }},
		{"snappy-raw", CodecSnappy, func(_ testing.TB, src []byte) []byte { return snappy.Encode(nil, src) }},
		{"lz4", CodecLZ4, func(t testing.TB, src []byte) []byte { return indepLZ4(t, src) }},
	}
	for _, magic := range []int8{0, 1} {
		t.Run(fmt.Sprintf("magic%d/uncompressed", magic), func(t *testing.T) {
			msgs, set := legacyInner(magic, 0, ts)
			// The uncompressed entries carry their absolute offsets (start at 40).
			var log []byte
			var want []tRec
			for i, m := range msgs {
				m.offset = 40 + int64(i)
				log = append(log, encodeLegacy(magic, m)...)
				r := tRec{Offset: m.offset, Timestamp: m.ts, Key: m.key, Value: m.value}
				if magic == 0 {
					r.Timestamp = NoTimestamp
				}
				want = append(want, r)
			}
			_ = set
			got := scanBytes(log, "legacy.log", ScanOptions{VerifyCRC: true})
			if got.err != nil {
				t.Fatal(got.err)
			}
			checkRecords(t, "records", got.all(), want)
			for i, h := range got.headers {
				if h.Magic != magic || h.BaseOffset != 40+int64(i) || h.LastOffset() != 40+int64(i) || h.NumRecords != 1 {
					t.Errorf("entry %d header %+v", i, h)
				}
				wantTT := CreateTime
				if magic == 0 {
					wantTT = NoTimestampType
				}
				if h.TimestampType() != wantTT || h.IsControl() || h.IsTransactional() {
					t.Errorf("entry %d: timestamp type %v control %v transactional %v", i, h.TimestampType(), h.IsControl(), h.IsTransactional())
				}
			}
		})
		for _, w := range wrappers {
			for _, logAppend := range []bool{false, true} {
				if magic == 0 && logAppend {
					continue
				}
				name := fmt.Sprintf("magic%d/%s", magic, w.name)
				if logAppend {
					name += "/log-append-time"
				}
				t.Run(name, func(t *testing.T) {
					const first = 1000
					msgs, set := legacyInner(magic, first, ts)
					n := int64(len(msgs))
					wrapperTS := int64(ts + 30) // a CreateTime wrapper carries the max inner timestamp
					attrs := int8(w.codec)
					if logAppend {
						attrs |= attrLogAppendTime
						wrapperTS = ts + 999_999
					}
					// Before it, an uncompressed entry; after it, another wrapper, to check the
					// scanner moves on correctly.
					var log []byte
					log = append(log, encodeLegacy(magic, lMsg{offset: first - 1, ts: ts, key: []byte("before"), value: []byte("b")})...)
					payload := w.enc(t, set)
					if magic == 0 && w.codec == CodecLZ4 {
						payload = kafka3160(t, payload) // what 0.8-0.9 brokers and clients wrote
					}
					wrapperAt := int64(len(log))
					log = append(log, encodeLegacy(magic, lMsg{offset: first + n - 1, attrs: attrs, ts: wrapperTS, value: payload})...)
					var want []tRec
					want = append(want, tRec{Offset: first - 1, Timestamp: ts, Key: []byte("before"), Value: []byte("b")})
					for i, m := range msgs {
						r := tRec{Offset: first + int64(i), Timestamp: m.ts, Key: m.key, Value: m.value}
						if magic == 0 {
							r.Timestamp = NoTimestamp
						} else if logAppend {
							r.Timestamp = wrapperTS
						}
						want = append(want, r)
					}
					if magic == 0 {
						want[0].Timestamp = NoTimestamp
					}
					got := scanBytes(log, "legacy.log", ScanOptions{VerifyCRC: true})
					if got.err != nil {
						t.Fatal(got.err)
					}
					checkRecords(t, "records", got.all(), want)
					if len(got.headers) != 2 {
						t.Fatalf("%d entries, want 2", len(got.headers))
					}
					h := got.headers[1]
					if got.pos[1] != wrapperAt || h.Codec() != w.codec || h.Magic != magic || h.LastOffset() != first+n-1 || h.NumRecords != -1 {
						t.Errorf("wrapper header %+v at %d", h, got.pos[1])
					}
					if magic == 1 && h.MaxTimestamp != wrapperTS {
						t.Errorf("wrapper max timestamp %d, want %d", h.MaxTimestamp, wrapperTS)
					}
					if logAppend && h.TimestampType() != LogAppendTime {
						t.Errorf("timestamp type %v", h.TimestampType())
					}
				})
			}
		}
	}
}

// A magic-1 wrapper whose inner offsets are absolute (as 0.10 brokers wrote after converting)
// must not be shifted: the wrapper offset equals the last inner offset, so the delta is zero.
func TestCompatLegacyMagic1AbsoluteInnerOffsets(t *testing.T) {
	var set []byte
	for i := range 3 {
		set = append(set, encodeLegacy(1, lMsg{offset: 70 + int64(i), ts: 5, value: []byte{byte('a' + i)}})...)
	}
	log := encodeLegacy(1, lMsg{offset: 72, attrs: int8(CodecGzip), ts: 5, value: indepGzip(t, set)})
	got := scanBytes(log, "", ScanOptions{VerifyCRC: true})
	if got.err != nil {
		t.Fatal(got.err)
	}
	want := []tRec{{Offset: 70, Timestamp: 5, Value: []byte("a")}, {Offset: 71, Timestamp: 5, Value: []byte("b")}, {Offset: 72, Timestamp: 5, Value: []byte("c")}}
	checkRecords(t, "records", got.all(), want)
}

// ---------------------------------------------------------------------------------------------
// Files a real Kafka 0.8 broker wrote.

const fixtureDir = "../../shared/fixtures/kafka-0.8-segments"

func TestCompatKafka08BrokerFiles(t *testing.T) {
	for _, dir := range []string{"hamlet-gzip-0", "hamlet-none-0", "numbers-0"} {
		t.Run(dir, func(t *testing.T) {
			logPath := filepath.Join(fixtureDir, dir, "00000000000000000000.log")
			data, err := os.ReadFile(logPath)
			if err != nil {
				t.Fatalf("the broker-written fixture is missing (it should be in shared/ beside the checkout): %v", err)
			}
			goldenFile, err := os.Open(filepath.Join(fixtureDir, dir+".golden"))
			if err != nil {
				t.Fatalf("the fixture's golden file is missing: %v", err)
			}
			defer goldenFile.Close()
			var want []tRec
			sc := bufio.NewScanner(goldenFile)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				off, val, ok := strings.Cut(sc.Text(), ": ")
				o, err := strconv.ParseInt(off, 10, 64)
				var v string
				if !ok || err != nil || json.Unmarshal([]byte(val), &v) != nil {
					t.Fatalf("golden line %d unreadable: %q", len(want)+1, sc.Text())
				}
				want = append(want, tRec{Offset: o, Timestamp: NoTimestamp, Value: []byte(v)})
			}
			if err := sc.Err(); err != nil || len(want) == 0 {
				t.Fatalf("golden file: %d lines, %v", len(want), err)
			}
			got := scanBytes(data, logPath, ScanOptions{VerifyCRC: true, BufferSize: 4096})
			if got.err != nil {
				t.Fatalf("scan: %v", got.err)
			}
			for _, h := range got.headers {
				if h.Magic != 0 {
					t.Fatalf("magic %d in a 0.8 file", h.Magic)
				}
			}
			checkRecords(t, logPath, got.all(), want)
			// Offsets must be strictly increasing across the whole file.
			prev := int64(-1)
			for _, r := range got.all() {
				if r.Offset <= prev {
					t.Fatalf("offset %d after %d", r.Offset, prev)
				}
				prev = r.Offset
			}
			// The file is whole: the scan ends exactly at its end.
			s := NewScanner(bytes.NewReader(data), logPath, int64(len(data)), ScanOptions{VerifyCRC: true})
			for s.Next() {
			}
			if s.Err() != nil || s.ValidEnd() != int64(len(data)) {
				t.Errorf("ValidEnd %d of %d bytes, err %v", s.ValidEnd(), len(data), s.Err())
			}
		})
	}
}

// ---------------------------------------------------------------------------------------------
// xxHash32, as lz4 frames use it.

func TestXXHash32KnownVectors(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint32
	}{
		{"", 0x02CC5D05},
		{"a", 0x550D7456},
		{"abc", 0x32D153FF},
		{"Nobody inspects the spammish repetition", 0xE2293B2F},
	} {
		if got := xxhash32([]byte(c.in)); got != c.want {
			t.Errorf("xxhash32(%q) = %#08x, want %#08x", c.in, got, c.want)
		}
	}
}

// The lz4 writer (pierrec/lz4) writes the full xxh32 of the content after the end mark when asked
// for a content checksum, and xxh32(descriptor)>>8 as the header checksum: both check ours.
func TestXXHash32AgainstLZ4Frames(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	lengths := []int{1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 100, 1000, 4096, 70000}
	for i := 0; i < 40; i++ {
		lengths = append(lengths, rng.Intn(300)+1)
	}
	for _, n := range lengths {
		data := make([]byte, n)
		rng.Read(data)
		opts := []lz4.Option{lz4.ChecksumOption(true), lz4.BlockChecksumOption(n%2 == 0)}
		if n%3 == 0 {
			opts = append(opts, lz4.SizeOption(uint64(n))) // a descriptor with the content size
		}
		frame := indepLZ4(t, data, opts...)
		if len(frame) < 11 || binary.LittleEndian.Uint32(frame) != 0x184D2204 {
			t.Fatalf("not an lz4 frame")
		}
		if got, want := xxhash32(data), binary.LittleEndian.Uint32(frame[len(frame)-4:]); got != want {
			t.Errorf("xxhash32 of %d random bytes = %#08x, the lz4 content checksum is %#08x", n, got, want)
		}
		flg := frame[4]
		hcAt := 6
		if flg&0x08 != 0 {
			hcAt += 8
		}
		if got, want := byte(xxhash32(frame[4:hcAt])>>8), frame[hcAt]; got != want {
			t.Errorf("header checksum of descriptor %x: ours %#02x, lz4's %#02x", frame[4:hcAt], got, want)
		}
	}
}
