package main

import (
	"context"
	"testing"

	"github.com/replay/replay/engine"
)

// BenchmarkKafka is the kafka benchmark of the binary (kafka.go) as a Go benchmark: a 1-node
// Kafka 4.4 started for it, 100k events of replay.go's data set copied into it, then
//
//	replay/share=X/{index,seed}: one hot webhook's 30-minute window from the broker, through
//	  the index and KafkaSource's targeted fetches vs the seed's consumer (offsetsForTimes,
//	  fetch, filter by key); bytes fetched from the broker per delivered event, time to first;
//	scan/{kafka,kfake}: KafkaSource scanning partition 0's first 50k records from the real
//	  broker vs from kfake holding the same records.
//
//	go test -run '^$' -bench 'Kafka' -benchtime 5x ./bench/
func BenchmarkKafka(b *testing.B) {
	ctx := context.Background()
	k, err := startKafkaBench(ctx, b.TempDir(), 100_000, 5000, 50_000)
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	b.Logf("data: %s", k.describe())
	from, to := replayWindowMs()
	for _, h := range k.d.hot {
		p := engine.PartitionFor(h.key, 2)
		for _, v := range []struct {
			name string
			read func(context.Context, int32, []byte, int64, int64) (replayStats, error)
		}{{"index", k.replayIndex}, {"seed", k.replaySeed}} {
			b.Run("replay/share="+h.label+"/"+v.name, func(b *testing.B) {
				var sum replayStats
				for b.Loop() {
					st, err := v.read(ctx, p, h.key, from, to)
					if err != nil {
						b.Fatal(err)
					}
					if st.events == 0 {
						b.Fatal("no events delivered")
					}
					sum.add(st)
				}
				n := float64(b.N)
				b.ReportMetric(ms(sum.first)/n, "ms-to-first")
				b.ReportMetric(sum.bytes/sum.events, "B-fetched/event")
				b.ReportMetric(sum.events/n, "events")
			})
		}
	}
	for _, s := range []struct {
		name string
		src  engine.Source
	}{{"kafka", k.src}, {"kfake", k.fakeSrc}} {
		b.Run("scan/"+s.name, func(b *testing.B) {
			var recs, bytes int64
			for b.Loop() {
				n, nb, _, err := k.scan(ctx, s.src)
				if err != nil {
					b.Fatal(err)
				}
				if n != k.scanUpTo {
					b.Fatalf("%d records, want %d", n, k.scanUpTo)
				}
				recs, bytes = recs+n, bytes+nb
			}
			b.ReportMetric(float64(recs)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(bytes)/b.Elapsed().Seconds()/1e6, "logMB/s")
		})
	}
}
