// Package segment reads and writes Kafka's on-disk log format: record batches (magic 2), legacy
// message sets (magic 0 and 1), their codecs and CRCs, and the .log, .index and .timeindex files.
package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Sizes of the fixed parts of the formats.
const (
	// LogOverhead is the offset and length prefix that every entry of a .log file starts with.
	LogOverhead = 12
	// BatchHeaderSize is the size of a magic-2 record batch header, length prefix included.
	BatchHeaderSize = 61
	// MaxBatchSize bounds the size a reader accepts for one batch; Kafka's message.max.bytes
	// defaults to about 1 MiB and is rarely raised past a few hundred.
	MaxBatchSize = 512 << 20
)

// Offsets of the fields of a magic-2 batch header.
const (
	offBaseOffset      = 0
	offLength          = 8
	offLeaderEpoch     = 12
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offBaseTimestamp   = 27
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
	offRecordCount     = 57
)

// Attribute bits of a magic-2 batch.
const (
	attrCodecMask     = 0x07
	attrLogAppendTime = 0x08
	attrTransactional = 0x10
	attrControl       = 0x20
)

// TimestampType says whose clock a batch's timestamps come from.
type TimestampType int8

// Kafka's timestamp types. Magic-0 messages have none.
const (
	NoTimestampType TimestampType = -1
	CreateTime      TimestampType = 0
	LogAppendTime   TimestampType = 1
)

func (t TimestampType) String() string {
	switch t {
	case CreateTime:
		return "CreateTime"
	case LogAppendTime:
		return "LogAppendTime"
	}
	return "NoTimestampType"
}

// NoTimestamp is the timestamp of a record that has none (magic 0).
const NoTimestamp = -1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BatchHeader is the header of a record batch, or the equivalent facts of a legacy entry, readable
// without decompressing the records. For magic 2 the fields are those of the wire format.
//
// For a legacy entry (magic 0 or 1) the header is what the outer message says: LastOffset is its
// offset, and for a compressed wrapper, whose inner offsets are known only after decompressing,
// BaseOffset equals LastOffset and NumRecords is -1.
type BatchHeader struct {
	BaseOffset           int64
	Length               int32 // bytes after the length field
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	BaseTimestamp        int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	NumRecords           int32
}

// Codec is the compression codec of the batch's records.
func (h *BatchHeader) Codec() Codec { return Codec(h.Attributes & attrCodecMask) }

// TimestampType says whether record timestamps are the producer's (CreateTime) or the broker's.
func (h *BatchHeader) TimestampType() TimestampType {
	if h.Magic == 0 {
		return NoTimestampType
	}
	if h.Attributes&attrLogAppendTime != 0 {
		return LogAppendTime
	}
	return CreateTime
}

// IsTransactional reports whether the batch was written in a transaction.
func (h *BatchHeader) IsTransactional() bool {
	return h.Magic >= 2 && h.Attributes&attrTransactional != 0
}

// IsControl reports whether the batch holds transaction markers rather than data records: it
// occupies offsets, but a consumer never sees its records.
func (h *BatchHeader) IsControl() bool { return h.Magic >= 2 && h.Attributes&attrControl != 0 }

// LastOffset is the offset of the batch's last record.
func (h *BatchHeader) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// NextOffset is the offset right after the batch.
func (h *BatchHeader) NextOffset() int64 { return h.LastOffset() + 1 }

// Size is the batch's size in the log, length prefix included.
func (h *BatchHeader) Size() int64 { return LogOverhead + int64(h.Length) }

// Batch is one entry of a log as it sits in a file: a magic-2 record batch or a legacy message.
// Raw holds all of its bytes and aliases the reader's buffer: it is valid until the reader moves on.
type Batch struct {
	BatchHeader
	File string // where the batch was read from, for error messages
	Pos  int64  // byte position of the batch in File
	Raw  []byte
}

// parseHeader reads the header of the entry at the start of b, which must hold its whole
// length-prefixed bytes. It checks the framing only; VerifyCRC checks the contents. Framing that
// is wrong in bytes that also fail their CRC is reported as ErrChecksum: damage on disk, not a
// writer's bug, and the same error a bit flip elsewhere in the batch gives.
func parseHeader(b []byte, h *BatchHeader, file string, pos int64) error {
	err := parseHeaderFields(b, h, file, pos)
	if err != nil && errors.Is(err, ErrMalformed) && storedCRCMismatch(b) {
		return corruptf(file, pos, ErrChecksum, "stored CRC does not match the batch's bytes (%s)", err.(*CorruptionError).Detail)
	}
	return err
}

// storedCRCMismatch reports whether the entry in b has a CRC, where its magic says, that does not
// match its bytes. An unknown magic has no known CRC.
func storedCRCMismatch(b []byte) bool {
	switch b[offMagic] {
	case 2:
		return len(b) >= BatchHeaderSize && crc32.Checksum(b[offAttributes:], castagnoli) != binary.BigEndian.Uint32(b[offCRC:])
	case 0, 1:
		return crc32.ChecksumIEEE(b[LogOverhead+4:]) != binary.BigEndian.Uint32(b[LogOverhead:])
	}
	return false
}

func parseHeaderFields(b []byte, h *BatchHeader, file string, pos int64) error {
	if len(b) < LogOverhead+5 {
		return corruptf(file, pos, ErrTornTail, "%d bytes are too few for a batch header", len(b))
	}
	magic := int8(b[offMagic])
	switch magic {
	case 2:
		if len(b) < BatchHeaderSize {
			return corruptf(file, pos, ErrMalformed, "batch of %d bytes is shorter than a magic-2 header", len(b))
		}
		*h = BatchHeader{
			BaseOffset:           int64(binary.BigEndian.Uint64(b[offBaseOffset:])),
			Length:               int32(binary.BigEndian.Uint32(b[offLength:])),
			PartitionLeaderEpoch: int32(binary.BigEndian.Uint32(b[offLeaderEpoch:])),
			Magic:                2,
			CRC:                  binary.BigEndian.Uint32(b[offCRC:]),
			Attributes:           int16(binary.BigEndian.Uint16(b[offAttributes:])),
			LastOffsetDelta:      int32(binary.BigEndian.Uint32(b[offLastOffsetDelta:])),
			BaseTimestamp:        int64(binary.BigEndian.Uint64(b[offBaseTimestamp:])),
			MaxTimestamp:         int64(binary.BigEndian.Uint64(b[offMaxTimestamp:])),
			ProducerID:           int64(binary.BigEndian.Uint64(b[offProducerID:])),
			ProducerEpoch:        int16(binary.BigEndian.Uint16(b[offProducerEpoch:])),
			BaseSequence:         int32(binary.BigEndian.Uint32(b[offBaseSequence:])),
			NumRecords:           int32(binary.BigEndian.Uint32(b[offRecordCount:])),
		}
		if h.LastOffsetDelta < 0 || h.NumRecords < 0 {
			return corruptf(file, pos, ErrMalformed, "negative last offset delta %d or record count %d", h.LastOffsetDelta, h.NumRecords)
		}
		if h.Codec() > CodecZstd {
			return corruptf(file, pos, ErrMalformed, "unknown codec %d in attributes %#x", h.Codec(), h.Attributes)
		}
		return nil
	case 0, 1:
		return parseLegacyHeader(b, h, file, pos)
	}
	return corruptf(file, pos, ErrMalformed, "unknown magic %d", magic)
}

// VerifyCRC checks the batch's bytes against its CRC: CRC-32C over everything after the CRC
// field for magic 2, CRC-32 (IEEE) over the message after its CRC for magic 0 and 1.
func (b *Batch) VerifyCRC() error {
	var got uint32
	if b.Magic >= 2 {
		got = crc32.Checksum(b.Raw[offAttributes:], castagnoli)
	} else {
		got = crc32.ChecksumIEEE(b.Raw[LogOverhead+4:])
	}
	if got != b.CRC {
		return corruptf(b.File, b.Pos, ErrChecksum, "stored CRC %#08x, computed %#08x", b.CRC, got)
	}
	return nil
}

// SetBaseOffset rewrites the base offset of the encoded magic-2 batch in raw. The base offset is
// outside the CRC, so a log can assign offsets to a batch encoded before it knew them.
func SetBaseOffset(raw []byte, base int64) {
	binary.BigEndian.PutUint64(raw[offBaseOffset:], uint64(base))
}

// SetLogAppendTime rewrites the max timestamp and turns on LogAppendTime in the encoded magic-2
// batch in raw, recomputing the CRC: what a broker does for a topic with LogAppendTime.
func SetLogAppendTime(raw []byte, ts int64) {
	attrs := binary.BigEndian.Uint16(raw[offAttributes:]) | attrLogAppendTime
	binary.BigEndian.PutUint16(raw[offAttributes:], attrs)
	binary.BigEndian.PutUint64(raw[offMaxTimestamp:], uint64(ts))
	binary.BigEndian.PutUint32(raw[offCRC:], crc32.Checksum(raw[offAttributes:], castagnoli))
}

// Header is a record header. Key and Value alias the batch's decompressed bytes.
type Header struct {
	Key   []byte
	Value []byte // nil for a null value
}

// Record is one record of a batch. Key, Value and Headers alias the reader's buffers: they are
// valid until the reader moves on. A nil Key or Value is null; an empty non-nil one is empty.
type Record struct {
	Offset    int64
	Timestamp int64
	Key       []byte
	Value     []byte
	Headers   []Header
}

// HeaderValue returns the value of the first header named key, and whether there is one.
func (r *Record) HeaderValue(key string) ([]byte, bool) {
	for i := range r.Headers {
		if string(r.Headers[i].Key) == key {
			return r.Headers[i].Value, true
		}
	}
	return nil, false
}

// ControlType is the kind of a transaction marker in a control batch.
type ControlType int16

// The control record types Kafka writes.
const (
	ControlAbort  ControlType = 0
	ControlCommit ControlType = 1
)

func (c ControlType) String() string {
	switch c {
	case ControlAbort:
		return "ABORT"
	case ControlCommit:
		return "COMMIT"
	}
	return fmt.Sprintf("control(%d)", int16(c))
}

// ParseControlKey reads the type of a control record from its key (version int16, type int16).
func ParseControlKey(key []byte) (ControlType, error) {
	if len(key) < 4 {
		return 0, fmt.Errorf("control record key of %d bytes, want at least 4", len(key))
	}
	return ControlType(binary.BigEndian.Uint16(key[2:])), nil
}

// ControlKey encodes a control record key of type t (version 0).
func ControlKey(t ControlType) []byte {
	return []byte{0, 0, byte(uint16(t) >> 8), byte(t)}
}
