package produce

import (
	"bytes"
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/loadgen/manifest"
	"github.com/replay/replay/replayd/traffic"
	"github.com/replay/replay/segment"
)

func config(n int) traffic.Config {
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = strconv.Itoa(1_095_098_195_724_595_200 + i)
	}
	return traffic.Config{Events: n, WebhookIDs: ids, Skew: 1, DupRate: 0.05, Jitter: time.Minute,
		Span: 5 * 24 * time.Hour, End: time.Now(), Seed: 9}
}

type seen struct {
	partition int32
	rec       segment.Record
	codec     segment.Codec
}

// readAll reads every record of src, all partitions.
func readAll(t *testing.T, src engine.Source) []seen {
	t.Helper()
	ctx := context.Background()
	n, err := src.Partitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []seen
	for p := int32(0); p < n; p++ {
		err := src.Scan(ctx, p, 0, func(b *segment.Batch) error {
			var rr segment.RecordReader
			if err := rr.Reset(b); err != nil {
				return err
			}
			for rr.Next() {
				r := *rr.Record()
				r.Key, r.Value = bytes.Clone(r.Key), bytes.Clone(r.Value)
				var hs []segment.Header
				for _, h := range r.Headers {
					hs = append(hs, segment.Header{Key: bytes.Clone(h.Key), Value: bytes.Clone(h.Value)})
				}
				r.Headers = hs
				out = append(out, seen{partition: p, rec: r, codec: b.Codec()})
			}
			return rr.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// check compares what the source holds with the manifest, record by record (as a multiset keyed
// by event id and copy), and the partitioning with Kafka's default partitioner.
func check(t *testing.T, src engine.Source, mf []byte, n int) {
	t.Helper()
	h, entries, err := manifest.ReadAll(bytes.NewReader(mf))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n || h.Events != n || len(h.Webhooks) != 20 {
		t.Fatalf("manifest: %d entries, header %+v", len(entries), h)
	}
	type key struct {
		webhook string
		id      uint64
		ts      int64
	}
	want := map[key]int{}
	for _, e := range entries {
		want[key{h.Webhooks[e.Webhook], e.ID, e.Timestamp}]++
		if e.Timestamp < h.StartMS || e.Timestamp >= h.EndMS {
			t.Fatalf("entry %+v outside [%d, %d)", e, h.StartMS, h.EndMS)
		}
	}
	parts, _ := src.Partitions(context.Background())
	recs := readAll(t, src)
	if len(recs) != n {
		t.Fatalf("log holds %d records, produced %d", len(recs), n)
	}
	for _, s := range recs {
		if s.codec != segment.CodecSnappy {
			t.Fatalf("batch codec %v, want snappy", s.codec)
		}
		if want := engine.PartitionFor(s.rec.Key, parts); s.partition != want {
			t.Fatalf("key %s in partition %d, Kafka's partitioner says %d", s.rec.Key, s.partition, want)
		}
		hid, ok := s.rec.HeaderValue("event-id")
		bid, ok2 := traffic.EventIDOf(s.rec.Value)
		if !ok || !ok2 || string(hid) != bid {
			t.Fatalf("event-id header %q, body id %q", hid, bid)
		}
		id, _ := strconv.ParseUint(bid, 10, 64)
		k := key{string(s.rec.Key), id, s.rec.Timestamp}
		if want[k] == 0 {
			t.Fatalf("record %+v is not in the manifest (or is there fewer times)", k)
		}
		want[k]--
	}
}

func TestProduceEmbedded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	out, err := OpenEmbedded(dir, 4, false, DefaultBatching)
	if err != nil {
		t.Fatal(err)
	}
	var mf bytes.Buffer
	var progress []int64
	s, err := Run(context.Background(), Options{Traffic: config(3000), Batch: 256, Manifest: &mf, Progress: func(n int64) { progress = append(progress, n) }}, out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 3000 || s.Unique+s.Duplicates != 3000 || s.Duplicates == 0 || s.ManifestBytes != int64(mf.Len()) {
		t.Fatalf("summary %+v", s)
	}
	if len(progress) < 10 || progress[len(progress)-1] != 3000 {
		t.Fatalf("progress reports %v", progress)
	}
	t.Logf("manifest %d bytes for %d records: %.2f bytes/record", mf.Len(), s.Records, float64(mf.Len())/float64(s.Records))
	l, err := engine.Open(engine.Options{Dir: dir, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check(t, l, mf.Bytes(), 3000)
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestProduceRate(t *testing.T) {
	out, err := OpenEmbedded(filepath.Join(t.TempDir(), "log"), 2, false, DefaultBatching)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, err := Run(context.Background(), Options{Traffic: config(600), Rate: 2000}, out); err != nil {
		t.Fatal(err)
	}
	// 600 records at 2000/s with a burst of 200: at least 0.2s.
	if el := time.Since(began); el < 190*time.Millisecond {
		t.Fatalf("600 records at 2000/s took %v", el)
	}
}

func TestProduceKafka(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, "delivery_log"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := OpenKafka(ctx, c.ListenAddrs(), "delivery_log", DefaultBatching)
	if err != nil {
		t.Fatal(err)
	}
	var mf bytes.Buffer
	if _, err := Run(ctx, Options{Traffic: config(2000), Manifest: &mf}, out); err != nil {
		t.Fatal(err)
	}
	src, err := engine.NewKafkaSource(ctx, engine.KafkaOptions{Brokers: c.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	check(t, src, mf.Bytes(), 2000)
}

func TestProduceBadConfig(t *testing.T) {
	out, err := OpenEmbedded(filepath.Join(t.TempDir(), "log"), 2, false, DefaultBatching)
	if err != nil {
		t.Fatal(err)
	}
	c := config(10)
	c.WebhookIDs = nil
	if _, err := Run(context.Background(), Options{Traffic: c}, out); err == nil {
		t.Fatal("no webhooks accepted")
	}
}
