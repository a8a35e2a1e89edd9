package main

import (
	"fmt"
	"testing"

	"github.com/replay/replay/segment"
)

// BenchmarkSegmentScan iterates every record of an in-memory segment three ways, side by side:
// our Scanner and RecordReader; franz-go's kmsg types with the same codec libraries (the path a
// Kafka client takes); and decompression alone, the floor no reader can beat. MB/s counts log
// (compressed) bytes. The same readers back `go run ./bench --only scan` (scan.go).
//
//	go test -run '^$' -bench SegmentScan -count 6 ./bench/ | tee scan.txt; benchstat scan.txt
func BenchmarkSegmentScan(b *testing.B) {
	for _, codec := range []segment.Codec{segment.CodecNone, segment.CodecSnappy, segment.CodecLZ4, segment.CodecZstd, segment.CodecGzip} {
		b.Run(fmt.Sprintf("codec=%s", codec), func(b *testing.B) {
			d, err := makeScanData(codec, 16*1024)
			if err != nil {
				b.Fatal(err)
			}
			for _, v := range scanVariants {
				b.Run("reader="+v, func(b *testing.B) {
					r := newScanReader(v, codec)
					for b.Loop() {
						if _, err := r.scan(&d); err != nil {
							b.Fatal(err)
						}
					}
					b.SetBytes(int64(len(d.log)))
					b.ReportMetric(float64(d.records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
				})
			}
		})
	}
}
