package engine

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Our partitioner must put every key where franz-go's Kafka-compatible partitioner (and so Java's
// default partitioner) puts it. A nil hasher is franz-go's Kafka-compatible murmur2.
func TestPartitionForMatchesKafka(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, partitions := range []int{1, 3, 8, 12, 64, 100} {
		kafka := kgo.StickyKeyPartitioner(nil).ForTopic("delivery_log")
		for i := 0; i < 5000; i++ {
			var key []byte
			switch i % 3 {
			case 0:
				key = []byte(fmt.Sprint(1095098195724595200 + rng.Int64N(1e12)))
			case 1:
				key = make([]byte, rng.IntN(40))
				for j := range key {
					key[j] = byte(rng.IntN(256))
				}
			default:
				key = []byte(fmt.Sprint(rng.IntN(1000)))
			}
			want := kafka.Partition(&kgo.Record{Key: key}, partitions)
			if got := PartitionFor(key, int32(partitions)); int(got) != want {
				t.Fatalf("PartitionFor(%q, %d) = %d, Kafka's partitioner says %d", key, partitions, got, want)
			}
		}
	}
	// Known values of Java's Utils.murmur2 (from Kafka's UtilsTest).
	for key, want := range map[string]int32{"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536, "a-little-bit-longer-string": -1486304829, "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, "abc": 479470107} {
		if got := murmur2([]byte(key)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", key, got, want)
		}
	}
}
