package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/kafkatest"
	"github.com/replay/replay/index"
	"github.com/replay/replay/loadgen/produce"
	"github.com/replay/replay/segment"
)

// The Kafka benchmark replays the hot webhooks of a data set made as replay.go makes its own
// (makeIndexData, KafkaEvents events), copied into a topic of a real Kafka broker started with
// engine/kafkatest, and compares, on that broker:
//   - ours: the index (built from the broker through KafkaSource) + KafkaSource.ReadBatches,
//     targeted fetches of exactly the indexed batches;
//   - the seed as Twitter ran it: a franz-go consumer assigned the webhook's partition at
//     offsetsForTimes(from) (kadm.ListOffsetsAfterMilli), fetching with the Java consumer's
//     defaults and filtering by key until the first record at or past to + 2×jitter;
//
// and the read throughput of KafkaSource scanning a partition from the real broker vs from kfake
// holding the same records.
const kafkaTopic = "delivery_log"

// fetchBytes counts the bytes of Fetch responses a client read from its brokers.
type fetchBytes struct{ n atomic.Int64 }

func (f *fetchBytes) OnBrokerRead(_ kgo.BrokerMetadata, key int16, bytesRead int, _, _ time.Duration, err error) {
	if key == kmsg.Fetch.Int16() && err == nil {
		f.n.Add(int64(bytesRead))
	}
}

// kafkaBench is the benchmark's setting: the broker, the data on it, the index of it.
type kafkaBench struct {
	cluster   *kafkatest.Cluster
	d         *indexData // the same records, on local segments
	src       *engine.KafkaSource
	srcBytes  *fetchBytes // what src fetched
	ix        *index.Index
	fake      *kfake.Cluster
	fakeSrc   *engine.KafkaSource
	scanUpTo  int64 // the scan case reads partition 0's offsets [0, scanUpTo)
	brokerB   int64 // bytes of the topic's batches on the broker
	batches   int64
	startedIn time.Duration
	copiedIn  time.Duration
}

// startKafkaBench starts a 1-node Kafka, makes the data set in dir, copies it into the broker
// (franz-go, the Java producer's default batching: 16 KiB, 5 ms, snappy) and into kfake (partition
// 0's first scanRecords records), and builds the index from the broker. Close it.
func startKafkaBench(ctx context.Context, dir string, events, webhooks, scanRecords int) (_ *kafkaBench, err error) {
	k := &kafkaBench{}
	defer func() {
		if err != nil {
			k.Close()
		}
	}()
	t0 := time.Now()
	if k.cluster, err = kafkatest.Start(ctx, kafkatest.Options{Nodes: 1}); err != nil {
		return nil, err
	}
	k.startedIn = time.Since(t0)
	keep := "-1"
	if err := k.cluster.CreateTopic(ctx, kafkaTopic, 2, 1, map[string]*string{"retention.ms": &keep}); err != nil {
		return nil, err
	}
	if k.d, err = makeIndexData(ctx, filepath.Join(dir, "data"), events, webhooks); err != nil {
		return nil, err
	}
	k.fake, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, kafkaTopic))
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	if err := copyToKafka(ctx, k.d.src, k.cluster.Bootstrap(), -1); err != nil {
		return nil, fmt.Errorf("copying the data set into the broker: %w", err)
	}
	if err := copyToKafka(ctx, k.d.src, k.fake.ListenAddrs(), int64(scanRecords)); err != nil {
		return nil, fmt.Errorf("copying the data set into kfake: %w", err)
	}
	k.copiedIn = time.Since(t1)
	k.srcBytes = &fetchBytes{}
	if k.src, err = engine.NewKafkaSource(ctx, engine.KafkaOptions{Brokers: k.cluster.Bootstrap(), Topic: kafkaTopic,
		ClientOpts: []kgo.Opt{kgo.WithHooks(k.srcBytes)}}); err != nil {
		return nil, err
	}
	if k.fakeSrc, err = engine.NewKafkaSource(ctx, engine.KafkaOptions{Brokers: k.fake.ListenAddrs(), Topic: kafkaTopic}); err != nil {
		return nil, err
	}
	for p := int32(0); p < 2; p++ {
		err := k.src.Scan(ctx, p, 0, func(b *segment.Batch) error {
			k.batches++
			k.brokerB += b.Size()
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	b, err := k.fakeSrc.Bounds(ctx, 0)
	if err != nil {
		return nil, err
	}
	k.scanUpTo = b.End
	if k.ix, err = buildIndex(ctx, k.src, filepath.Join(dir, "index")); err != nil {
		return nil, err
	}
	return k, k.ix.Compact(ctx)
}

func (k *kafkaBench) Close() {
	if k.ix != nil {
		k.ix.Close()
	}
	if k.src != nil {
		k.src.Close()
	}
	if k.fakeSrc != nil {
		k.fakeSrc.Close()
	}
	if k.d != nil {
		k.d.src.Close()
	}
	if k.fake != nil {
		k.fake.Close()
	}
	if k.cluster != nil {
		k.cluster.Close()
	}
}

func (k *kafkaBench) describe() string {
	return fmt.Sprintf("%s; on a 1-node Kafka %s (started in %v), copied in %v with franz-go at the Java producer's defaults "+
		"(batch.size 16 KiB, linger 5 ms, snappy): %d batches, %.1f MB",
		k.d.describe(), kafkatest.KafkaVersion, k.startedIn.Round(time.Millisecond), k.copiedIn.Round(time.Millisecond),
		k.batches, float64(k.brokerB)/1e6)
}

// copyToKafka produces every record of src (at most limit per partition, -1 all) into the same
// partition of the topic at brokers, with timestamps, keys and headers as they are.
func copyToKafka(ctx context.Context, src engine.Source, brokers []string, limit int64) error {
	cl, err := kgo.NewClient(produce.KafkaClientOpts(brokers, kafkaTopic, produce.DefaultBatching,
		kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var (
		mu    sync.Mutex
		first error
	)
	var rr segment.RecordReader
	for p := int32(0); p < 2; p++ {
		var n int64
		err := src.Scan(ctx, p, 0, func(b *segment.Batch) error {
			if b.IsControl() {
				return nil
			}
			if err := rr.Reset(b); err != nil {
				return err
			}
			for rr.Next() {
				if limit >= 0 && n >= limit {
					return engine.ErrStop
				}
				n++
				r := rr.Record()
				kr := &kgo.Record{Partition: p, Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value), Timestamp: time.UnixMilli(r.Timestamp)}
				for _, h := range r.Headers {
					kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: string(h.Key), Value: bytes.Clone(h.Value)})
				}
				cl.Produce(ctx, kr, func(_ *kgo.Record, err error) {
					if err != nil {
						mu.Lock()
						if first == nil {
							first = err
						}
						mu.Unlock()
					}
				})
			}
			return rr.Err()
		})
		if err != nil && !errors.Is(err, engine.ErrStop) {
			return err
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return first
}

// replayIndex is ours on the broker: replayIndex of replay.go through the KafkaSource, the bytes
// being those of the Fetch responses.
func (k *kafkaBench) replayIndex(ctx context.Context, p int32, key []byte, from, to int64) (replayStats, error) {
	before := k.srcBytes.n.Load()
	st, err := replayIndex(ctx, k.ix, k.src, p, key, from, to)
	st.bytes = float64(k.srcBytes.n.Load() - before)
	return st, err
}

// replaySeed is the seed as a real consumer: ListOffsets by time, then a franz-go consumer of
// its own assigned the partition at that offset, fetching with the Java consumer's defaults
// (fetch.max.bytes 50 MiB, max.partition.fetch.bytes 1 MiB, fetch.max.wait.ms 500), filtering by
// key and window until the first record at or past to + 2×jitter (see replaySeed in replay.go).
func (k *kafkaBench) replaySeed(ctx context.Context, p int32, key []byte, from, to int64) (replayStats, error) {
	start := time.Now()
	var st replayStats
	fb := &fetchBytes{}
	adm, err := kgo.NewClient(kgo.SeedBrokers(k.cluster.Bootstrap()...))
	if err != nil {
		return st, err
	}
	defer adm.Close()
	offs, err := kadm.NewClient(adm).ListOffsetsAfterMilli(ctx, from, kafkaTopic)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		return st, fmt.Errorf("offsetsForTimes(%d) on %s: %w", from, kafkaTopic, err)
	}
	o, ok := offs.Lookup(kafkaTopic, p)
	if !ok {
		return st, fmt.Errorf("offsetsForTimes: no answer for %s-%d", kafkaTopic, p)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.cluster.Bootstrap()...), kgo.WithHooks(fb),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{kafkaTopic: {p: kgo.NewOffset().At(o.Offset)}}),
		kgo.FetchMaxBytes(50<<20), kgo.FetchMaxPartitionBytes(1<<20), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return st, err
	}
	defer cl.Close()
	stopAt := to + 2*indexJitter.Milliseconds()
	for done := false; !done; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return st, fmt.Errorf("consuming %s-%d: %v", kafkaTopic, p, errs[0].Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			ts := r.Timestamp.UnixMilli()
			if done || ts >= stopAt {
				done = true
				return
			}
			if ts >= from && ts < to && bytes.Equal(r.Key, key) {
				if st.events == 0 {
					st.first = time.Since(start)
				}
				st.events++
			}
		})
	}
	st.total = time.Since(start)
	st.bytes = float64(fb.n.Load())
	return st, nil
}

// scan reads partition 0's offsets [0, k.scanUpTo) through src, decoding every record.
func (k *kafkaBench) scan(ctx context.Context, src engine.Source) (records, bytes int64, el time.Duration, err error) {
	t0 := time.Now()
	var rr segment.RecordReader
	err = src.Scan(ctx, 0, 0, func(b *segment.Batch) error {
		if b.BaseOffset >= k.scanUpTo {
			return engine.ErrStop
		}
		bytes += b.Size()
		if err := rr.Reset(b); err != nil {
			return err
		}
		for rr.Next() {
			if rr.Record().Offset < k.scanUpTo {
				records++
			}
		}
		return rr.Err()
	})
	if errors.Is(err, engine.ErrStop) {
		err = nil
	}
	return records, bytes, time.Since(t0), err
}

// runKafka is benchmark 1 on a real Kafka broker, plus KafkaSource's read throughput there vs
// kfake.
func runKafka(ctx context.Context, c *Config) (*Report, error) {
	rep := &Report{Name: "kafka", Title: "1b. Seek and replay on a real Kafka broker: index + targeted fetches vs the seed's consumer"}
	if _, err := kafkatest.LibDir(); err != nil {
		rep.Skipped = err.Error()
		return rep, nil
	}
	k, err := startKafkaBench(ctx, filepath.Join(c.TempDir, "kafka"), c.KafkaEvents, c.IndexWebhooks, c.KafkaScanRecords)
	if err != nil {
		return rep, err
	}
	defer k.Close()
	c.Log.Info("kafka data set", "data", k.describe())
	from, to := replayWindowMs()
	rep.Setup = fmt.Sprintf("Data: %s. Each sample replays one hot webhook's %v window (%s + %v) from the broker: "+
		"**index** = `LookupPartition` (an index built from the broker through `KafkaSource`) + `KafkaSource.ReadBatches`, "+
		"targeted Fetches of those batches, each bringing along the wanted ones after it while the batches between cost at most 4× their bytes (one connection kept, as a daemon's), decode, key/time filter; "+
		"**seed** = the seed's design as a real consumer: `kadm.ListOffsetsAfterMilli(from)` (offsetsForTimes), then a "+
		"fresh franz-go consumer assigned the partition at that offset with the Java consumer's fetch defaults "+
		"(fetch.max.bytes 50 MiB, max.partition.fetch.bytes 1 MiB, fetch.max.wait 500 ms), filtering by key and time until "+
		"the first record at or past to + 2×jitter. Bytes are those of the Fetch responses the client read from the broker "+
		"(kgo `OnBrokerRead`), the consumer's prefetch included. Both must deliver the same events (checked every sample). "+
		"**scan** case: `KafkaSource.Scan` of partition 0's first %d records (decoded) from the real broker vs from kfake "+
		"holding the same records.",
		k.describe(), replayWindow, indexStart.Add(replayOffset).Format("15:04"), replayWindow, k.scanUpTo)
	type variant struct {
		name string
		read func(p int32, key []byte) (replayStats, error)
	}
	variants := []variant{
		{"index", func(p int32, key []byte) (replayStats, error) { return k.replayIndex(ctx, p, key, from, to) }},
		{"seed", func(p int32, key []byte) (replayStats, error) { return k.replaySeed(ctx, p, key, from, to) }},
	}
	for _, h := range k.d.hot {
		cse := "share=" + h.label
		p := engine.PartitionFor(h.key, 2)
		for run := 0; run < c.Runs; run++ {
			var events [2]float64
			for i := range variants {
				v := variants[(i+run)%2]
				st, err := v.read(p, h.key)
				if err != nil {
					return rep, fmt.Errorf("%s %s: %w", cse, v.name, err)
				}
				events[(i+run)%2] = st.events
				rep.add(cse, v.name, "time to first event", "ms", false, ms(st.first))
				rep.add(cse, v.name, "total time", "ms", false, ms(st.total))
				rep.add(cse, v.name, "bytes fetched / delivered event", "B", false, st.bytes/max(st.events, 1))
				rep.add(cse, v.name, "MB fetched", "MB", false, st.bytes/1e6)
				rep.add(cse, v.name, "events delivered", "", true, st.events)
			}
			if events[0] != events[1] || events[0] == 0 {
				return rep, fmt.Errorf("%s: index read %v events, seed %v", cse, events[0], events[1])
			}
		}
		rep.compare(cse, "index", "seed", "time to first event", "total time", "bytes fetched / delivered event")
	}
	// Read throughput of KafkaSource: the real broker vs kfake.
	for run := 0; run < c.Runs; run++ {
		for i := range 2 {
			name, src := "kafka", k.src
			if (i+run)%2 == 1 {
				name, src = "kfake", k.fakeSrc
			}
			n, b, el, err := k.scan(ctx, src)
			if err != nil {
				return rep, fmt.Errorf("scan %s: %w", name, err)
			}
			if n != k.scanUpTo {
				return rep, fmt.Errorf("scan %s: %d records, want %d", name, n, k.scanUpTo)
			}
			rep.add("scan", name, "records/s", "/s", true, float64(n)/el.Seconds())
			rep.add("scan", name, "MB/s", "MB/s", true, float64(b)/1e6/el.Seconds())
		}
	}
	rep.compare("scan", "kafka", "kfake", "records/s", "MB/s")

	const tc = "share=0.1%"
	readX := rep.ratio(tc, "bytes fetched / delivered event", "index", "seed")
	timeX := rep.ratio(tc, "total time", "index", "seed")
	rep.target(readX >= 50, "0.1% webhook on a real broker: ≥ 50× fewer bytes fetched than the seed's consumer", "%.0f× fewer", readX)
	rep.target(timeX >= 20, "0.1% webhook on a real broker: ≥ 20× faster than the seed's consumer", "%.0f× faster (%.1f ms vs %.1f ms)",
		timeX, rep.med(tc, "index", "total time"), rep.med(tc, "seed", "total time"))
	rep.Notes = append(rep.Notes, "The seed's consumer fetches up to 1 MiB of the partition per Fetch and keeps prefetching while "+
		"it filters, so its bytes include what it fetched past the stop point. Ours fetches the indexed batches in order, "+
		"one Fetch round trip at a time: the first asks for one batch (`TargetedFetchBytes` 1: the broker returns the "+
		"whole batch holding the offset), each next one for the span of the wanted batches after it as far as the bytes "+
		"between them stay within 4× the wanted ones' (`KafkaSource.fetchBytesFor`), so dense shares come in a few large "+
		"Fetches and sparse ones a batch per Fetch. What bounds the 0.1% share: its bytes are about one batch per "+
		"delivered event (the broker returns whole batches), and its time is that many sequential round trips after "+
		"the first event's.")
	rep.Notes = append(rep.Notes, fmt.Sprintf("Scan throughput of `KafkaSource` (decode included): the real broker %.0f records/s "+
		"(%.1f MB/s), kfake (in-process, batches in memory, its Go handlers on the same cores) %.0f records/s (%.1f MB/s): "+
		"kfake's numbers are no stand-in for a broker's.",
		rep.med("scan", "kafka", "records/s"), rep.med("scan", "kafka", "MB/s"), rep.med("scan", "kfake", "records/s"), rep.med("scan", "kfake", "MB/s")))
	return rep, nil
}
