package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/kafkatest"
	"github.com/replay/replay/loadgen/manifest"
	"github.com/replay/replay/segment"
)

func TestMain(m *testing.M) { kafkatest.Main(m) }

func runLoadgen(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("loadgen %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// `loadgen produce --kafka-brokers` into a real Kafka 4.4 broker: a consumer reads exactly the
// records of the manifest, each in its webhook's partition (murmur2), and the broker's segment
// files (read in place with engine.DirSource) hold batches in the codec asked for, none with more
// record bytes than --batch-bytes and the biggest near it (the linger let them fill).
func TestProduceIntoRealKafka(t *testing.T) {
	c := kafkatest.Shared(t, 1)
	const partitions = 3
	cases := []struct {
		name     string
		flags    []string
		codec    segment.Codec
		maxBytes int
		events   int
	}{
		{"defaults", nil, segment.CodecSnappy, 16 << 10, 3000}, // the Java producer's 16 KiB and 5 ms, snappy
		// Small batches: fewer events, as each waits its linger in turn.
		{"small-lz4", []string{"--batch-bytes", "4096", "--linger", "10ms", "--codec", "lz4"}, segment.CodecLZ4, 4096, 1000},
		{"none", []string{"--batch-bytes", "65536", "--linger", "20ms", "--codec", "none"}, segment.CodecNone, 64 << 10, 3000},
	}
	meanBytes := map[string]float64{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			topic := "loadgen-" + tc.name
			if err := c.CreateTopic(ctx, topic, partitions, 1, nil); err != nil {
				t.Fatal(err)
			}
			mpath := filepath.Join(t.TempDir(), "run.manifest")
			events := tc.events
			out := runLoadgen(t, append([]string{"produce", "--kafka-brokers", strings.Join(c.Bootstrap(), ","), "--topic", topic,
				"--events", strconv.Itoa(events), "--webhooks", "30", "--span", "2h", "--seed", "7", "--dup-rate", "0.02",
				"--manifest", mpath, "--quiet"}, tc.flags...)...)
			if !strings.Contains(out, fmt.Sprintf("produced %d records", events)) {
				t.Fatalf("summary:\n%s", out)
			}

			// The ground truth: (webhook, event id, timestamp) of every record produced.
			want := map[string]int{}
			f, err := os.Open(mpath)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			mr, err := manifest.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			hooks := mr.Header().Webhooks
			for {
				e, err := mr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				want[fmt.Sprintf("%s|%d|%d", hooks[e.Webhook], e.ID, e.Timestamp)]++
			}

			// What a consumer reads from the broker.
			cl, err := c.Client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			got := map[string]int{}
			n := 0
			deadline, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			for n < events {
				fs := cl.PollFetches(deadline)
				if err := deadline.Err(); err != nil {
					t.Fatalf("consumed %d of %d records of %s: %v", n, events, topic, err)
				}
				if errs := fs.Errors(); len(errs) > 0 {
					t.Fatalf("consuming %s: %v", topic, errs)
				}
				fs.EachRecord(func(r *kgo.Record) {
					n++
					if p := engine.PartitionFor(r.Key, partitions); p != r.Partition {
						t.Errorf("record of webhook %s at %s-%d/%d: Kafka's partitioner says partition %d", r.Key, topic, r.Partition, r.Offset, p)
					}
					var id string
					for _, h := range r.Headers {
						if h.Key == "event-id" {
							id = string(h.Value)
						}
					}
					got[fmt.Sprintf("%s|%s|%d", r.Key, id, r.Timestamp.UnixMilli())]++
				})
			}
			if n != events || len(got) != len(want) {
				t.Fatalf("consumer read %d records (%d distinct), the manifest has %d (%d distinct)", n, len(got), events, len(want))
			}
			for k, w := range want {
				if got[k] != w {
					t.Fatalf("record %s: consumed %d times, produced %d", k, got[k], w)
				}
			}

			// The batches as the broker stored them.
			src, err := engine.OpenDir(engine.DirOptions{Dir: c.Nodes[0].LogDir, Topic: topic})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			var batches, records, recBytes, biggest int
			var rr segment.RecordReader
			for p := int32(0); p < partitions; p++ {
				err := src.Scan(ctx, p, 0, func(b *segment.Batch) error {
					if b.Codec() != tc.codec {
						return fmt.Errorf("batch at %s-%d/%d: codec %v, want %v", topic, p, b.BaseOffset, b.Codec(), tc.codec)
					}
					if err := rr.Reset(b); err != nil {
						return err
					}
					size := 0
					for rr.Next() {
						r := rr.Record()
						records++
						size += len(r.Key) + len(r.Value)
						for _, h := range r.Headers {
							size += len(h.Key) + len(h.Value)
						}
					}
					if size > tc.maxBytes {
						return fmt.Errorf("batch at %s-%d/%d: %d record bytes, more than --batch-bytes %d", topic, p, b.BaseOffset, size, tc.maxBytes)
					}
					batches++
					recBytes += size
					biggest = max(biggest, size)
					return rr.Err()
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if records != events {
				t.Fatalf("the broker's segments hold %d records, want %d", records, events)
			}
			// Produced as fast as possible, the batches fill up to the bound: the biggest holds at
			// least half of it, the mean a third, and batches hold more than one record each.
			meanBytes[tc.name] = float64(recBytes) / float64(batches)
			if biggest < tc.maxBytes/2 || meanBytes[tc.name] < float64(tc.maxBytes)/3 || records <= batches {
				t.Fatalf("%d batches of %d records: %.0f record bytes each on average, the biggest %d, of %d allowed",
					batches, records, meanBytes[tc.name], biggest, tc.maxBytes)
			}
			t.Logf("%s: %d batches, %.1f records and %.0f record bytes each on average, biggest %d (bound %d), codec %v",
				topic, batches, float64(records)/float64(batches), meanBytes[tc.name], biggest, tc.maxBytes, tc.codec)
		})
	}
	if !(meanBytes["small-lz4"] < meanBytes["defaults"] && meanBytes["defaults"] < meanBytes["none"]) {
		t.Fatalf("mean batch record bytes %v: want small-lz4 < defaults < none, as --batch-bytes says", meanBytes)
	}
}

// `loadgen produce --topics` into a real broker: each topic (a datacenter's delivery_log) holds
// exactly the records the manifest says that datacenter got, the cross-datacenter copies in both.
func TestProduceTwoDCsIntoRealKafka(t *testing.T) {
	c := kafkatest.Shared(t, 1)
	ctx := t.Context()
	topics := []string{"loadgen-dc1", "loadgen-dc2"}
	for _, tp := range topics {
		if err := c.CreateTopic(ctx, tp, 3, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	mpath := filepath.Join(t.TempDir(), "run.manifest")
	runLoadgen(t, "produce", "--kafka-brokers", strings.Join(c.Bootstrap(), ","), "--topics", strings.Join(topics, ","),
		"--cross-dc-rate", "0.3", "--events", "2000", "--webhooks", "30", "--span", "2h", "--seed", "8", "--manifest", mpath, "--quiet")
	f, err := os.Open(mpath)
	if err != nil {
		t.Fatal(err)
	}
	h, entries, err := manifest.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.DCs) != 2 {
		t.Fatalf("manifest datacenters %v", h.DCs)
	}
	want := [2]map[string]int{{}, {}}
	for _, e := range entries {
		want[e.DC][fmt.Sprintf("%s|%d|%d", h.Webhooks[e.Webhook], e.ID, e.Timestamp)]++
	}
	if len(want[0]) == 0 || len(want[1]) == 0 {
		t.Fatalf("records per datacenter: %d, %d", len(want[0]), len(want[1]))
	}
	for dc, tp := range topics {
		cl, err := c.Client(kgo.ConsumeTopics(tp), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, n := range want[dc] {
			total += n
		}
		got := map[string]int{}
		n := 0
		deadline, cancel := context.WithTimeout(ctx, 60*time.Second)
		for n < total {
			fs := cl.PollFetches(deadline)
			if err := deadline.Err(); err != nil {
				t.Fatalf("consumed %d of %d records of %s: %v", n, total, tp, err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				n++
				got[fmt.Sprintf("%s|%s|%d", r.Key, r.Headers[0].Value, r.Timestamp.UnixMilli())]++
			})
		}
		cancel()
		cl.Close()
		if fmt.Sprint(got) != fmt.Sprint(want[dc]) {
			t.Errorf("%s: %d records differ from the manifest's %d of datacenter %d", tp, n, total, dc+1)
		}
	}
}
