package index

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/kafkatest"
	"github.com/replay/replay/segment"
)

// TestIndexTruncatedBrokerLog indexes a real Kafka broker's log directory in place (DirSource),
// then makes the broker's log shorter the way a broker itself would find it after losing a tail:
// the broker stopped, partition 0's later segments deleted and the segment before cut at a batch
// boundary (its indexes removed, so the broker rebuilds them), the broker restarted, which
// recovers the shortened log and appends new records at the reused offsets. The index notices,
// drops and re-indexes: Verify is clean and lookups are exact. Then the topic gets a third
// partition: the index, built with two, refuses it.
func TestIndexTruncatedBrokerLog(t *testing.T) {
	c := kafkatest.New(t, kafkatest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const topic = "trunc_log"
	// Roll by record time: a batch whose timestamp is more than a minute past its segment's first
	// one starts a new segment, so the partition has many.
	segMs := "60000"
	if err := c.CreateTopic(ctx, topic, 2, 1, map[string]*string{"segment.ms": &segMs}); err != nil {
		t.Fatal(err)
	}
	cl, err := c.Client(kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// produce sends rounds of 40 records (Kafka's murmur2 partitioner: one batch per partition per
	// round), timestamps one second apart from start.
	produce := func(rounds int, start time.Time, webhooks []string, tag string) {
		t.Helper()
		for r := 0; r < rounds; r++ {
			var recs []*kgo.Record
			for i := 0; i < 40; i++ {
				n := r*40 + i
				recs = append(recs, &kgo.Record{Key: []byte(webhooks[n%len(webhooks)]),
					Value:     []byte(fmt.Sprintf(`{"for_user_id":"%d","tweet_create_events":[{"id_str":"%s-%d"}]}`, n, tag, n)),
					Timestamp: start.Add(time.Duration(n) * time.Second)})
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
		}
	}
	endOffsets := func() map[int32]int64 {
		t.Helper()
		eo, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		out := map[int32]int64{}
		eo.Each(func(o kadm.ListedOffset) {
			if o.Err != nil {
				t.Fatalf("end offset of %s-%d: %v", topic, o.Partition, o.Err)
			}
			out[o.Partition] = o.Offset
		})
		return out
	}
	webhooks := make([]string, 12)
	for i := range webhooks {
		webhooks[i] = strconv.FormatUint(1095098195724595200+uint64(i)*7919, 10)
	}
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Minute)
	produce(40, start, webhooks, "a")
	acked := endOffsets()

	src, err := engine.OpenDir(engine.DirOptions{Dir: c.Nodes[0].LogDir, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := t.TempDir()
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"), CommitRecords: 100, Retention: -1})
	build(t, ix, src)
	for p, end := range acked {
		if cp, _, err := ix.Checkpoint(p); err != nil || cp != end {
			t.Fatalf("partition %d: checkpoint %d, %v; the broker's end offset is %d", p, cp, err, end)
		}
	}
	verifyClean(t, ix, src)
	lookupsExact(t, ix, src, start, 30*time.Minute)

	// Stop the broker and shorten partition 0: delete its later segments (newest first, so every
	// state in between is a shorter log), cut the segment before in the middle at a batch
	// boundary, remove its indexes and the producer snapshots past the cut.
	if err := c.Stop(0, time.Minute); err != nil {
		t.Fatal(err)
	}
	pdir := filepath.Join(c.Nodes[0].LogDir, topic+"-0")
	bases := segmentFiles(t, pdir)
	if len(bases) < 4 {
		t.Fatalf("%s-0 has %d segments; the test wants at least 4", topic, len(bases))
	}
	vi := len(bases) / 2
	for i := len(bases) - 1; i > vi; i-- {
		removeSegment(t, pdir, bases[i])
	}
	victim := filepath.Join(pdir, segment.FileName(bases[vi], segment.LogExt))
	pos, offs := batchBounds(t, victim)
	if len(pos) < 2 {
		t.Fatalf("segment %s has %d batches; the test wants at least 2", victim, len(pos))
	}
	k := len(pos) / 2
	end := offs[k]
	var oldCRC uint32
	if err := src.ReadBatches(ctx, 0, []int64{end}, func(b *segment.Batch) error { oldCRC = b.CRC; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(victim, pos[k]); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{segment.IndexExt, segment.TimeIndexExt} {
		if err := os.Remove(filepath.Join(pdir, segment.FileName(bases[vi], ext))); err != nil {
			t.Fatal(err)
		}
	}
	names, err := os.ReadDir(pdir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if s, ok := strings.CutSuffix(n.Name(), ".snapshot"); ok {
			if off, err := strconv.ParseInt(s, 10, 64); err == nil && off > end {
				os.Remove(filepath.Join(pdir, n.Name()))
			}
		}
	}
	if b, err := src.Bounds(ctx, 0); err != nil || b.End != end {
		t.Fatalf("DirSource on the cut log: %+v, %v; want end %d", b, err, end)
	}
	// Lookups do not trust the checkpoint past the end; Verify names the truncation.
	inP0 := 0
	for _, w := range webhooks {
		if engine.PartitionFor([]byte(w), 2) != 0 {
			continue
		}
		inP0++
		res, err := ix.Lookup(ctx, src, []byte(w), start.UnixMilli(), start.Add(time.Hour).UnixMilli())
		if err != nil {
			t.Fatal(err)
		}
		if res.Partition != 0 || res.Indexed != end || res.End != end || len(res.Offsets) == 0 {
			t.Fatalf("lookup of %s on the cut log: %+v; want partition 0 indexed to its end %d", w, res, end)
		}
		for _, o := range res.Offsets {
			if o >= end {
				t.Fatalf("lookup on the cut log returned offset %d, past its end %d: %+v", o, end, res)
			}
		}
	}
	if inP0 == 0 {
		t.Fatal("no webhook of partition 0")
	}
	truncated := false
	if _, err := ix.Verify(ctx, src, nil, func(m Mismatch) { truncated = truncated || m.Kind == "truncated" && m.End == end }); err != nil {
		t.Fatal(err)
	}
	if !truncated {
		t.Fatal("Verify of the cut log did not report the truncation")
	}

	if err := c.Restart(ctx, 0); err != nil {
		t.Fatalf("restart: %v\n%s", err, c.Nodes[0].Log())
	}
	// The broker recovered the shortened log: its end offset is the cut.
	if eo := endOffsets(); eo[0] != end || eo[1] != acked[1] {
		t.Fatalf("the restarted broker's end offsets %v; want %d and %d", eo, end, acked[1])
	}
	build(t, ix, src)
	if cp, _, err := ix.Checkpoint(0); err != nil || cp != end {
		t.Fatalf("checkpoint after the build on the cut log: %d, %v; want %d", cp, err, end)
	}
	verifyClean(t, ix, src)

	// New records at the reused offsets, other webhooks among them, timestamps inside the cut
	// segment's minute (so the broker appends to the cut segment; the roll after such a cut is
	// engine's TestDirSourceSealedSegmentBecomesLastAndRollsAgain) and in the truncated buckets.
	var firstTS int64
	if err := src.Scan(ctx, 0, bases[vi], func(b *segment.Batch) error { firstTS = b.MaxTimestamp; return engine.ErrStop }); err != nil {
		t.Fatal(err)
	}
	newHooks := append([]string{"4242424242", "app-truncated"}, webhooks[:3]...)
	produce(2, time.UnixMilli(firstTS-30_000), newHooks, "b")
	after := endOffsets()
	if last := segmentFiles(t, pdir); last[len(last)-1] != bases[vi] {
		t.Fatalf("the broker rolled %s-0 after the cut (segments %v): the test wants it to append to %d", topic, last, bases[vi])
	}
	if after[0] <= end {
		t.Fatalf("end offset of partition 0 after producing: %d, want past %d", after[0], end)
	}
	var newCRC uint32
	if err := src.ReadBatches(ctx, 0, []int64{end}, func(b *segment.Batch) error { newCRC = b.CRC; return nil }); err != nil {
		t.Fatal(err)
	}
	if newCRC == oldCRC {
		t.Fatalf("the batch at offset %d has the CRC it had before the cut (%08x): not different data", end, oldCRC)
	}
	build(t, ix, src)
	for p, e := range after {
		if cp, _, err := ix.Checkpoint(p); err != nil || cp != e {
			t.Fatalf("partition %d: checkpoint %d, %v; the broker's end offset is %d", p, cp, err, e)
		}
	}
	verifyClean(t, ix, src)
	lookupsExact(t, ix, src, start, 30*time.Minute)
	sameAsRebuild(t, ix, src, filepath.Join(dir, "rebuild"))
	fresh, err := engine.OpenDir(engine.DirOptions{Dir: c.Nodes[0].LogDir, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	verifyClean(t, ix, fresh)
	fresh.Close()

	// The topic grows to three partitions: the index built with two refuses it, through a
	// KafkaSource and through the broker's log dir.
	if _, err := adm.CreatePartitions(ctx, 1, topic); err != nil {
		t.Fatal(err)
	}
	ks, err := engine.NewKafkaSource(ctx, engine.KafkaOptions{Brokers: c.Bootstrap(), Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	for deadline := time.Now().Add(time.Minute); ; {
		n, err := ks.Partitions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the topic has %d partitions a minute after adding one", n)
		}
		time.Sleep(50 * time.Millisecond) // polling the broker's metadata for the new partition
	}
	checkRefused(t, ix, ks, 2, 3)
	var src3 *engine.DirSource
	for deadline := time.Now().Add(time.Minute); ; {
		if src3, err = engine.OpenDir(engine.DirOptions{Dir: c.Nodes[0].LogDir, Topic: topic}); err == nil {
			if n, _ := src3.Partitions(ctx); n == 3 {
				break
			}
			src3.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no third partition directory a minute after adding it: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling the broker's log dir
	}
	defer src3.Close()
	checkRefused(t, ix, src3, 2, 3)
	verifyClean(t, ix, src)
}
