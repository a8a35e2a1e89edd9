package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/replay/replay/segment"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// scanData is a segment's worth of ~1 KB Account Activity JSON records, 32 to a batch (what a
// producer with batch.size 32 KiB and some linger sends), encoded with one codec.
type scanData struct {
	log          []byte
	records      int
	uncompressed int64
}

func makeScanData(b testing.TB, codec segment.Codec) scanData {
	rng := rand.New(rand.NewPCG(7, 7))
	const nRecords, perBatch = 16 * 1024, 32
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
			b.Fatal(err)
		}
	}
	d.records = nRecords
	return d
}

func reportScan(b *testing.B, d scanData) {
	b.SetBytes(int64(len(d.log)))
	b.ReportMetric(float64(d.records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkSegmentScan iterates every record of an in-memory segment three ways, side by side:
// our Scanner and RecordReader; franz-go's kmsg types with the same codec libraries (the path a
// Kafka client takes); and decompression alone, the floor no reader can beat. MB/s counts log
// (compressed) bytes.
//
//	go test -run '^$' -bench SegmentScan -count 6 ./bench/ | tee scan.txt; benchstat scan.txt
func BenchmarkSegmentScan(b *testing.B) {
	for _, codec := range []segment.Codec{segment.CodecNone, segment.CodecSnappy, segment.CodecLZ4, segment.CodecZstd, segment.CodecGzip} {
		b.Run(fmt.Sprintf("codec=%s", codec), func(b *testing.B) { benchmarkScan(b, codec) })
	}
}

func benchmarkScan(b *testing.B, codec segment.Codec) {
	d := makeScanData(b, codec)
	{
		b.Run("reader=segment", func(b *testing.B) {
			var rr segment.RecordReader
			var sum int
			for b.Loop() {
				sc := segment.NewScanner(bytes.NewReader(d.log), "bench", int64(len(d.log)), segment.ScanOptions{})
				for sc.Next() {
					if err := rr.Reset(sc.Batch()); err != nil {
						b.Fatal(err)
					}
					for rr.Next() {
						sum += len(rr.Record().Value)
					}
				}
				if sc.Err() != nil || rr.Err() != nil {
					b.Fatal(sc.Err(), rr.Err())
				}
			}
			reportScan(b, d)
		})
		b.Run("reader=kmsg", func(b *testing.B) {
			var dec codecs
			var sum int
			for b.Loop() {
				for rest := d.log; len(rest) > 0; {
					n := 12 + int(binary.BigEndian.Uint32(rest[8:]))
					var kb kmsg.RecordBatch
					if err := kb.ReadFrom(rest[:n]); err != nil {
						b.Fatal(err)
					}
					rest = rest[n:]
					data := dec.decompress(b, segment.Codec(kb.Attributes&7), kb.Records)
					for len(data) > 0 {
						length, m := binary.Varint(data)
						var kr kmsg.Record
						if err := kr.ReadFrom(data[:m+int(length)]); err != nil {
							b.Fatal(err)
						}
						data = data[m+int(length):]
						sum += len(kr.Value)
					}
				}
			}
			reportScan(b, d)
		})
		b.Run("reader=decompress-only", func(b *testing.B) {
			var dec codecs
			for b.Loop() {
				for rest := d.log; len(rest) > 0; {
					n := 12 + int(binary.BigEndian.Uint32(rest[8:]))
					dec.decompress(b, codec, rest[61:n])
					rest = rest[n:]
				}
			}
			reportScan(b, d)
		})
	}
}

// codecs decompresses with the codec libraries directly, reusing decoders and buffers as a
// careful client would.
type codecs struct {
	buf  []byte
	gz   *gzip.Reader
	lz   *lz4.Reader
	zstd *zstd.Decoder
}

func (c *codecs) decompress(b testing.TB, codec segment.Codec, src []byte) []byte {
	var err error
	switch codec {
	case segment.CodecNone:
		return src
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
	}
	if err != nil {
		b.Fatal(err)
	}
	return c.buf
}
