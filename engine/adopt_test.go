package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/kafkatest"
	"github.com/replay/replay/segment"
)

// logRecord is a record with everything a consumer sees of it.
type logRecord struct {
	Partition int32
	Offset    int64
	Timestamp int64
	Key       string
	Value     string
	Null      bool
	Headers   string
}

// String prints the fields by name. (Printing struct{ logRecord } instead recursed: the embedded
// String is promoted, so a failing comparison overflowed the stack instead of saying what differed.)
func (r logRecord) String() string {
	type fields logRecord // no String method
	return fmt.Sprintf("%+v", fields(r))
}

// sourceRecords reads every data record of src's partitions as a consumer would see them.
func sourceRecords(t *testing.T, src engine.Source) map[int32][]logRecord {
	t.Helper()
	ctx := context.Background()
	n, err := src.Partitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32][]logRecord{}
	var rr segment.RecordReader
	for p := int32(0); p < n; p++ {
		err := src.Scan(ctx, p, 0, func(b *segment.Batch) error {
			if b.IsControl() {
				return nil
			}
			if err := rr.Reset(b); err != nil {
				return err
			}
			for rr.Next() {
				r := rr.Record()
				var hs []string
				for _, h := range r.Headers {
					hs = append(hs, fmt.Sprintf("%s=%q", h.Key, h.Value))
				}
				out[p] = append(out[p], logRecord{Partition: p, Offset: r.Offset, Timestamp: r.Timestamp,
					Key: string(r.Key), Value: string(r.Value), Null: r.Value == nil, Headers: strings.Join(hs, ",")})
			}
			return rr.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// consumeAll reads partitions of topic from offset 0 with franz-go until it has want[p] records of
// each partition p.
func consumeAll(t *testing.T, brokers []string, topic string, want map[int32]int) map[int32][]logRecord {
	t.Helper()
	offsets := map[int32]kgo.Offset{}
	for p := range want {
		offsets[p] = kgo.NewOffset().At(0)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := map[int32][]logRecord{}
	done := func() bool {
		for p, n := range want {
			if len(got[p]) < n {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consume %s: %v; have %d records of partitions %v, want %v", topic, err, len(got), keys(got), want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("consume %s-%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			var hs []string
			for _, h := range r.Headers {
				hs = append(hs, fmt.Sprintf("%s=%q", h.Key, h.Value))
			}
			got[r.Partition] = append(got[r.Partition], logRecord{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(),
				Key: string(r.Key), Value: string(r.Value), Null: r.Value == nil, Headers: strings.Join(hs, ",")})
		})
	}
	return got
}

func keys[V any](m map[int32]V) []int32 {
	var ks []int32
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func sameLogRecords(t *testing.T, what string, got, want map[int32][]logRecord) {
	t.Helper()
	for p, w := range want {
		g := got[p]
		if len(g) != len(w) {
			t.Errorf("%s: partition %d: %d records, want %d", what, p, len(g), len(w))
		}
		for i := 0; i < min(len(g), len(w)); i++ {
			if g[i] != w[i] {
				t.Fatalf("%s: partition %d record %d:\n got  %v\n want %v", what, p, i, g[i], w[i])
			}
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBrokerAdoptsEmbeddedLog hands a real broker the partition files the embedded log wrote: it
// creates the topic, is stopped, gets our segments and indexes in place of its empty ones, is
// started (recovering and validating them as its own), and a franz-go consumer then reads every
// record back at the same offset with the same key, value, headers and timestamp.
func TestBrokerAdoptsEmbeddedLog(t *testing.T) {
	src := t.TempDir()
	const parts = 2
	writeKafkaLog(t, src, parts)
	l, err := engine.Open(engine.Options{Dir: src, Retention: 100 * 365 * 24 * time.Hour}) // keep the 2025 records
	if err != nil {
		t.Fatal(err)
	}
	want := sourceRecords(t, l)
	ends := map[int32]int64{}
	for p := int32(0); p < parts; p++ {
		b, _ := l.Bounds(context.Background(), p)
		ends[p] = b.End
	}
	l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := kafkatest.New(t, kafkatest.Options{Nodes: 1}) // stopped and restarted: not the shared one
	if err := c.CreateTopic(ctx, "delivery_log", parts, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(0, time.Minute); err != nil {
		t.Fatal(err)
	}
	for p := 0; p < parts; p++ {
		name := fmt.Sprintf("delivery_log-%d", p)
		dst := filepath.Join(c.Nodes[0].LogDir, name)
		ents, err := os.ReadDir(dst)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents { // the broker's empty segment; partition.metadata and the epoch checkpoint stay
			if _, _, ok := segment.ParseFileName(e.Name()); ok {
				os.Remove(filepath.Join(dst, e.Name()))
			}
		}
		ents, err = os.ReadDir(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if _, _, ok := segment.ParseFileName(e.Name()); ok {
				copyFile(t, filepath.Join(src, name, e.Name()), filepath.Join(dst, e.Name()))
			}
		}
	}
	if err := c.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}

	cl, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, "delivery_log")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[int32]int{}
	for p := int32(0); p < parts; p++ {
		o, ok := listed.Lookup("delivery_log", p)
		if !ok || o.Err != nil || o.Offset != ends[p] {
			t.Fatalf("the broker's end offset of partition %d: %+v (listed %v), want %d", p, o, ok, ends[p])
		}
		counts[p] = len(want[p])
	}
	got := consumeAll(t, c.Bootstrap(), "delivery_log", counts)
	sameLogRecords(t, "franz-go from the broker vs the embedded log", got, want)
	t.Logf("the broker served %d+%d records of our files", len(got[0]), len(got[1]))
	if log := c.Nodes[0].Log(); strings.Contains(log, "Corrupt") || strings.Contains(log, "invalid") || bytes.Contains([]byte(log), []byte("Truncat")) {
		t.Errorf("the broker complained about our files:\n%s", log)
	}
}
