package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/enginetest"
	"github.com/replay/replay/segment"
)

func kafkaSource(t *testing.T, kc *enginetest.KafkaCluster, o engine.KafkaOptions) *engine.KafkaSource {
	t.Helper()
	o.Brokers = kc.Cluster.ListenAddrs()
	if o.Topic == "" {
		o.Topic = kc.Topic
	}
	if o.RetryBackoff == 0 {
		o.RetryBackoff = 10 * time.Millisecond
	}
	s, err := engine.NewKafkaSource(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// kafkaFactory is the conformance suite's Factory: a kfake cluster of three brokers whose
// partition p holds data[p], each Batch produced as one raw batch so its boundaries are kept.
func kafkaFactory(o engine.KafkaOptions) enginetest.Factory {
	return func(t *testing.T, topic string, data [][]enginetest.Batch) enginetest.Harness {
		kc := enginetest.NewKafkaCluster(t, 3, topic, int32(len(data)))
		for p, batches := range data {
			for _, b := range batches {
				kc.Produce(t, int32(p), b)
			}
		}
		return enginetest.Harness{
			Source: kafkaSource(t, kc, o),
			Append: func(t *testing.T, p int32, b enginetest.Batch) { kc.Produce(t, p, b) },
		}
	}
}

func TestKafkaSourceConformance(t *testing.T) {
	enginetest.Exercise(t, kafkaFactory(engine.KafkaOptions{}))
}

// TestKafkaSourceConformanceSmallFetches runs the suite with fetches of one batch each and
// targeted fetches that bring back many batches, so that both the loop over fetches and the
// reuse of one answer for several offsets are exercised.
func TestKafkaSourceConformanceSmallFetches(t *testing.T) {
	enginetest.Exercise(t, kafkaFactory(engine.KafkaOptions{FetchMaxBytes: 1, TargetedFetchBytes: 1 << 20, PollWait: 100 * time.Millisecond}))
}

// testData is a few partitions of batches whose timestamps go backwards now and then.
func testData(parts, batches int) [][]enginetest.Batch {
	codecs := []segment.Codec{segment.CodecSnappy, segment.CodecNone, segment.CodecZstd, segment.CodecLZ4, segment.CodecGzip}
	data := make([][]enginetest.Batch, parts)
	for p := range data {
		ts := int64(1_763_800_000_000)
		for b := 0; b < batches; b++ {
			batch := enginetest.Batch{Codec: codecs[(p+b)%len(codecs)]}
			for i := 0; i < 1+(b*7+p)%5; i++ {
				ts += int64((b*31+i*17)%900) - 300 // goes backwards about a third of the time
				batch.Records = append(batch.Records, enginetest.Record{
					Key:       []byte(fmt.Sprint(1095098195724595200 + b%7)),
					Value:     []byte(fmt.Sprintf(`{"for_user_id":"%d","favorite_events":[]}`, p*1000+b*10+i)),
					Timestamp: ts,
				})
			}
			data[p] = append(data[p], batch)
		}
	}
	return data
}

type readRecord struct {
	offset, base, ts int64
	value            string
}

func collect(t *testing.T, out *[]readRecord) func(*segment.Batch) error {
	var rr segment.RecordReader
	return func(b *segment.Batch) error {
		if err := rr.Reset(b); err != nil {
			t.Fatalf("batch at %d: %v", b.BaseOffset, err)
		}
		for rr.Next() {
			r := rr.Record()
			*out = append(*out, readRecord{r.Offset, b.BaseOffset, r.Timestamp, string(r.Value)})
		}
		if err := rr.Err(); err != nil {
			t.Fatal(err)
		}
		return nil
	}
}

// oracle is every record of data as the log holds it.
func oracle(data []enginetest.Batch) []readRecord {
	var all []readRecord
	off := int64(0)
	for _, b := range data {
		base := off
		for _, r := range b.Records {
			all = append(all, readRecord{off, base, r.Timestamp, string(r.Value)})
			off++
		}
	}
	return all
}

func sameRecords(t *testing.T, what string, got, want []readRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: record %d = %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

func TestKafkaSourceReads(t *testing.T) {
	data := testData(2, 25)
	kc := enginetest.NewKafkaCluster(t, 3, "delivery_log", 2)
	var raws [][]byte
	for p, batches := range data {
		for _, b := range batches {
			raw := enginetest.Encode(t, b, 0)
			if p == 0 {
				raws = append(raws, raw)
			}
			kc.ProduceRaw(t, int32(p), raw)
		}
	}
	ctx := context.Background()
	for _, o := range []engine.KafkaOptions{{}, {FetchMaxBytes: 1, TargetedFetchBytes: 1 << 20}, {FetchMaxBytes: 300, TargetedFetchBytes: 300}} {
		t.Run(fmt.Sprintf("fetch%d-targeted%d", o.FetchMaxBytes, o.TargetedFetchBytes), func(t *testing.T) {
			s := kafkaSource(t, kc, o)
			if n, err := s.Partitions(ctx); err != nil || n != 2 {
				t.Fatalf("Partitions = %d, %v", n, err)
			}
			for p := range data {
				all := oracle(data[p])
				b, err := s.Bounds(ctx, int32(p))
				if err != nil || b != (engine.Bounds{Start: 0, End: int64(len(all))}) {
					t.Fatalf("Bounds = %+v, %v", b, err)
				}
				// Scan from every offset: starts with the batch holding it.
				for from := int64(-1); from <= int64(len(all))+1; from++ {
					var got []readRecord
					if err := s.Scan(ctx, int32(p), from, collect(t, &got)); err != nil {
						t.Fatalf("Scan from %d: %v", from, err)
					}
					var want []readRecord
					for _, r := range all {
						if r.offset >= from || (from < int64(len(all)) && r.base == all[max(from, 0)].base) {
							want = append(want, r)
						}
					}
					sameRecords(t, fmt.Sprintf("p%d scan from %d", p, from), got, want)
				}
				// ReadBatches: each distinct batch once.
				for _, offsets := range [][]int64{{}, {0}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {3, 40, 41, 42, 60}, {int64(len(all)) - 1, int64(len(all)), 1 << 40}, {int64(len(all))}, {1 << 40}, {-3, -1, 2}} {
					var got []readRecord
					calls := 0
					fn := collect(t, &got)
					err := s.ReadBatches(ctx, int32(p), offsets, func(b *segment.Batch) error { calls++; return fn(b) })
					if err != nil {
						t.Fatal(err)
					}
					bases := map[int64]bool{}
					for _, o := range offsets {
						if o >= 0 && o < int64(len(all)) {
							bases[all[o].base] = true
						}
					}
					var want []readRecord
					for _, r := range all {
						if bases[r.base] {
							want = append(want, r)
						}
					}
					if calls != len(bases) {
						t.Fatalf("ReadBatches(%v): %d calls for %d batches", offsets, calls, len(bases))
					}
					sameRecords(t, fmt.Sprintf("p%d ReadBatches(%v)", p, offsets), got, want)
				}
				// OffsetForTime against brute force, timestamps going backwards included.
				for ts := all[0].ts - 1000; ts < all[len(all)-1].ts+1000; ts += 37 {
					want, wantFound := int64(len(all)), false
					for _, r := range all {
						if r.ts >= ts {
							want, wantFound = r.offset, true
							break
						}
					}
					off, found, err := s.OffsetForTime(ctx, int32(p), ts)
					if err != nil || off != want || found != wantFound {
						t.Fatalf("p%d OffsetForTime(%d) = %d, %t, %v; want %d, %t", p, ts, off, found, err, want, wantFound)
					}
				}
				if off, found, err := s.OffsetForTime(ctx, int32(p), -5); err != nil || off != 0 || !found {
					t.Fatalf("OffsetForTime(-5) = %d, %t, %v", off, found, err)
				}
			}
			// The bytes reach callbacks as produced: everything the CRC covers is unchanged.
			i := 0
			err := s.Scan(ctx, 0, 0, func(b *segment.Batch) error {
				const crcStart = 17 // base offset, length, leader epoch, magic
				if !bytes.Equal(b.Raw[crcStart:], raws[i][crcStart:]) {
					t.Fatalf("batch %d: bytes differ from what was produced", i)
				}
				i++
				return nil
			})
			if err != nil || i != len(raws) {
				t.Fatalf("Scan: %d batches, %v", i, err)
			}
		})
	}
}

func TestKafkaSourceLogStart(t *testing.T) {
	data := testData(1, 10)
	kc := enginetest.NewKafkaCluster(t, 1, "delivery_log", 1)
	for _, b := range data[0] {
		kc.Produce(t, 0, b)
	}
	all := oracle(data[0])
	start := all[len(all)/2].base + 1 // inside a batch: the batch stays, as a broker keeps it
	kc.DeleteRecords(t, 0, start)
	s := kafkaSource(t, kc, engine.KafkaOptions{})
	ctx := context.Background()
	b, err := s.Bounds(ctx, 0)
	if err != nil || b.Start != start || b.End != int64(len(all)) {
		t.Fatalf("Bounds = %+v, %v; want [%d, %d)", b, err, start, len(all))
	}
	var got []readRecord
	if err := s.Scan(ctx, 0, 0, collect(t, &got)); err != nil {
		t.Fatal(err)
	}
	var want []readRecord
	for _, r := range all {
		if r.base >= all[start].base {
			want = append(want, r)
		}
	}
	sameRecords(t, "Scan from below the log start", got, want)
	got = nil
	if err := s.ReadBatches(ctx, 0, []int64{0, 1, start, int64(len(all)) - 1}, collect(t, &got)); err != nil {
		t.Fatal(err)
	}
	want = nil
	for _, r := range all {
		if r.base == all[start].base || r.base == all[len(all)-1].base {
			want = append(want, r)
		}
	}
	sameRecords(t, "ReadBatches from below the log start", got, want)
}

func TestKafkaSourceWaitForEnd(t *testing.T) {
	kc := enginetest.NewKafkaCluster(t, 3, "delivery_log", 2)
	s := kafkaSource(t, kc, engine.KafkaOptions{PollWait: 200 * time.Millisecond})
	ctx := context.Background()
	one := enginetest.Batch{Records: []enginetest.Record{{Key: []byte("1"), Value: []byte("{}"), Timestamp: 1}}}

	// Woken by an append from another goroutine, across several long polls.
	type result struct {
		end int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		end, err := s.WaitForEnd(ctx, 1, 0)
		done <- result{end, err}
	}()
	time.Sleep(500 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("WaitForEnd returned %+v before anything was appended", r)
	default:
	}
	kc.Produce(t, 1, one)
	select {
	case r := <-done:
		if r.err != nil || r.end != 1 {
			t.Fatalf("WaitForEnd = %d, %v; want 1", r.end, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitForEnd not woken by an append")
	}

	// An offset beyond the end waits until the end passes it.
	go func() {
		end, err := s.WaitForEnd(ctx, 1, 2)
		done <- result{end, err}
	}()
	kc.Produce(t, 1, one)
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("WaitForEnd(2) returned %+v at end 2", r)
	default:
	}
	kc.Produce(t, 1, one)
	if r := <-done; r.err != nil || r.end != 3 {
		t.Fatalf("WaitForEnd(2) = %+v; want 3", r)
	}

	// Canceled by its context, and by Close.
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		end, err := s.WaitForEnd(cctx, 0, 0)
		done <- result{end, err}
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if r := <-done; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("WaitForEnd with a canceled context: %+v", r)
	}
	go func() {
		end, err := s.WaitForEnd(ctx, 0, 0)
		done <- result{end, err}
	}()
	time.Sleep(50 * time.Millisecond)
	s.Close()
	if r := <-done; !errors.Is(r.err, engine.ErrClosed) {
		t.Fatalf("WaitForEnd across Close: %+v, want ErrClosed", r)
	}
}

func TestKafkaSourceErrors(t *testing.T) {
	kc := enginetest.NewKafkaCluster(t, 3, "delivery_log", 2)
	for _, b := range testData(1, 5)[0] {
		kc.Produce(t, 0, b)
	}
	ctx := context.Background()

	t.Run("MissingTopic", func(t *testing.T) {
		addrs := kc.Cluster.ListenAddrs()
		_, err := engine.NewKafkaSource(ctx, engine.KafkaOptions{Brokers: addrs, Topic: "no_such_topic"})
		if err == nil || !strings.Contains(err.Error(), `"no_such_topic" does not exist`) || !strings.Contains(err.Error(), addrs[0]) {
			t.Fatalf("missing topic: %v", err)
		}
		if !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("missing topic error does not wrap UNKNOWN_TOPIC_OR_PARTITION: %v", err)
		}
	})

	t.Run("Options", func(t *testing.T) {
		o := engine.KafkaOptions{Topic: "bad topic!", FetchMaxBytes: -1, RequestTimeout: -time.Second}
		o.EnsureDefaults()
		err := o.Validate()
		for _, want := range []string{"no brokers", "invalid topic", "fetch max bytes", "request timeout"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Validate: %v; want it to mention %q", err, want)
			}
		}
		if _, err := engine.NewKafkaSource(ctx, engine.KafkaOptions{}); err == nil {
			t.Fatal("NewKafkaSource without brokers succeeded")
		}
		o = engine.KafkaOptions{Brokers: []string{"localhost:9092"}}
		o.EnsureDefaults()
		if err := o.Validate(); err != nil || o.Topic != "delivery_log" || o.ClientID != "replayd" || o.FetchMaxBytes != 4<<20 {
			t.Fatalf("defaults: %+v, %v", o, err)
		}
	})

	s := kafkaSource(t, kc, engine.KafkaOptions{Retries: 2})
	t.Run("UnknownPartition", func(t *testing.T) {
		nop := func(*segment.Batch) error { return nil }
		for _, p := range []int32{-1, 2, 100} {
			_, err1 := s.Bounds(ctx, p)
			err2 := s.Scan(ctx, p, 0, nop)
			err3 := s.ReadBatches(ctx, p, []int64{0}, nop)
			_, _, err4 := s.OffsetForTime(ctx, p, 0)
			_, err5 := s.WaitForEnd(ctx, p, 0)
			for i, err := range []error{err1, err2, err3, err4, err5} {
				if !errors.Is(err, engine.ErrUnknownPartition) || engine.IsRetryable(err) {
					t.Fatalf("partition %d, call %d: %v (retryable %t), want ErrUnknownPartition", p, i, err, engine.IsRetryable(err))
				}
			}
		}
	})

	t.Run("RetriedBrokerError", func(t *testing.T) {
		h := kc.Cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Err: kerr.NotLeaderForPartition, Count: 2})
		defer h.Remove()
		var got []readRecord
		if err := s.Scan(ctx, 0, 0, collect(t, &got)); err != nil {
			t.Fatalf("Scan through two NOT_LEADER answers: %v", err)
		}
		if h.Hits() != 2 || len(got) != len(oracle(testData(1, 5)[0])) {
			t.Fatalf("fault hit %d times, read %d records", h.Hits(), len(got))
		}
	})

	t.Run("PersistentBrokerError", func(t *testing.T) {
		h := kc.Cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Err: kerr.NotLeaderForPartition, Count: -1})
		defer h.Remove()
		err := s.Scan(ctx, 0, 0, func(*segment.Batch) error { return nil })
		if !errors.Is(err, kerr.NotLeaderForPartition) || !engine.IsRetryable(err) {
			t.Fatalf("Scan against a partition with no leader: %v (retryable %t), want a retryable NOT_LEADER_OR_FOLLOWER", err, engine.IsRetryable(err))
		}
		if h.Hits() != 3 { // the first try and two retries
			t.Fatalf("tried %d times, want 3", h.Hits())
		}
	})

	t.Run("ListOffsetsBrokerError", func(t *testing.T) {
		h := kc.Cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.ListOffsets}, Err: kerr.RequestTimedOut, Count: -1})
		defer h.Remove()
		_, err := s.Bounds(ctx, 0)
		if !errors.Is(err, kerr.RequestTimedOut) || !engine.IsRetryable(err) {
			t.Fatalf("Bounds: %v (retryable %t)", err, engine.IsRetryable(err))
		}
	})

	t.Run("FatalBrokerError", func(t *testing.T) {
		h := kc.Cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Err: kerr.TopicAuthorizationFailed, Count: -1})
		defer h.Remove()
		err := s.ReadBatches(ctx, 0, []int64{0}, func(*segment.Batch) error { return nil })
		if !errors.Is(err, kerr.TopicAuthorizationFailed) || engine.IsRetryable(err) {
			t.Fatalf("ReadBatches unauthorized: %v (retryable %t)", err, engine.IsRetryable(err))
		}
		if h.Hits() != 1 {
			t.Fatalf("a fatal error was tried %d times", h.Hits())
		}
	})

	t.Run("CallbackErrors", func(t *testing.T) {
		boom := errors.New("boom")
		if err := s.ReadBatches(ctx, 0, []int64{0, 4}, func(*segment.Batch) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("ReadBatches callback error: %v", err)
		}
		calls := 0
		if err := s.ReadBatches(ctx, 0, []int64{0, 4}, func(*segment.Batch) error { calls++; return engine.ErrStop }); err != nil || calls != 1 {
			t.Fatalf("ReadBatches ErrStop: %v after %d calls", err, calls)
		}
	})

	t.Run("Close", func(t *testing.T) {
		nop := func(*segment.Batch) error { return nil }
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		_, err1 := s.Bounds(ctx, 0)
		err2 := s.Scan(ctx, 0, 0, nop)
		err3 := s.ReadBatches(ctx, 0, []int64{0}, nop)
		_, _, err4 := s.OffsetForTime(ctx, 0, 0)
		_, err5 := s.WaitForEnd(ctx, 0, 0)
		_, err6 := s.Partitions(ctx)
		for i, err := range []error{err1, err2, err3, err4, err5, err6} {
			if !errors.Is(err, engine.ErrClosed) || engine.IsRetryable(err) {
				t.Fatalf("call %d after Close: %v", i, err)
			}
		}
	})
}

// TestKafkaSourceFetchShapes answers every Fetch itself, as a broker may but kfake does not: the
// answer begins with the batch before the one asked for, and ends with part of a batch, cut at
// the fetch's size. Neither is corruption; the source must read through both.
func TestKafkaSourceFetchShapes(t *testing.T) {
	data := testData(1, 12)
	kc := enginetest.NewKafkaCluster(t, 1, "delivery_log", 1)
	// The log as the cluster holds it: each batch with its offset.
	var log [][]byte
	var bases []int64
	for _, b := range data[0] {
		raw := enginetest.Encode(t, b, 0)
		base := kc.ProduceRaw(t, 0, raw)
		raw = bytes.Clone(raw)
		segment.SetBaseOffset(raw, base)
		log, bases = append(log, raw), append(bases, base)
	}
	end := oracle(data[0])
	hwm := int64(len(end))
	var fetches, cut atomic.Int32
	kc.Cluster.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		kc.Cluster.KeepControl()
		req := kreq.(*kmsg.FetchRequest)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		rp := req.Topics[0].Partitions[0]
		fetches.Add(1)
		j := sort.Search(len(bases), func(i int) bool { return bases[i] > rp.FetchOffset }) - 1
		var out []byte
		if j > 0 {
			out = append(out, log[j-1]...) // one batch early
		}
		out = append(out, log[j]...)
		if j+1 < len(log) {
			out = append(out, log[j+1][:len(log[j+1])/2]...) // cut inside the next batch
			cut.Add(1)
		}
		st := kmsg.NewFetchResponseTopic()
		st.Topic = req.Topics[0].Topic
		st.TopicID = req.Topics[0].TopicID
		sp := kmsg.NewFetchResponseTopicPartition()
		sp.Partition = rp.Partition
		sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = hwm, hwm, 0
		sp.RecordBatches = out
		st.Partitions = append(st.Partitions, sp)
		resp.Topics = append(resp.Topics, st)
		return resp, nil, true
	})
	s := kafkaSource(t, kc, engine.KafkaOptions{FetchMaxBytes: 1, TargetedFetchBytes: 1})
	ctx := context.Background()
	var got []readRecord
	if err := s.Scan(ctx, 0, 0, collect(t, &got)); err != nil {
		t.Fatal(err)
	}
	sameRecords(t, "scan through cut answers", got, end)
	if n := fetches.Load(); n != int32(len(log)) || cut.Load() != n-1 {
		t.Fatalf("%d fetches, %d of them cut, for %d batches", n, cut.Load(), len(log))
	}
	got = nil
	offsets := []int64{bases[1], bases[3] + 0, bases[4], bases[11]}
	if err := s.ReadBatches(ctx, 0, offsets, collect(t, &got)); err != nil {
		t.Fatal(err)
	}
	var want []readRecord
	for _, r := range end {
		if r.base == bases[1] || r.base == bases[3] || r.base == bases[4] || r.base == bases[11] {
			want = append(want, r)
		}
	}
	sameRecords(t, "ReadBatches through cut answers", got, want)
}

// TestKafkaSourceBrokerDown: with the cluster gone, calls fail with errors IsRetryable accepts.
func TestKafkaSourceBrokerDown(t *testing.T) {
	kc := enginetest.NewKafkaCluster(t, 1, "delivery_log", 1)
	kc.Produce(t, 0, testData(1, 1)[0][0])
	s := kafkaSource(t, kc, engine.KafkaOptions{Retries: 1, ClientOpts: []kgo.Opt{kgo.RetryTimeout(200 * time.Millisecond), kgo.RequestRetries(1)}})
	kc.Cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.Scan(ctx, 0, 0, func(*segment.Batch) error { return nil })
	if err == nil || !engine.IsRetryable(err) || ctx.Err() != nil {
		t.Fatalf("Scan with the cluster down: %v (retryable %t)", err, engine.IsRetryable(err))
	}
	t.Logf("Scan with the cluster down: %v", err)
	if _, err := s.Bounds(ctx, 0); err == nil || !engine.IsRetryable(err) || ctx.Err() != nil {
		t.Fatalf("Bounds with the cluster down: %v (retryable %t)", err, engine.IsRetryable(err))
	}
}

// TestKafkaSourceConcurrent reads one source from several goroutines at once.
func TestKafkaSourceConcurrent(t *testing.T) {
	data := testData(3, 15)
	kc := enginetest.NewKafkaCluster(t, 3, "delivery_log", 3)
	for p, batches := range data {
		for _, b := range batches {
			kc.Produce(t, int32(p), b)
		}
	}
	s := kafkaSource(t, kc, engine.KafkaOptions{FetchMaxBytes: 500})
	ctx := context.Background()
	errs := make(chan error, 6)
	for g := 0; g < 6; g++ {
		go func() {
			p := int32(g % 3)
			all := oracle(data[p])
			for range 5 {
				var got []readRecord
				var rr segment.RecordReader
				err := s.Scan(ctx, p, 0, func(b *segment.Batch) error {
					if err := rr.Reset(b); err != nil {
						return err
					}
					for rr.Next() {
						r := rr.Record()
						got = append(got, readRecord{r.Offset, b.BaseOffset, r.Timestamp, string(r.Value)})
					}
					return rr.Err()
				})
				if err == nil && len(got) != len(all) {
					err = fmt.Errorf("partition %d: %d records, want %d", p, len(got), len(all))
				}
				for i := range got {
					if err == nil && got[i] != all[i] {
						err = fmt.Errorf("partition %d record %d: %+v, want %+v", p, i, got[i], all[i])
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestKafkaSourceCorruptAnswer: bytes damaged on the wire or on the broker's disk are corruption,
// not a retryable error: a flipped bit fails the CRC when the records are decoded, and framing
// that no writer produces stops the scan.
func TestKafkaSourceCorruptAnswer(t *testing.T) {
	data := testData(1, 3)
	kc := enginetest.NewKafkaCluster(t, 1, "delivery_log", 1)
	var log []byte
	for _, b := range data[0] {
		raw := enginetest.Encode(t, b, 0)
		segment.SetBaseOffset(raw, kc.ProduceRaw(t, 0, raw))
		log = append(log, raw...)
	}
	hwm := int64(len(oracle(data[0])))
	var damage atomic.Value // func([]byte)
	kc.Cluster.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		kc.Cluster.KeepControl()
		req := kreq.(*kmsg.FetchRequest)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = req.Topics[0].Topic, req.Topics[0].TopicID
		sp := kmsg.NewFetchResponseTopicPartition()
		sp.HighWatermark, sp.LastStableOffset = hwm, hwm
		sp.RecordBatches = bytes.Clone(log)
		damage.Load().(func([]byte))(sp.RecordBatches)
		st.Partitions = append(st.Partitions, sp)
		resp.Topics = append(resp.Topics, st)
		return resp, nil, true
	})
	s := kafkaSource(t, kc, engine.KafkaOptions{})
	ctx := context.Background()

	damage.Store(func(b []byte) { b[len(b)-3] ^= 0x10 }) // inside the last batch's records
	var rr segment.RecordReader
	var crcErr error
	err := s.Scan(ctx, 0, 0, func(b *segment.Batch) error {
		if err := rr.Reset(b); err != nil {
			crcErr = err
		}
		return nil
	})
	if err != nil || !errors.Is(crcErr, segment.ErrChecksum) {
		t.Fatalf("flipped bit: scan %v, decode %v; want the decode to fail its CRC", err, crcErr)
	}

	damage.Store(func(b []byte) { b[8] = 0xff }) // the first batch's length: negative
	err = s.Scan(ctx, 0, 0, func(*segment.Batch) error { return nil })
	if !errors.Is(err, segment.ErrCorrupt) || engine.IsRetryable(err) {
		t.Fatalf("bad framing: %v (retryable %t), want corruption", err, engine.IsRetryable(err))
	}
}

// A broker answers a connection's requests in order, so a long-polling WaitForEnd must not share
// its connection with reads: a replay's targeted reads would wait out every poll queued before
// them. With polls held for 20 seconds, the reads must be done before any poll ends.
func TestKafkaSourceReadsAreNotQueuedBehindTailing(t *testing.T) {
	kc := enginetest.NewKafkaCluster(t, 1, "delivery_log", 2)
	for i := 0; i < 5; i++ {
		kc.Produce(t, 0, enginetest.Batch{Codec: segment.CodecSnappy, Records: []enginetest.Record{{Key: []byte("k"), Value: []byte("v"), Timestamp: 1e12}}})
	}
	src := kafkaSource(t, kc, engine.KafkaOptions{PollWait: 20 * time.Second})
	// The waits give up after 15 s, inside their first poll: reads queued behind a poll would
	// still be waiting then.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	polled := make(chan int32, 2)
	for p := int32(0); p < 2; p++ {
		go func() {
			src.WaitForEnd(ctx, p, 1000)
			polled <- p
		}()
	}
	reads := make(chan error, 1)
	go func() {
		for off := int64(0); off < 5; off++ {
			n := 0
			if err := src.ReadBatches(context.Background(), 0, []int64{off}, func(*segment.Batch) error { n++; return nil }); err != nil || n != 1 {
				reads <- fmt.Errorf("ReadBatches(%d): %d batches, %v", off, n, err)
				return
			}
		}
		reads <- nil
	}()
	select {
	case err := <-reads:
		if err != nil {
			t.Fatal(err)
		}
	case p := <-polled:
		t.Fatalf("partition %d's wait ended before five reads were done: reads wait behind tailing", p)
	}
	cancel()
}

// TestKafkaSourceReadsNeighboursTogether: wanted batches that are neighbours, or a few apart, come
// in few round trips (a fetch brings along what lies between while that is within fetchWaste of
// what is wanted), and sparse ones (a tenth of the batches) one batch per fetch: it does not
// fetch what nobody wants.
func TestKafkaSourceReadsNeighboursTogether(t *testing.T) {
	const n = 300
	data := testData(1, n)
	kc := enginetest.NewKafkaCluster(t, 1, "delivery_log", 1)
	var bases []int64
	for _, b := range data[0] {
		bases = append(bases, kc.ProduceRaw(t, 0, enginetest.Encode(t, b, 0)))
	}
	var fetches, grown atomic.Int32
	kc.Cluster.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		kc.Cluster.KeepControl()
		req := kreq.(*kmsg.FetchRequest)
		fetches.Add(1)
		if req.Topics[0].Partitions[0].PartitionMaxBytes > 1 {
			grown.Add(1)
		}
		return nil, nil, false
	})
	s := kafkaSource(t, kc, engine.KafkaOptions{})
	read := func(offsets []int64) int {
		t.Helper()
		fetches.Store(0)
		grown.Store(0)
		got := 0
		if err := s.ReadBatches(t.Context(), 0, offsets, func(*segment.Batch) error { got++; return nil }); err != nil {
			t.Fatal(err)
		}
		if got != len(offsets) {
			t.Fatalf("read %d batches, want %d", got, len(offsets))
		}
		return int(fetches.Load())
	}
	if f := read(bases); f > n/6 {
		t.Errorf("%d neighbouring batches took %d fetches", n, f)
	}
	var third []int64
	for i := 0; i < n; i += 3 {
		third = append(third, bases[i])
	}
	if f := read(third); f > len(third)/4 {
		t.Errorf("%d batches three apart took %d fetches: the ones between cost less than a round trip", len(third), f)
	}
	var sparse []int64
	for i := 0; i < n; i += 10 {
		sparse = append(sparse, bases[i])
	}
	f := read(sparse)
	if f < len(sparse) || grown.Load() > 2 {
		t.Errorf("%d batches ten apart took %d fetches, %d of them asking for more than one batch", len(sparse), f, grown.Load())
	}
	t.Logf("%d neighbours: %d fetches; %d ten apart: %d fetches", n, read(bases), len(sparse), f)
}

// A Kafka source is remote, alone or among the topics of a Topics; the local log and a broker's
// directory are not (readers scan dense ranges of those, and read a remote one by offset).
func TestRemote(t *testing.T) {
	kc := enginetest.NewKafkaCluster(t, 1, "delivery_log", 1)
	k := kafkaSource(t, kc, engine.KafkaOptions{})
	l, err := engine.Open(engine.Options{Dir: t.TempDir(), Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !engine.Remote(k) || engine.Remote(l) {
		t.Fatalf("Remote: kafka %v, log %v", engine.Remote(k), engine.Remote(l))
	}
	m, err := engine.Open(engine.Options{Dir: t.TempDir(), Topic: "dc2.delivery_log", Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	local, err := engine.NewTopics(context.Background(), l, m)
	if err != nil {
		t.Fatal(err)
	}
	if engine.Remote(local) {
		t.Fatal("Topics of two local logs is remote")
	}
	mixed, err := engine.NewTopics(context.Background(), k, m)
	if err != nil {
		t.Fatal(err)
	}
	if !engine.Remote(mixed) {
		t.Fatal("Topics holding a Kafka source is not remote")
	}
}
