package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/enginetest"
	"github.com/replay/replay/segment"
)

// appendRecords are ~1 KB Account Activity events, the same for every append benchmark.
func appendRecords(n int) []engine.Record {
	recs := make([]engine.Record, n)
	for i := range recs {
		recs[i] = engine.Record{
			Key:       []byte(fmt.Sprint(1095098195724595200 + i%1000)),
			Value:     []byte(fmt.Sprintf(`{"for_user_id":"%d","tweet_create_events":[{"id_str":"%d","text":"%0900d"}]}`, i, i, i)),
			Timestamp: 1_763_800_000_000 + int64(i),
		}
	}
	return recs
}

// BenchmarkAppend measures Append with the default durability (fsync before returning), with
// one appender and with eight (group commit), side by side with the floor: writing and fsyncing
// the same bytes to a plain file, one fsync per append.
//
//	go test -run '^$' -bench 'Append' -count 6 ./bench/
func BenchmarkAppend(b *testing.B) {
	for _, perAppend := range []int{1, 16} {
		recs := appendRecords(perAppend)
		var size int64
		for _, r := range recs {
			size += int64(len(r.Key) + len(r.Value))
		}
		b.Run(fmt.Sprintf("records=%d/writer=log/appenders=1", perAppend), func(b *testing.B) {
			l, err := engine.Open(engine.Options{Dir: b.TempDir(), Partitions: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			b.SetBytes(size)
			for b.Loop() {
				if _, err := l.Append(context.Background(), recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(perAppend*b.N)/b.Elapsed().Seconds(), "records/s")
		})
		b.Run(fmt.Sprintf("records=%d/writer=log/appenders=8", perAppend), func(b *testing.B) {
			l, err := engine.Open(engine.Options{Dir: b.TempDir(), Partitions: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			b.SetBytes(size)
			b.SetParallelism(4) // 4 × GOMAXPROCS(2) = 8 appenders
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Append(context.Background(), recs); err != nil {
						b.Error(err)
						return
					}
					n.Add(int64(perAppend))
				}
			})
			b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "records/s")
		})
		b.Run(fmt.Sprintf("records=%d/writer=plain-file-fsync", perAppend), func(b *testing.B) {
			// The same encoded bytes the log writes, appended and fsynced.
			var bld segment.Builder
			for i := range recs {
				bld.Add(&segment.Record{Key: recs[i].Key, Value: recs[i].Value, Timestamp: recs[i].Timestamp})
			}
			raw, _ := bld.Build(nil, segment.BatchOptions{Codec: segment.CodecSnappy})
			f, err := os.Create(filepath.Join(b.TempDir(), "plain"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			b.SetBytes(size)
			for b.Loop() {
				if _, err := f.Write(raw); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(perAppend*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkSourceRead reads one partition of the same data through each Source, decoding every
// record: the embedded log, a DirSource over its directory, and a KafkaSource over an in-process
// kfake cluster holding the same batches.
//
//	go test -run '^$' -bench 'SourceRead' -count 6 ./bench/
func BenchmarkSourceRead(b *testing.B) {
	dir := b.TempDir()
	l, err := engine.Open(engine.Options{Dir: dir, Partitions: 1, Sync: engine.SyncNever, SegmentBytes: 16 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	recs := appendRecords(1000)
	for i := 0; i < 64; i++ {
		if _, err := l.Append(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	dirSrc, err := engine.OpenDir(engine.DirOptions{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer dirSrc.Close()
	kc := enginetest.NewKafkaCluster(b, 1, "delivery_log", 1)
	err = l.Scan(context.Background(), 0, 0, func(bt *segment.Batch) error {
		raw := bytes.Clone(bt.Raw)
		segment.SetBaseOffset(raw, 0) // as a producer sends it; the broker assigns offsets
		kc.ProduceRaw(b, 0, raw)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	kafkaSrc, err := engine.NewKafkaSource(context.Background(), engine.KafkaOptions{Brokers: kc.Brokers()})
	if err != nil {
		b.Fatal(err)
	}
	defer kafkaSrc.Close()
	for _, s := range []struct {
		name string
		src  engine.Source
	}{{"embedded", l}, {"dir", dirSrc}, {"kafka", kafkaSrc}} {
		b.Run("source="+s.name, func(b *testing.B) {
			var rr segment.RecordReader
			var logBytes, n int64
			for b.Loop() {
				err := s.src.Scan(context.Background(), 0, 0, func(bt *segment.Batch) error {
					logBytes += bt.Size()
					if err := rr.Reset(bt); err != nil {
						return err
					}
					for rr.Next() {
						n++
					}
					return rr.Err()
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(logBytes)/b.Elapsed().Seconds()/1e6, "logMB/s")
		})
	}
}
