// Package manifest is the ground truth of a loadgen produce run: what was produced, compact
// enough for tens of millions of events.
//
// File format (version 1):
//
//	"LGMANIF1"                      8 bytes, outside compression
//	zstd stream of:
//	  uvarint len, Header as JSON   the run's parameters and the webhook ids (index → id)
//	  per record, in production order:
//	    uvarint tag                 (webhook index << 1 | duplicate) + 1
//	    varint  Δid                 id - (largest id so far + 1), zigzag: 0 for a new sequential id
//	    varint  Δts                 timestamp (ms) - previous record's timestamp, zigzag
//	  uvarint 0                     end marker
//	  uvarint count                 records written, checked by the reader
//
// Version 2, a run into several datacenters (Header.DCs names them, 2 to MaxDCs): the same,
// with each record's datacenter in its tag: ((webhook index << 1 | duplicate) * len(DCs) + dc) + 1.
// A run into one datacenter writes version 1.
//
// A file without the end marker (a run that was killed) is reported as truncated, with the
// records read so far.
package manifest

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Magic starts every manifest file.
const Magic = "LGMANIF1"

// MaxHeaderBytes bounds the header a reader accepts.
const MaxHeaderBytes = 256 << 20

// Header describes a run.
type Header struct {
	Version   int                `json:"version"`
	CreatedAt time.Time          `json:"created_at"`
	Target    string             `json:"target,omitempty"` // where it was produced: embedded:DIR or kafka:BROKERS/TOPIC
	Seed      uint64             `json:"seed"`
	Events    int                `json:"events"` // records planned, duplicates included
	StartMS   int64              `json:"start_ms"`
	EndMS     int64              `json:"end_ms"`
	Skew      float64            `json:"skew"`
	DupRate   float64            `json:"dup_rate"`
	JitterMS  int64              `json:"jitter_ms"`
	Mix       map[string]float64 `json:"mix,omitempty"`
	Rate      float64            `json:"rate,omitempty"`
	Webhooks  []string           `json:"webhooks"` // index → decimal webhook id
	// DCs are the datacenters produced into, by index (Entry.DC): each one's delivery_log (its
	// target); absent for one. CrossDCRate is the share of events written into two.
	DCs         []string `json:"dcs,omitempty"`
	CrossDCRate float64  `json:"cross_dc_rate,omitempty"`
}

// MaxDCs bounds Header.DCs.
const MaxDCs = 16

// Entry is one produced record.
type Entry struct {
	Webhook   uint32 // index into Header.Webhooks
	ID        uint64 // event id
	Timestamp int64  // ms
	Duplicate bool   // a re-production of an earlier event (in this or another datacenter)
	DC        uint8  // index into Header.DCs (0 for a run into one)
}

// Writer writes a manifest. It is not safe for concurrent use.
type Writer struct {
	f        *countingWriter
	z        *zstd.Encoder
	w        *bufio.Writer
	webhooks uint32
	dcs      uint64 // 1 for version 1
	maxID    uint64
	prevTS   int64
	n        uint64
	buf      [3 * binary.MaxVarintLen64]byte
	err      error
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// NewWriter writes the magic and h to w.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	h.Version = 1
	if len(h.DCs) > MaxDCs {
		return nil, fmt.Errorf("manifest: %d datacenters, at most %d", len(h.DCs), MaxDCs)
	}
	if len(h.DCs) > 1 {
		h.Version = 2
	} else {
		h.DCs = nil
	}
	if h.CreatedAt.IsZero() {
		h.CreatedAt = time.Now().UTC()
	}
	if len(h.Webhooks) == 0 || len(h.Webhooks) > math.MaxUint32>>1 {
		return nil, fmt.Errorf("manifest: %d webhooks", len(h.Webhooks))
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	cw := &countingWriter{w: w}
	if _, err := io.WriteString(cw, Magic); err != nil {
		return nil, err
	}
	z, err := zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	mw := &Writer{f: cw, z: z, w: bufio.NewWriterSize(z, 64<<10), webhooks: uint32(len(h.Webhooks)), dcs: uint64(max(len(h.DCs), 1))}
	n := binary.PutUvarint(mw.buf[:], uint64(len(hj)))
	mw.w.Write(mw.buf[:n])
	mw.w.Write(hj)
	return mw, nil
}

// Add appends a record.
func (m *Writer) Add(e Entry) error {
	if m.err != nil {
		return m.err
	}
	if e.Webhook >= m.webhooks {
		return fmt.Errorf("manifest: webhook index %d of %d", e.Webhook, m.webhooks)
	}
	if uint64(e.DC) >= m.dcs {
		return fmt.Errorf("manifest: datacenter %d of %d", e.DC, m.dcs)
	}
	tag := uint64(e.Webhook) << 1
	if e.Duplicate {
		tag |= 1
	}
	tag = tag*m.dcs + uint64(e.DC)
	b := binary.AppendUvarint(m.buf[:0], tag+1)
	b = binary.AppendVarint(b, int64(e.ID-(m.maxID+1)))
	b = binary.AppendVarint(b, e.Timestamp-m.prevTS)
	if e.ID > m.maxID {
		m.maxID = e.ID
	}
	m.prevTS = e.Timestamp
	m.n++
	_, m.err = m.w.Write(b)
	return m.err
}

// Count is the number of records added.
func (m *Writer) Count() uint64 { return m.n }

// Close writes the end marker and flushes the compressed stream; it does not close the
// underlying writer. Bytes is the file's size afterwards.
func (m *Writer) Close() error {
	if m.err != nil {
		m.z.Close()
		return m.err
	}
	b := binary.AppendUvarint(m.buf[:0], 0)
	b = binary.AppendUvarint(b, m.n)
	m.w.Write(b)
	if err := m.w.Flush(); err != nil {
		m.z.Close()
		return err
	}
	m.err = errors.New("manifest: writer closed")
	return m.z.Close()
}

// Bytes is how many bytes were written to the underlying writer so far (all of them after Close).
func (m *Writer) Bytes() int64 { return m.f.n }

// ErrTruncated is returned by Reader.Next when the stream ends before the end marker.
var ErrTruncated = errors.New("manifest: truncated (no end marker: was the run interrupted?)")

// Reader reads a manifest, one record at a time.
type Reader struct {
	h      Header
	z      *zstd.Decoder
	r      *bufio.Reader
	maxID  uint64
	prevTS int64
	n      uint64
	done   bool
	dcs    uint64
}

// NewReader reads the magic and the header from r.
func NewReader(r io.Reader) (*Reader, error) {
	var magic [len(Magic)]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return nil, fmt.Errorf("manifest: reading the magic: %w", err)
	}
	if string(magic[:]) != Magic {
		return nil, fmt.Errorf("manifest: not a loadgen manifest (magic %q)", magic[:])
	}
	z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	mr := &Reader{z: z, r: bufio.NewReaderSize(z, 64<<10)}
	hl, err := binary.ReadUvarint(mr.r)
	if err != nil {
		z.Close()
		return nil, fmt.Errorf("manifest: reading the header length: %w", noEOF(err))
	}
	if hl > MaxHeaderBytes {
		z.Close()
		return nil, fmt.Errorf("manifest: header of %d bytes is larger than %d", hl, MaxHeaderBytes)
	}
	hj := make([]byte, 0, min(hl, 1<<20))
	if hj, err = appendN(hj, mr.r, int(hl)); err != nil {
		z.Close()
		return nil, fmt.Errorf("manifest: reading the header: %w", noEOF(err))
	}
	if err := json.Unmarshal(hj, &mr.h); err != nil {
		z.Close()
		return nil, fmt.Errorf("manifest: header: %w", err)
	}
	switch {
	case mr.h.Version != 1 && mr.h.Version != 2:
		z.Close()
		return nil, fmt.Errorf("manifest: version %d, this reader knows 1 and 2", mr.h.Version)
	case mr.h.Version == 1 && len(mr.h.DCs) != 0:
		z.Close()
		return nil, fmt.Errorf("manifest: a version 1 header names %d datacenters", len(mr.h.DCs))
	case mr.h.Version == 2 && (len(mr.h.DCs) < 2 || len(mr.h.DCs) > MaxDCs):
		z.Close()
		return nil, fmt.Errorf("manifest: a version 2 header names %d datacenters, want 2 to %d", len(mr.h.DCs), MaxDCs)
	}
	mr.dcs = uint64(max(len(mr.h.DCs), 1))
	if len(mr.h.Webhooks) == 0 {
		z.Close()
		return nil, errors.New("manifest: header names no webhooks")
	}
	return mr, nil
}

func appendN(b []byte, r io.Reader, n int) ([]byte, error) {
	for len(b) < n {
		chunk := min(n-len(b), 1<<20)
		start := len(b)
		b = append(b, make([]byte, chunk)...)
		if _, err := io.ReadFull(r, b[start:]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Header is the run's header.
func (m *Reader) Header() Header { return m.h }

// Next returns the next record, or io.EOF after the last one (the end marker and count checked).
func (m *Reader) Next() (Entry, error) {
	if m.done {
		return Entry{}, io.EOF
	}
	tag, err := binary.ReadUvarint(m.r)
	if err != nil {
		return Entry{}, m.fail(err)
	}
	if tag == 0 {
		n, err := binary.ReadUvarint(m.r)
		if err != nil {
			return Entry{}, m.fail(err)
		}
		if n != m.n {
			return Entry{}, fmt.Errorf("manifest: end marker says %d records, read %d", n, m.n)
		}
		m.done = true
		return Entry{}, io.EOF
	}
	tag--
	e := Entry{DC: uint8(tag % m.dcs)}
	tag /= m.dcs
	e.Duplicate = tag&1 == 1
	if tag>>1 >= uint64(len(m.h.Webhooks)) {
		return Entry{}, fmt.Errorf("manifest: record %d names webhook %d of %d", m.n, tag>>1, len(m.h.Webhooks))
	}
	e.Webhook = uint32(tag >> 1)
	did, err := binary.ReadVarint(m.r)
	if err != nil {
		return Entry{}, m.fail(err)
	}
	dts, err := binary.ReadVarint(m.r)
	if err != nil {
		return Entry{}, m.fail(err)
	}
	e.ID = m.maxID + 1 + uint64(did)
	e.Timestamp = m.prevTS + dts
	if e.ID > m.maxID {
		m.maxID = e.ID
	}
	m.prevTS = e.Timestamp
	m.n++
	return e, nil
}

func (m *Reader) fail(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w after %d records", ErrTruncated, m.n)
	}
	return fmt.Errorf("manifest: record %d: %w", m.n, err)
}

// Close releases the decoder.
func (m *Reader) Close() { m.z.Close() }

// ReadAll reads a whole manifest into memory.
func ReadAll(r io.Reader) (Header, []Entry, error) {
	mr, err := NewReader(r)
	if err != nil {
		return Header{}, nil, err
	}
	defer mr.Close()
	var out []Entry
	for {
		e, err := mr.Next()
		if err == io.EOF {
			return mr.h, out, nil
		}
		if err != nil {
			return mr.h, out, err
		}
		out = append(out, e)
	}
}
