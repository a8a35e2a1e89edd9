package kafkatest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var (
	sharedMu       sync.Mutex
	sharedClusters = map[int]*sharedCluster{}
)

type sharedCluster struct {
	once sync.Once
	c    *Cluster
	err  error
}

// Shared is the test package's cluster of nodes nodes (1 or 3), started on first use and stopped
// by Main. A cluster that failed to start fails every test that asks for it.
func Shared(t testing.TB, nodes int) *Cluster {
	t.Helper()
	sharedMu.Lock()
	sc := sharedClusters[nodes]
	if sc == nil {
		sc = &sharedCluster{}
		sharedClusters[nodes] = sc
	}
	sharedMu.Unlock()
	sc.once.Do(func() {
		start := time.Now()
		sc.c, sc.err = Start(context.Background(), Options{Nodes: nodes})
		if sc.err == nil {
			fmt.Fprintf(os.Stderr, "kafkatest: %d-node Kafka %s cluster started in %v\n", nodes, KafkaVersion, time.Since(start).Round(time.Millisecond))
		}
	})
	if sc.err != nil {
		t.Fatalf("kafkatest: start a %d-node cluster: %v", nodes, sc.err)
	}
	return sc.c
}

// StopShared stops the clusters Shared started.
func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for n, sc := range sharedClusters {
		if sc.c != nil {
			sc.c.Close()
		}
		delete(sharedClusters, n)
	}
}

// Main runs the package's tests, stops the shared clusters and exits: a test package's
// TestMain.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// CreateTopic creates topic with partitions partitions and replication factor rf (0: every
// node) and configs, and waits until every partition has a leader that every broker knows.
func (c *Cluster) CreateTopic(ctx context.Context, topic string, partitions int32, rf int16, configs map[string]*string) error {
	if rf == 0 {
		rf = int16(len(c.Nodes))
	}
	cl, err := c.Client()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopic(ctx, partitions, rf, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("kafkatest: create topic %s (%d partitions, replication %d): %w", topic, partitions, rf, err)
	}
	return c.waitLeaders(ctx, topic, partitions)
}

// waitLeaders waits until every running broker answers Metadata for topic with a leader for
// each of its partitions.
func (c *Cluster) waitLeaders(ctx context.Context, topic string, partitions int32) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		if err := n.waitLeaders(ctx, topic, partitions); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) waitLeaders(ctx context.Context, topic string, partitions int32) error {
	var last error
	for {
		m, err := n.metadata(ctx, topic)
		if err == nil {
			err = leadersKnown(m, topic, partitions)
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafkatest: topic %s on node %d: %w (last: %v)", topic, n.ID, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func leadersKnown(m *kmsg.MetadataResponse, topic string, partitions int32) error {
	if len(m.Topics) != 1 {
		return fmt.Errorf("%d topics in the answer", len(m.Topics))
	}
	t := m.Topics[0]
	if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
		return err
	}
	if int32(len(t.Partitions)) != partitions {
		return fmt.Errorf("%d of %d partitions known", len(t.Partitions), partitions)
	}
	for _, p := range t.Partitions {
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil && err != kerr.ReplicaNotAvailable {
			return fmt.Errorf("partition %d: %w", p.Partition, err)
		}
		if p.Leader < 0 {
			return fmt.Errorf("partition %d has no leader", p.Partition)
		}
	}
	return nil
}

// New starts a cluster of its own for a test (one that stops or kills nodes, say), closed when
// the test ends; a failed start fails the test.
func New(t testing.TB, o Options) *Cluster {
	t.Helper()
	c, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("kafkatest: start a %d-node cluster: %v", max(o.Nodes, 1), err)
	}
	t.Cleanup(c.Close)
	return c
}
