package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// BatchOptions are the header fields of a magic-2 batch that a Builder does not derive from its
// records. The zero value is a plain CreateTime batch of a non-idempotent producer.
type BatchOptions struct {
	BaseOffset           int64
	PartitionLeaderEpoch int32
	Codec                Codec
	// LogAppendTime marks the batch's timestamps as the broker's: MaxTimestamp is then every
	// record's timestamp, and must be set.
	LogAppendTime bool
	MaxTimestamp  int64
	Transactional bool
	Control       bool
	// ProducerID is -1 (no producer id) unless set; ProducerEpoch and BaseSequence likewise.
	ProducerID    int64
	ProducerEpoch int16
	BaseSequence  int32
	// HasProducer says ProducerID, ProducerEpoch and BaseSequence are set; otherwise they are -1.
	HasProducer bool
}

// Builder encodes records into a magic-2 batch. Records get consecutive offsets from the batch's
// base offset. It keeps its buffers and compressor between batches; it is not safe for concurrent use.
type Builder struct {
	records []byte // encoded records, uncompressed
	n       int32
	baseTS  int64
	maxTS   int64
	cp      Compressor
}

// Reset empties the builder for the next batch.
func (b *Builder) Reset() { b.records, b.n = b.records[:0], 0 }

// Len is the number of records added since Reset.
func (b *Builder) Len() int { return int(b.n) }

// Size is the uncompressed size of the records added so far, a guide for when to cut a batch.
func (b *Builder) Size() int { return len(b.records) }

// Add appends a record. Its Offset is ignored: it gets the next offset of the batch.
func (b *Builder) Add(r *Record) {
	if b.n == 0 {
		b.baseTS, b.maxTS = r.Timestamp, r.Timestamp
	}
	b.maxTS = max(b.maxTS, r.Timestamp)
	var body [5 * binary.MaxVarintLen64]byte
	p := 1 // attributes: unused, zero
	p += binary.PutVarint(body[p:], r.Timestamp-b.baseTS)
	p += binary.PutVarint(body[p:], int64(b.n))
	length := p + varBytesLen(r.Key) + varBytesLen(r.Value) + varintLen(int64(len(r.Headers)))
	for i := range r.Headers {
		length += varBytesLen(r.Headers[i].Key) + varBytesLen(r.Headers[i].Value)
	}
	b.records = binary.AppendVarint(b.records, int64(length))
	b.records = append(b.records, body[:p]...)
	b.records = appendVarBytes(b.records, r.Key)
	b.records = appendVarBytes(b.records, r.Value)
	b.records = binary.AppendVarint(b.records, int64(len(r.Headers)))
	for i := range r.Headers {
		b.records = appendVarBytes(b.records, r.Headers[i].Key)
		b.records = appendVarBytes(b.records, r.Headers[i].Value)
	}
	b.n++
}

// Build appends the encoded batch to dst and returns it. The builder keeps its records; Reset
// starts the next batch.
func (b *Builder) Build(dst []byte, o BatchOptions) ([]byte, error) {
	if b.n == 0 {
		return dst, fmt.Errorf("segment: a batch needs at least one record")
	}
	if o.Codec < CodecNone || o.Codec > CodecZstd {
		return dst, fmt.Errorf("segment: unknown codec %d", o.Codec)
	}
	start := len(dst)
	dst = append(dst, make([]byte, BatchHeaderSize)...)
	var err error
	if dst, err = b.cp.Compress(o.Codec, dst, b.records); err != nil {
		return dst[:start], fmt.Errorf("segment: %v: %w", o.Codec, err)
	}
	h := dst[start:]
	attrs := uint16(o.Codec)
	if o.LogAppendTime {
		attrs |= attrLogAppendTime
	}
	if o.Transactional {
		attrs |= attrTransactional
	}
	if o.Control {
		attrs |= attrControl
	}
	maxTS := b.maxTS
	if o.LogAppendTime {
		maxTS = o.MaxTimestamp
	}
	pid, epoch, seq := int64(-1), int16(-1), int32(-1)
	if o.HasProducer {
		pid, epoch, seq = o.ProducerID, o.ProducerEpoch, o.BaseSequence
	}
	binary.BigEndian.PutUint64(h[offBaseOffset:], uint64(o.BaseOffset))
	binary.BigEndian.PutUint32(h[offLength:], uint32(len(h)-LogOverhead))
	binary.BigEndian.PutUint32(h[offLeaderEpoch:], uint32(o.PartitionLeaderEpoch))
	h[offMagic] = 2
	binary.BigEndian.PutUint16(h[offAttributes:], attrs)
	binary.BigEndian.PutUint32(h[offLastOffsetDelta:], uint32(b.n-1))
	binary.BigEndian.PutUint64(h[offBaseTimestamp:], uint64(b.baseTS))
	binary.BigEndian.PutUint64(h[offMaxTimestamp:], uint64(maxTS))
	binary.BigEndian.PutUint64(h[offProducerID:], uint64(pid))
	binary.BigEndian.PutUint16(h[offProducerEpoch:], uint16(epoch))
	binary.BigEndian.PutUint32(h[offBaseSequence:], uint32(seq))
	binary.BigEndian.PutUint32(h[offRecordCount:], uint32(b.n))
	binary.BigEndian.PutUint32(h[offCRC:], crc32.Checksum(h[offAttributes:], castagnoli))
	return dst, nil
}

func varintLen(x int64) int {
	var tmp [binary.MaxVarintLen64]byte
	return binary.PutVarint(tmp[:], x)
}

func varBytesLen(b []byte) int {
	if b == nil {
		return varintLen(-1)
	}
	return varintLen(int64(len(b))) + len(b)
}

func appendVarBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}
