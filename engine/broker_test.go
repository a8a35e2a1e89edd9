package engine_test

// Tests against a real Apache Kafka (engine/kafkatest): the Source conformance suite through
// KafkaSource on 1- and 3-broker clusters, KafkaSource's errors when the cluster is unreachable,
// Kafka's DumpLogSegments on the embedded log's files, and a broker adopting those files.

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/enginetest"
	"github.com/replay/replay/engine/kafkatest"
)

func TestMain(m *testing.M) { kafkatest.Main(m) }

// brokerFactory is the conformance suite's Factory on the shared cluster of nodes nodes: a new
// topic replicated on every node, each Batch produced as one raw batch.
func brokerFactory(nodes int, topic string, o engine.KafkaOptions) enginetest.Factory {
	return func(t *testing.T, _ string, data [][]enginetest.Batch) enginetest.Harness {
		c := kafkatest.Shared(t, nodes)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.CreateTopic(ctx, topic, int32(len(data)), int16(nodes), nil); err != nil {
			t.Fatal(err)
		}
		kc := enginetest.ConnectKafka(t, c.Bootstrap(), topic)
		for p, batches := range data {
			for _, b := range batches {
				kc.Produce(t, int32(p), b)
			}
		}
		o.Brokers = c.Bootstrap()
		o.Topic = topic
		o.RetryBackoff = 20 * time.Millisecond
		s, err := engine.NewKafkaSource(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return enginetest.Harness{
			Source: s,
			Append: func(t *testing.T, p int32, b enginetest.Batch) { kc.Produce(t, p, b) },
		}
	}
}

func TestBrokerConformance(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("%dbrokers", nodes), func(t *testing.T) {
			topic := fmt.Sprintf("conformance-%d", nodes)
			enginetest.ExerciseTopic(t, topic, brokerFactory(nodes, topic, engine.KafkaOptions{}))
		})
		t.Run(fmt.Sprintf("%dbrokers-small-fetches", nodes), func(t *testing.T) {
			topic := fmt.Sprintf("conformance-small-%d", nodes)
			o := engine.KafkaOptions{FetchMaxBytes: 1, TargetedFetchBytes: 1 << 20, PollWait: 100 * time.Millisecond}
			enginetest.ExerciseTopic(t, topic, brokerFactory(nodes, topic, o))
		})
	}
}

// TestKafkaSourceUnreachable opens a source on addresses where nothing listens: the error names
// them, and comes within the context's deadline.
func TestKafkaSourceUnreachable(t *testing.T) {
	var addrs []string
	for i := 0; i < 2; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	s, err := engine.NewKafkaSource(ctx, engine.KafkaOptions{Brokers: addrs, RetryBackoff: 10 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("NewKafkaSource on unreachable brokers succeeded")
	}
	t.Logf("after %v: %v", time.Since(start), err)
	for _, a := range addrs {
		if !strings.Contains(err.Error(), a) {
			t.Errorf("error %q does not name broker %s", err, a)
		}
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("NewKafkaSource took %v to fail", time.Since(start))
	}
}

func TestKafkaSourceNoTopic(t *testing.T) {
	c := kafkatest.Shared(t, 1)
	_, err := engine.NewKafkaSource(context.Background(), engine.KafkaOptions{Brokers: c.Bootstrap(), Topic: "no_such_topic"})
	if err == nil || !strings.Contains(err.Error(), `"no_such_topic" does not exist`) || !strings.Contains(err.Error(), c.Bootstrap()[0]) {
		t.Fatalf("NewKafkaSource of a missing topic: %v", err)
	}
}

// TestKafkaSourceOneSeedDown opens a source whose first seed broker is down: the live one serves.
func TestKafkaSourceOneSeedDown(t *testing.T) {
	c := kafkatest.Shared(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.CreateTopic(ctx, "seed_down", 1, 1, nil); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	s, err := engine.NewKafkaSource(ctx, engine.KafkaOptions{Brokers: append([]string{dead}, c.Bootstrap()...), Topic: "seed_down"})
	if err != nil {
		t.Fatalf("NewKafkaSource with seeds %s (down) and %v: %v", dead, c.Bootstrap(), err)
	}
	defer s.Close()
	if n, err := s.Partitions(ctx); err != nil || n != 1 {
		t.Fatalf("Partitions = %d, %v", n, err)
	}
}
