package enginetest

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KafkaCluster is a Kafka cluster with one topic, and a client that writes raw batches into it:
// batches keep their boundaries, as the conformance suite needs. The cluster is an in-process
// kfake (NewKafkaCluster) or a real one (ConnectKafka; Cluster is nil).
type KafkaCluster struct {
	Cluster *kfake.Cluster
	Client  *kgo.Client
	Topic   string
	TopicID [16]byte
	addrs   []string
	leaders []int32 // by partition, from the last metadata answer
}

// NewKafkaCluster starts a cluster of brokers with topic in partitions partitions, closed when the
// test ends.
func NewKafkaCluster(t testing.TB, brokers int, topic string, partitions int32) *KafkaCluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	kc := &KafkaCluster{Cluster: c, Client: cl, Topic: topic, addrs: c.ListenAddrs()}
	kc.refresh(t)
	return kc
}

// ConnectKafka connects to the cluster at brokers, which holds topic already, closed when the
// test ends.
func ConnectKafka(t testing.TB, brokers []string, topic string) *KafkaCluster {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	kc := &KafkaCluster{Client: cl, Topic: topic, addrs: brokers}
	kc.refresh(t)
	return kc
}

// refresh reads the topic's id and leaders.
func (kc *KafkaCluster) refresh(t testing.TB) {
	t.Helper()
	topic := kc.Topic
	cl := kc.Client
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl) // also tells cl the brokers
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("metadata of %s: %+v", topic, resp.Topics)
	}
	kc.TopicID = resp.Topics[0].TopicID
	kc.leaders = make([]int32, len(resp.Topics[0].Partitions))
	for _, p := range resp.Topics[0].Partitions {
		if p.Partition >= 0 && int(p.Partition) < len(kc.leaders) {
			kc.leaders[p.Partition] = p.Leader
		}
	}
}

// Produce writes b into partition p as one raw batch, sent to the partition's leader, and returns
// the base offset the cluster gave it.
func (kc *KafkaCluster) Produce(t testing.TB, p int32, b Batch) int64 {
	t.Helper()
	return kc.ProduceRaw(t, p, Encode(t, b, 0))
}

// ProduceRaw writes encoded batches into partition p as they are and returns the base offset the
// cluster gave them.
func (kc *KafkaCluster) ProduceRaw(t testing.TB, p int32, raw []byte) int64 {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 10_000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = kc.Topic
	rt.TopicID = kc.TopicID
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = p
	rp.Records = raw
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	var leader int32
	if kc.Cluster != nil {
		leader = kc.Cluster.LeaderFor(kc.Topic, p)
	} else {
		kc.refresh(t) // a real cluster's leaders move when brokers restart
		leader = kc.leaders[p]
	}
	kresp, err := kc.Client.Broker(int(leader)).Request(context.Background(), req)
	if err != nil {
		t.Fatalf("produce to %s-%d on broker %d: %v", kc.Topic, p, leader, err)
	}
	resp := kresp.(*kmsg.ProduceResponse)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("produce to %s-%d: answer %+v", kc.Topic, p, resp.Topics)
	}
	rpr := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(rpr.ErrorCode); err != nil {
		t.Fatalf("produce to %s-%d: %v", kc.Topic, p, err)
	}
	return rpr.BaseOffset
}

// DeleteRecords moves the log start offset of p up to before, as retention would.
func (kc *KafkaCluster) DeleteRecords(t testing.TB, p int32, before int64) {
	t.Helper()
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.TimeoutMillis = 10_000
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = kc.Topic
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition = p
	rp.Offset = before
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), kc.Client)
	if err != nil {
		t.Fatal(err)
	}
	for _, t2 := range resp.Topics {
		for _, p2 := range t2.Partitions {
			if err := kerr.ErrorForCode(p2.ErrorCode); err != nil {
				t.Fatalf("delete records of %s-%d before %d: %v", kc.Topic, p, before, err)
			}
		}
	}
}

// Brokers are the cluster's listen addresses.
func (kc *KafkaCluster) Brokers() []string { return kc.addrs }
