package kafkatest_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/kafkatest"
	"github.com/replay/replay/segment"
)

// TestMirrorMaker: MirrorMaker 2 between two clusters, both ways, with DefaultReplicationPolicy:
// each cluster gets the other's topic as "<alias>.delivery_log", every record with its key,
// value, headers, timestamp and partition.
func TestMirrorMaker(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	dc1, dc2 := kafkatest.Shared(t, 1), kafkatest.New(t, kafkatest.Options{})
	const parts = 3
	type rec struct {
		key, value, header string
		ts                 int64
		partition          int32
	}
	produced := map[string][]rec{}
	for name, c := range map[string]*kafkatest.Cluster{"dc1": dc1, "dc2": dc2} {
		if err := c.CreateTopic(ctx, "delivery_log", parts, 0, nil); err != nil {
			t.Fatal(err)
		}
		cl, err := c.Client(kgo.DefaultProduceTopic("delivery_log"), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerBatchCompression(kgo.SnappyCompression()))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 60 {
			r := &kgo.Record{Key: []byte(strconv.Itoa(1000 + i%7)), Value: fmt.Appendf(nil, "%s-%d", name, i),
				Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i)), Headers: []kgo.RecordHeader{{Key: "event-id", Value: fmt.Appendf(nil, "%s/%d", name, i)}}}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
			produced[name] = append(produced[name], rec{string(r.Key), string(r.Value), string(r.Headers[0].Value), r.Timestamp.UnixMilli(), r.Partition})
		}
		cl.Close()
	}
	start := time.Now()
	mm, err := kafkatest.StartMirror(ctx, kafkatest.MirrorOptions{Clusters: map[string]*kafkatest.Cluster{"dc1": dc1, "dc2": dc2}})
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	for _, c := range []struct {
		into  *kafkatest.Cluster
		from  string
		topic string
	}{{dc1, "dc2", "dc2.delivery_log"}, {dc2, "dc1", "dc1.delivery_log"}} {
		if err := mm.WaitTopic(ctx, c.into, c.topic, parts); err != nil {
			t.Fatal(err)
		}
		cl, err := c.into.Client(kgo.ConsumeTopics(c.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		var got []rec
		for len(got) < len(produced[c.from]) {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				t.Fatalf("%s: %d of %d records mirrored: %v\n%s", c.topic, len(got), len(produced[c.from]), err, mm.Log())
			}
			fs.EachRecord(func(r *kgo.Record) {
				h := ""
				for _, x := range r.Headers {
					if x.Key == "event-id" {
						h = string(x.Value)
					}
				}
				got = append(got, rec{string(r.Key), string(r.Value), h, r.Timestamp.UnixMilli(), r.Partition})
			})
		}
		cl.Close()
		t.Logf("%s: %d records mirrored %v after MirrorMaker's start", c.topic, len(got), time.Since(start).Round(time.Millisecond))
		byValue := map[string]rec{}
		for _, r := range got {
			byValue[r.value] = r
		}
		for _, want := range produced[c.from] {
			if g, ok := byValue[want.value]; !ok || g != want {
				t.Errorf("%s: %+v mirrored as %+v (%v)", c.topic, want, g, ok)
			}
		}
		// In MirrorMaker's own batches: its producer's codec (lz4), not the source's (snappy),
		// read from the broker's files.
		src, err := engine.OpenDir(engine.DirOptions{Dir: c.into.Nodes[0].LogDir, Topic: c.topic})
		if err != nil {
			t.Fatal(err)
		}
		batches := 0
		for p := int32(0); p < parts; p++ {
			err := src.Scan(ctx, p, 0, func(b *segment.Batch) error {
				batches++
				if b.Codec() != segment.CodecLZ4 {
					t.Errorf("%s-%d: a batch at %d in %v, want MirrorMaker's lz4", c.topic, p, b.BaseOffset, b.Codec())
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		src.Close()
		if batches == 0 {
			t.Errorf("%s: no batch in the broker's files", c.topic)
		}
	}
}
