package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/replay/replay/segment"
)

// scanData is a segment's worth of ~1 KB Account Activity JSON records, 32 to a batch (what a
// producer with batch.size 32 KiB and some linger sends), encoded with one codec.
type scanData struct {
	log          []byte
	records      int
	uncompressed int64
}

func makeScanData(codec segment.Codec, nRecords int) (scanData, error) {
	rng := rand.New(rand.NewPCG(7, 7))
	const perBatch = 32
	words := []string{"replay", "webhook", "event", "kafka", "delivery", "tweet", "follow", "favorite", "#golang", "the", "a", "of", "and"}
	var d scanData
	var bld segment.Builder
	var err error
	for i := 0; i < nRecords; i += perBatch {
		bld.Reset()
		for j := i; j < i+perBatch; j++ {
			var text bytes.Buffer
			for text.Len() < 800 {
				text.WriteString(words[rng.IntN(len(words))])
				text.WriteByte(' ')
			}
			value := fmt.Sprintf(`{"for_user_id":"%d","tweet_create_events":[{"created_at":"Sun Nov 22 09:%02d:%02d +0000 2026","id_str":"%d","text":%q,"user":{"id_str":"%d","screen_name":"user%d"}}]}`,
				rng.Int64N(1e10), j%60, j%60, 1461000000000000000+int64(j), text.String(), rng.Int64N(1e10), rng.IntN(1e6))
			key := fmt.Sprint(1095098195724595200 + rng.Int64N(1000))
			bld.Add(&segment.Record{Timestamp: 1_763_800_000_000 + int64(j), Key: []byte(key), Value: []byte(value),
				Headers: []segment.Header{{Key: []byte("event-id"), Value: []byte(fmt.Sprint(j))}}})
			d.uncompressed += int64(len(value) + len(key))
		}
		if d.log, err = bld.Build(d.log, segment.BatchOptions{BaseOffset: int64(i), Codec: codec}); err != nil {
			return d, err
		}
		d.records += perBatch
	}
	return d, nil
}

// scanReader is one way of reading every record of a scanData; it returns a checksum of what it
// read so that the work cannot be optimised away.
type scanReader interface {
	scan(d *scanData) (int, error)
}

// segmentReader is ours: Scanner + RecordReader.
type segmentReader struct{ rr segment.RecordReader }

func (r *segmentReader) scan(d *scanData) (int, error) {
	var sum int
	sc := segment.NewScanner(bytes.NewReader(d.log), "bench", int64(len(d.log)), segment.ScanOptions{})
	for sc.Next() {
		if err := r.rr.Reset(sc.Batch()); err != nil {
			return 0, err
		}
		for r.rr.Next() {
			sum += len(r.rr.Record().Value)
		}
		if err := r.rr.Err(); err != nil {
			return 0, err
		}
	}
	return sum, sc.Err()
}

// kmsgReader decodes the same batches with franz-go's kmsg types and the same codec libraries:
// the path a Kafka client takes.
type kmsgReader struct{ dec codecs }

func (r *kmsgReader) scan(d *scanData) (int, error) {
	var sum int
	for rest := d.log; len(rest) > 0; {
		n := 12 + int(binary.BigEndian.Uint32(rest[8:]))
		var kb kmsg.RecordBatch
		if err := kb.ReadFrom(rest[:n]); err != nil {
			return 0, err
		}
		rest = rest[n:]
		data, err := r.dec.decompress(segment.Codec(kb.Attributes&7), kb.Records)
		if err != nil {
			return 0, err
		}
		for len(data) > 0 {
			length, m := binary.Varint(data)
			var kr kmsg.Record
			if err := kr.ReadFrom(data[:m+int(length)]); err != nil {
				return 0, err
			}
			data = data[m+int(length):]
			sum += len(kr.Value)
		}
	}
	return sum, nil
}

// decompressReader only decompresses each batch's records: the floor no reader can beat.
type decompressReader struct {
	codec segment.Codec
	dec   codecs
}

func (r *decompressReader) scan(d *scanData) (int, error) {
	var sum int
	for rest := d.log; len(rest) > 0; {
		n := 12 + int(binary.BigEndian.Uint32(rest[8:]))
		out, err := r.dec.decompress(r.codec, rest[61:n])
		if err != nil {
			return 0, err
		}
		sum += len(out)
		rest = rest[n:]
	}
	return sum, nil
}

func newScanReader(variant string, codec segment.Codec) scanReader {
	switch variant {
	case "segment":
		return &segmentReader{}
	case "kmsg":
		return &kmsgReader{}
	default:
		return &decompressReader{codec: codec}
	}
}

var scanVariants = []string{"segment", "kmsg", "decompress-only"}

// codecs decompresses with the codec libraries directly, reusing decoders and buffers as a
// careful client would.
type codecs struct {
	buf  []byte
	gz   *gzip.Reader
	lz   *lz4.Reader
	zstd *zstd.Decoder
}

func (c *codecs) decompress(codec segment.Codec, src []byte) ([]byte, error) {
	var err error
	switch codec {
	case segment.CodecNone:
		return src, nil
	case segment.CodecSnappy:
		n, _ := snappy.DecodedLen(src)
		if cap(c.buf) < n {
			c.buf = make([]byte, n)
		}
		c.buf, err = snappy.Decode(c.buf[:n], src)
	case segment.CodecGzip:
		if c.gz == nil {
			c.gz, err = gzip.NewReader(bytes.NewReader(src))
		} else {
			err = c.gz.Reset(bytes.NewReader(src))
		}
		if err == nil {
			w := bytes.NewBuffer(c.buf[:0])
			_, err = io.Copy(w, c.gz)
			c.buf = w.Bytes()
		}
	case segment.CodecLZ4:
		if c.lz == nil {
			c.lz = lz4.NewReader(bytes.NewReader(src))
		} else {
			c.lz.Reset(bytes.NewReader(src))
		}
		w := bytes.NewBuffer(c.buf[:0])
		_, err = io.Copy(w, c.lz)
		c.buf = w.Bytes()
	case segment.CodecZstd:
		if c.zstd == nil {
			c.zstd, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		}
		c.buf, err = c.zstd.DecodeAll(src, c.buf[:0])
	default:
		err = fmt.Errorf("codec %v", codec)
	}
	return c.buf, err
}

// runScan is benchmark 2: records/s and MB/s of our reader vs kmsg vs decompression alone.
func runScan(ctx context.Context, c *Config) (*Report, error) {
	rep := &Report{Name: "scan", Title: "2. Segment scan: our reader vs franz-go kmsg vs decompression alone"}
	rep.Setup = fmt.Sprintf("An in-memory segment of %d ~1 KB JSON records, 32 per batch, per codec. **segment** = our "+
		"`Scanner` + `RecordReader` (CRC checked, records iterated); **kmsg** = franz-go's `kmsg.RecordBatch`/`kmsg.Record` "+
		"decoding with the same codec libraries (a Kafka client's path); **decompress-only** = the codec alone on each "+
		"batch's records (the physical floor). One sample = as many whole passes as fit in %v; MB/s counts log (compressed) "+
		"bytes. Variants rotate within a run.", c.ScanRecords, c.ScanMinTime)
	for _, codec := range c.ScanCodecs {
		d, err := makeScanData(codec, c.ScanRecords)
		if err != nil {
			return rep, err
		}
		cse := "codec=" + codec.String()
		readers := map[string]scanReader{}
		for _, v := range scanVariants {
			readers[v] = newScanReader(v, codec)
			if _, err := readers[v].scan(&d); err != nil { // warm up buffers
				return rep, fmt.Errorf("%s %s: %w", cse, v, err)
			}
		}
		for run := 0; run < c.Runs; run++ {
			for i := range scanVariants {
				v := scanVariants[(i+run)%len(scanVariants)]
				passes, el, err := timeScan(ctx, readers[v], &d, c.ScanMinTime)
				if err != nil {
					return rep, fmt.Errorf("%s %s: %w", cse, v, err)
				}
				rep.add(cse, v, "records/s", "records/s", true, float64(passes*d.records)/el.Seconds())
				rep.add(cse, v, "MB/s", "MB/s", true, float64(passes*len(d.log))/1e6/el.Seconds())
			}
		}
		rep.compare(cse, "segment", "kmsg", "records/s")
		if codec != segment.CodecNone { // uncompressed: nothing to decompress, no floor
			rep.compare(cse, "segment", "decompress-only", "records/s")
			rep.Compare[len(rep.Compare)-1].IsCeilingFactor = true
		}
	}
	return rep, nil
}

// timeScan runs whole passes until minTime has passed.
func timeScan(ctx context.Context, r scanReader, d *scanData, minTime time.Duration) (int, time.Duration, error) {
	start := time.Now()
	passes := 0
	for {
		if _, err := r.scan(d); err != nil {
			return 0, 0, err
		}
		passes++
		if el := time.Since(start); el >= minTime || ctx.Err() != nil {
			return passes, el, ctx.Err()
		}
	}
}
