package segment

import (
	"encoding/binary"
	"hash/crc32"
)

// Legacy message sets (magic 0 and 1): each log entry is offset int64, size int32, then a message:
// crc uint32, magic int8, attributes int8, timestamp int64 (magic 1 only), key and value as int32
// length-prefixed bytes (-1 is null). A compressed message is a wrapper whose value is a whole
// inner message set.

const legacyMinMessage0 = 4 + 1 + 1 + 4 + 4 // crc, magic, attributes, key length, value length

type legacyMessage struct {
	magic int8
	attrs int8
	ts    int64
	key   []byte
	value []byte
}

// parseLegacyMessage decodes a message (the bytes after offset and size). It reports what is
// wrong instead of an error so callers can name the position.
func parseLegacyMessage(m []byte, out *legacyMessage) (problem string) {
	if len(m) < legacyMinMessage0 {
		return "message shorter than its fixed fields"
	}
	out.magic = int8(m[4])
	out.attrs = int8(m[5])
	p := 6
	switch out.magic {
	case 0:
		out.ts = NoTimestamp
	case 1:
		if len(m) < legacyMinMessage0+8 {
			return "magic-1 message shorter than its fixed fields"
		}
		out.ts = int64(binary.BigEndian.Uint64(m[p:]))
		p += 8
	default:
		return "inner message with an unknown magic"
	}
	var ok bool
	if out.key, p, ok = legacyBytes(m, p); !ok {
		return "message key overruns the message"
	}
	if out.value, p, ok = legacyBytes(m, p); !ok {
		return "message value overruns the message"
	}
	if p != len(m) {
		return "bytes left over after the message value"
	}
	return ""
}

func legacyBytes(m []byte, p int) ([]byte, int, bool) {
	if len(m)-p < 4 {
		return nil, p, false
	}
	n := int64(int32(binary.BigEndian.Uint32(m[p:])))
	p += 4
	if n == -1 {
		return nil, p, true
	}
	if n < 0 || n > int64(len(m)-p) {
		return nil, p, false
	}
	return m[p : p+int(n) : p+int(n)], p + int(n), true
}

func parseLegacyHeader(b []byte, h *BatchHeader, file string, pos int64) error {
	size := int32(binary.BigEndian.Uint32(b[8:]))
	if int64(size) != int64(len(b)-LogOverhead) {
		return corruptf(file, pos, ErrMalformed, "message size %d does not match its %d bytes", size, len(b)-LogOverhead)
	}
	var m legacyMessage
	if problem := parseLegacyMessage(b[LogOverhead:], &m); problem != "" {
		return corruptf(file, pos, ErrMalformed, "%s", problem)
	}
	*h = BatchHeader{
		BaseOffset:           int64(binary.BigEndian.Uint64(b)),
		Length:               size,
		PartitionLeaderEpoch: -1,
		Magic:                m.magic,
		CRC:                  binary.BigEndian.Uint32(b[LogOverhead:]),
		Attributes:           int16(m.attrs),
		BaseTimestamp:        m.ts,
		MaxTimestamp:         m.ts,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		BaseSequence:         -1,
		NumRecords:           1,
	}
	if m.magic == 0 {
		h.Attributes &= attrCodecMask // magic 0 has no timestamp type bit
	}
	if h.Codec() > CodecLZ4 {
		return corruptf(file, pos, ErrMalformed, "codec %d is not allowed in a magic-%d message", h.Codec(), m.magic)
	}
	if h.Codec() != CodecNone {
		h.NumRecords = -1
	}
	return nil
}

func (rr *RecordReader) resetLegacy(b *Batch) error {
	var m legacyMessage
	if problem := parseLegacyMessage(b.Raw[LogOverhead:], &m); problem != "" {
		return corruptf(b.File, b.Pos, ErrMalformed, "%s", problem)
	}
	rr.legacyWrapper = b.Codec() != CodecNone
	if !rr.legacyWrapper {
		rr.data = b.Raw
		rr.legacyDelta = 0
		rr.legacyTS = m.ts
		return nil
	}
	var err error
	rr.buf, err = rr.dec.Decompress(b.Codec(), rr.buf, m.value, b.Magic == 0)
	if err != nil {
		return corruptf(b.File, b.Pos, ErrMalformed, "wrapper message: %v", err)
	}
	// Walk the inner set once to validate its framing and find its last offset: magic-1 inner
	// offsets are relative, and the wrapper's offset is the absolute offset of the last one.
	var last int64 = -1
	for p := 0; p < len(rr.buf); {
		if len(rr.buf)-p < LogOverhead {
			return corruptf(b.File, b.Pos, ErrMalformed, "inner message set cut short at inner byte %d", p)
		}
		size := int64(int32(binary.BigEndian.Uint32(rr.buf[p+8:])))
		if size < legacyMinMessage0 || size > int64(len(rr.buf)-p-LogOverhead) {
			return corruptf(b.File, b.Pos, ErrMalformed, "inner message at inner byte %d has size %d, %d bytes remain", p, size, len(rr.buf)-p-LogOverhead)
		}
		last = int64(binary.BigEndian.Uint64(rr.buf[p:]))
		p += LogOverhead + int(size)
	}
	if last < 0 && len(rr.buf) > 0 {
		return corruptf(b.File, b.Pos, ErrMalformed, "inner message with negative offset %d", last)
	}
	rr.legacyDelta = 0
	if b.Magic >= 1 {
		rr.legacyDelta = b.BaseOffset - last
	}
	rr.legacyTS = NoTimestamp
	if b.Magic >= 1 && b.TimestampType() == LogAppendTime {
		rr.legacyTS = b.MaxTimestamp
	}
	rr.data = rr.buf
	return nil
}

func (rr *RecordReader) nextLegacy() bool {
	if len(rr.data) == 0 {
		return false
	}
	entry := rr.data
	size := int(int32(binary.BigEndian.Uint32(entry[8:]))) // validated by resetLegacy
	entry = entry[:LogOverhead+size]
	rr.data = rr.data[LogOverhead+size:]
	var m legacyMessage
	if problem := parseLegacyMessage(entry[LogOverhead:], &m); problem != "" {
		rr.err = corruptf(rr.file, rr.pos, ErrMalformed, "inner message: %s", problem)
		return false
	}
	if rr.legacyWrapper {
		if got, want := crc32.ChecksumIEEE(entry[LogOverhead+4:]), binary.BigEndian.Uint32(entry[LogOverhead:]); got != want {
			rr.err = corruptf(rr.file, rr.pos, ErrChecksum, "inner message at offset %d: stored CRC %#08x, computed %#08x",
				int64(binary.BigEndian.Uint64(entry))+rr.legacyDelta, want, got)
			return false
		}
		if Codec(m.attrs&attrCodecMask) != CodecNone {
			rr.err = corruptf(rr.file, rr.pos, ErrMalformed, "compressed message nested inside a compressed wrapper")
			return false
		}
	}
	rr.rec.Offset = int64(binary.BigEndian.Uint64(entry)) + rr.legacyDelta
	switch {
	case rr.legacyTS != NoTimestamp:
		rr.rec.Timestamp = rr.legacyTS // LogAppendTime on the wrapper applies to every inner message
	default:
		rr.rec.Timestamp = m.ts
	}
	rr.rec.Key = m.key
	rr.rec.Value = m.value
	rr.rec.Headers = rr.hdrs[:0]
	return true
}
