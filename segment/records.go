package segment

import (
	"encoding/binary"
)

// RecordReader decodes the records of one batch at a time. It verifies the batch's CRC, then
// decompresses into a buffer it keeps, so iterating allocates nothing per record once warm. It is
// not safe for concurrent use; give each goroutine its own.
type RecordReader struct {
	dec  Decompressor
	buf  []byte // decompressed records
	data []byte // what is left of buf to decode
	hdrs []Header
	rec  Record

	file       string
	pos        int64
	magic      int8
	baseOffset int64
	baseTS     int64
	maxTS      int64
	logAppend  bool
	remaining  int32 // records the header promises and not yet decoded (magic 2)

	// Legacy wrappers: how to turn inner offsets into absolute ones.
	legacyDelta   int64
	legacyWrapper bool
	legacyTS      int64

	err error
}

// Reset points the reader at batch b: it verifies the CRC and decompresses the records. Records of
// an uncompressed batch are read in place, so b.Raw must stay unchanged until they have been read.
func (rr *RecordReader) Reset(b *Batch) error {
	rr.err = nil
	rr.data = nil
	rr.remaining = 0
	rr.file, rr.pos, rr.magic = b.File, b.Pos, b.Magic
	if err := b.VerifyCRC(); err != nil {
		rr.err = err
		return err
	}
	if b.Magic < 2 {
		rr.err = rr.resetLegacy(b)
		return rr.err
	}
	payload := b.Raw[BatchHeaderSize:]
	if b.Codec() == CodecNone {
		rr.data = payload // read in place: nothing to copy
	} else {
		var err error
		rr.buf, err = rr.dec.Decompress(b.Codec(), rr.buf, payload, false)
		if err != nil {
			rr.err = corruptf(b.File, b.Pos, ErrMalformed, "%v", err)
			return rr.err
		}
		rr.data = rr.buf
	}
	rr.baseOffset, rr.baseTS, rr.maxTS = b.BaseOffset, b.BaseTimestamp, b.MaxTimestamp
	rr.logAppend = b.TimestampType() == LogAppendTime
	rr.remaining = b.NumRecords
	return nil
}

// Next decodes the next record and reports whether there is one. At the end, Err says whether the
// batch was whole.
func (rr *RecordReader) Next() bool { return rr.advance(false) }

// NextKey is Next for a reader that needs only each record's offset, timestamp and key (the
// index builder): the record's framing (its length within the batch, the key within the
// record) and the batch's record count are checked as by Next, and its CRC by Reset, but the
// value and headers are neither decoded nor checked, and the Record's Value and Headers are
// nil. Skipping them spares about half of a record's varints: profiled, decoding records was 7%
// of an index rebuild's CPU, most of it the value's length and the headers. Legacy message
// sets are decoded whole, as by Next.
func (rr *RecordReader) NextKey() bool { return rr.advance(true) }

// advance is Next (keyOnly false) and NextKey (true).
func (rr *RecordReader) advance(keyOnly bool) bool {
	if rr.err != nil {
		return false
	}
	if rr.magic < 2 {
		return rr.nextLegacy()
	}
	if rr.remaining == 0 {
		if len(rr.data) != 0 {
			rr.err = corruptf(rr.file, rr.pos, ErrMalformed, "%d bytes after the batch's last record", len(rr.data))
		}
		return false
	}
	rr.remaining--
	var err error
	if keyOnly {
		err = rr.decodeKey()
	} else {
		err = rr.decodeRecord()
	}
	if err != nil {
		rr.err = err
		return false
	}
	return true
}

// decodeKey decodes the next record's offset, timestamp and key (NextKey).
func (rr *RecordReader) decodeKey() error {
	v, length, err := rr.decodeHead()
	if err != nil {
		return err
	}
	if v.bad {
		return corruptf(rr.file, rr.pos, ErrMalformed, "record fields overrun the record's %d bytes", length)
	}
	rr.rec.Value, rr.rec.Headers = nil, nil
	return nil
}

// Record is the record Next (or NextKey) decoded; it and its bytes are valid until the next call to Next or Reset.
func (rr *RecordReader) Record() *Record { return &rr.rec }

// Err is the error that stopped the iteration, if any.
func (rr *RecordReader) Err() error { return rr.err }

type varintReader struct {
	b   []byte
	bad bool
}

func (v *varintReader) varint() int64 {
	x, n := binary.Varint(v.b)
	if n <= 0 {
		v.bad = true
		v.b = nil
		return 0
	}
	v.b = v.b[n:]
	return x
}

// bytes reads a varint length and that many bytes; -1 is null.
func (v *varintReader) bytes() []byte {
	n := v.varint()
	if v.bad {
		return nil
	}
	if n == -1 {
		return nil
	}
	if n < -1 || n > int64(len(v.b)) {
		v.bad = true
		v.b = nil
		return nil
	}
	out := v.b[:n:n]
	v.b = v.b[n:]
	return out
}

// decodeHead takes the next record off the batch and decodes its framing, offset, timestamp and
// key into rr.rec. It returns the reader over the rest of the record (value and headers) and the
// record's length; the reader's bad flag says whether the fields so far overran the record.
func (rr *RecordReader) decodeHead() (varintReader, int64, error) {
	length, n := binary.Varint(rr.data)
	if n <= 0 || length < 0 || length > int64(len(rr.data)-n) {
		return varintReader{}, 0, corruptf(rr.file, rr.pos, ErrMalformed, "record length %d overruns the batch's %d remaining bytes", length, len(rr.data))
	}
	body := rr.data[n : n+int(length)]
	rr.data = rr.data[n+int(length):]
	if len(body) < 1 {
		return varintReader{}, 0, corruptf(rr.file, rr.pos, ErrMalformed, "empty record")
	}
	v := varintReader{b: body[1:]} // skip the record's attributes, unused
	tsDelta := v.varint()
	offDelta := v.varint()
	rr.rec.Key = v.bytes()
	rr.rec.Offset = rr.baseOffset + offDelta
	if rr.logAppend {
		rr.rec.Timestamp = rr.maxTS
	} else {
		rr.rec.Timestamp = rr.baseTS + tsDelta
	}
	return v, length, nil
}

// decodeRecord decodes the next record whole (Next).
func (rr *RecordReader) decodeRecord() error {
	v, length, err := rr.decodeHead()
	if err != nil {
		return err
	}
	value := v.bytes()
	nh := v.varint()
	if v.bad || nh < 0 || nh > int64(len(v.b)) {
		return corruptf(rr.file, rr.pos, ErrMalformed, "record fields overrun the record's %d bytes", length)
	}
	rr.hdrs = rr.hdrs[:0]
	for i := int64(0); i < nh; i++ {
		hk := v.bytes()
		hv := v.bytes()
		if v.bad {
			return corruptf(rr.file, rr.pos, ErrMalformed, "record header %d overruns the record", i)
		}
		if hk == nil {
			hk = []byte{}
		}
		rr.hdrs = append(rr.hdrs, Header{Key: hk, Value: hv})
	}
	if len(v.b) != 0 {
		return corruptf(rr.file, rr.pos, ErrMalformed, "%d bytes left over in a record", len(v.b))
	}
	rr.rec.Value = value
	rr.rec.Headers = rr.hdrs
	return nil
}
