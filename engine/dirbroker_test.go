package engine_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/kafkatest"
	"github.com/replay/replay/segment"
)

// dirVsBroker opens a DirSource on the broker's log dir for topic, reads every record, and checks
// that a franz-go consumer of the broker reads the same records (offsets, keys, values, headers,
// timestamps), partition by partition, for at least min[p] records. The broker may still be
// appending: DirSource's records are a prefix of what the consumer reads.
func dirVsBroker(t *testing.T, c *kafkatest.Cluster, topic string, atLeast map[int32]int) map[int32][]logRecord {
	t.Helper()
	src, err := engine.OpenDir(engine.DirOptions{Dir: c.Nodes[0].LogDir, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := sourceRecords(t, src)
	want := map[int32]int{}
	for p, n := range atLeast {
		if len(dir[p]) < n {
			t.Fatalf("DirSource read %d records of %s-%d; the broker acknowledged %d", len(dir[p]), topic, p, n)
		}
		want[p] = len(dir[p])
	}
	got := consumeAll(t, c.Bootstrap(), topic, want)
	for p := range got {
		got[p] = got[p][:want[p]]
	}
	sameLogRecords(t, "DirSource vs franz-go from the broker", dir, got)
	return dir
}

// partitionFiles lists the files of a partition directory of the broker.
func partitionFiles(t *testing.T, c *kafkatest.Cluster, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(c.Nodes[0].LogDir, dir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

// TestDirSourceOnLiveBroker reads a real broker's log directory in place while the broker keeps
// appending, for records produced by franz-go with every codec, by Kafka's own Java producer
// (ConsoleProducer: keys, headers, snappy, idempotence, linger batching) and in committed and
// aborted transactions. The log dir also holds the broker's other topics, __cluster_metadata-0,
// meta.properties, checkpoints, .snapshot files and preallocated indexes of active segments.
func TestDirSourceOnLiveBroker(t *testing.T) {
	c := kafkatest.Shared(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("franz-go", func(t *testing.T) {
		const topic, parts = "live_franz", 3
		// Roll segments every 200ms of appends, so the broker rolls (and writes producer .snapshot
		// files) while DirSource reads.
		roll := "200"
		if err := c.CreateTopic(ctx, topic, parts, 1, map[string]*string{"segment.ms": &roll}); err != nil {
			t.Fatal(err)
		}
		codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
		var clients []*kgo.Client
		for _, codec := range codecs {
			cl, err := c.Client(kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			clients = append(clients, cl)
		}
		acked := map[int32]int{}
		var mu sync.Mutex
		produce := func(n, from int) {
			var wg sync.WaitGroup
			for i := from; i < from+n; i++ {
				r := &kgo.Record{Partition: int32(i % parts), Key: []byte(fmt.Sprint(1095098195724595200 + i%13)),
					Value:     []byte(fmt.Sprintf(`{"for_user_id":"%d","tweet_create_events":[{"id":"%d","text":"%s"}]}`, i*31, i, noise(i))),
					Timestamp: time.UnixMilli(1_763_800_000_000 + int64(i*1000-i%7*3000)),
					Headers:   []kgo.RecordHeader{{Key: "event-id", Value: []byte(fmt.Sprint(i))}}}
				if i%10 == 0 {
					r.Value = nil
				}
				wg.Add(1)
				clients[i%len(clients)].Produce(ctx, r, func(r *kgo.Record, err error) {
					defer wg.Done()
					if err != nil {
						t.Errorf("produce: %v", err)
						return
					}
					mu.Lock()
					acked[r.Partition]++
					mu.Unlock()
				})
			}
			wg.Wait()
		}
		produce(600, 0)
		// Keep the broker appending while DirSource reads.
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 600; ; i += 20 {
				select {
				case <-stop:
					return
				default:
				}
				produce(20, i)
			}
		}()
		mu.Lock()
		atLeast := map[int32]int{}
		for p, n := range acked {
			atLeast[p] = n
		}
		mu.Unlock()
		dirVsBroker(t, c, topic, atLeast)
		close(stop)
		<-done
		atLeast = map[int32]int{}
		for p, n := range acked {
			atLeast[p] = n
		}
		dirVsBroker(t, c, topic, atLeast)
		// Every partition holds batches of every codec, in several segments, beside the broker's
		// producer-state snapshots.
		src, err := engine.OpenDir(engine.DirOptions{Dir: c.Nodes[0].LogDir, Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		for p := int32(0); p < parts; p++ {
			seen := map[segment.Codec]bool{}
			if err := src.Scan(ctx, p, 0, func(b *segment.Batch) error { seen[b.Codec()] = true; return nil }); err != nil {
				t.Fatal(err)
			}
			if len(seen) != len(codecs) {
				t.Errorf("partition %d holds batches of codecs %v, want all %d", p, seen, len(codecs))
			}
		}
		files := partitionFiles(t, c, topic+"-0")
		if strings.Count(files, ".log") < 2 || !strings.Contains(files, ".snapshot") {
			t.Errorf("the broker did not roll %s-0 (want segments and .snapshot files): %s", topic, files)
		}
		t.Logf("%s-0: %d segments, %d producer snapshots", topic, strings.Count(files, ".log"), strings.Count(files, ".snapshot"))
	})

	t.Run("java-producer", func(t *testing.T) {
		const topic = "live_java"
		if err := c.CreateTopic(ctx, topic, 2, 1, nil); err != nil {
			t.Fatal(err)
		}
		// parse.headers: "h1:v1,h2:v2<TAB>key<TAB>value" per line.
		var in strings.Builder
		const n = 400
		for i := 0; i < n; i++ {
			fmt.Fprintf(&in, "event-id:%d,origin:java\t%d\t{\"for_user_id\":\"%d\",\"favorite_events\":[{\"id\":\"%d\",\"text\":\"%s\"}]}\n",
				i, 1095098195724595200+i%17, i*7, i, noise(i))
		}
		_, stderr, err := kafkatest.RunTool(ctx, []byte(in.String()), kafkatest.MainConsoleProducer,
			"--bootstrap-server", strings.Join(c.Bootstrap(), ","), "--topic", topic,
			"--reader-property", "parse.key=true", "--reader-property", "key.separator=\t", "--reader-property", "parse.headers=true",
			"--compression-codec", "snappy", "--timeout", "20", "--batch-size", "8192", "--request-required-acks", "all",
			"--command-property", "enable.idempotence=true")
		if err != nil {
			t.Fatalf("ConsoleProducer: %v\n%s", err, stderr)
		}
		src, err := engine.OpenDir(engine.DirOptions{Dir: c.Nodes[0].LogDir, Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		recs := sourceRecords(t, src)
		src.Close()
		total := len(recs[0]) + len(recs[1])
		if total != n {
			t.Fatalf("DirSource read %d records of %s; ConsoleProducer sent %d", total, topic, n)
		}
		// Kafka's Java producer: xerial-framed snappy, a producer id and sequences (idempotence),
		// several records per batch (linger.ms).
		src, err = engine.OpenDir(engine.DirOptions{Dir: c.Nodes[0].LogDir, Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		batches, multi := 0, 0
		for p := int32(0); p < 2; p++ {
			err := src.Scan(ctx, p, 0, func(b *segment.Batch) error {
				batches++
				if b.NumRecords > 1 {
					multi++
				}
				const xerial = "\x82SNAPPY\x00"
				if b.Codec() != segment.CodecSnappy || b.ProducerID < 0 || b.BaseSequence < 0 || len(b.Raw) < 61+8 || string(b.Raw[61:69]) != xerial {
					t.Errorf("%s-%d batch at %d: codec %v, producer id %d, base sequence %d, xerial framing %v", topic, p, b.BaseOffset,
						b.Codec(), b.ProducerID, b.BaseSequence, len(b.Raw) >= 69 && string(b.Raw[61:69]) == xerial)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		src.Close()
		if multi == 0 {
			t.Errorf("none of the Java producer's %d batches holds more than one record", batches)
		}
		t.Logf("the Java producer wrote %d records in %d batches", n, batches)
		got := dirVsBroker(t, c, topic, map[int32]int{0: len(recs[0]), 1: len(recs[1])})
		if !strings.Contains(got[0][0].Headers, `origin="java"`) {
			t.Fatalf("headers of the Java producer's record: %s", got[0][0].Headers)
		}
	})

	t.Run("transactions", func(t *testing.T) {
		const topic = "live_txn"
		if err := c.CreateTopic(ctx, topic, 1, 1, nil); err != nil {
			t.Fatal(err)
		}
		cl, err := c.Client(kgo.TransactionalID("replay-test"), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.SnappyCompression()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for i, commit := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort, kgo.TryCommit} {
			if err := cl.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			for j := 0; j < 30; j++ {
				r := &kgo.Record{Key: []byte(fmt.Sprint(1095098195724595200 + j%3)), Value: []byte(fmt.Sprintf(`{"txn":%d,"n":%d}`, i, j)),
					Headers: []kgo.RecordHeader{{Key: "event-id", Value: []byte(fmt.Sprint(i, "-", j))}}}
				if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			if err := cl.EndTransaction(ctx, commit); err != nil {
				t.Fatal(err)
			}
		}
		src, err := engine.OpenDir(engine.DirOptions{Dir: c.Nodes[0].LogDir, Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		// Three transactions of 30 records, each ended by a control batch, which the coordinator
		// writes after EndTransaction returns: wait for the last.
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		end, err := src.WaitForEnd(wctx, 0, 92)
		wcancel()
		if err != nil || end != 93 {
			t.Fatalf("WaitForEnd of %s-0 past 92 = %d, %v; want end 93 (90 records, 3 markers)", topic, end, err)
		}
		controls := 0
		if err := src.Scan(ctx, 0, 0, func(b *segment.Batch) error {
			if b.IsControl() {
				controls++
				if !b.IsTransactional() || b.ProducerID < 0 {
					t.Errorf("control batch at %d: transactional %v, producer id %d", b.BaseOffset, b.IsTransactional(), b.ProducerID)
				}
			}
			return nil
		}); err != nil || controls != 3 {
			t.Fatalf("Scan of %s-0: %d control batches, %v; want 3", topic, controls, err)
		}
		// A read_uncommitted consumer sees the aborted records too, and neither sees the markers.
		got := dirVsBroker(t, c, topic, map[int32]int{0: 90})
		if len(got[0]) != 90 || got[0][30].Offset != 31 || got[0][60].Offset != 62 {
			t.Fatalf("records of %s: %d, at offsets %d and %d; want 90, the markers at 30 and 61 skipped", topic, len(got[0]), got[0][30].Offset, got[0][60].Offset)
		}
	})
}
