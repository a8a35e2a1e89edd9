package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/replay/replay/segment"
)

// Topics reads several topics of one partition count as one Source: the local delivery_log and
// the topics MirrorMaker 2 replicates into its cluster from the other datacenters
// (dc2.delivery_log, …). Its partitions are the topics' partitions one topic after the other:
// partition v is partition v mod P of topic v / P (P the count every topic has), so topic 0
// keeps its own partition numbers and an index of one topic is an index of Topics of that topic.
// Indexing and lookups need nothing else; a replay reads a webhook's partition p in every topic
// (Partition(t, p)) and merges them.
//
// Partitions refuses topics whose counts differ (*TopicPartitionsError): a webhook's events are in
// partition murmur2(key) mod P of every topic only while P is the same. Errors of a topic's
// source are wrapped with the topic's name and partition.
type Topics struct {
	srcs []Source
	per  int32 // each topic's partition count as of NewTopics (0: one topic, not needed)
}

var _ Source = (*Topics)(nil)

// ErrTopicPartitions is matched (errors.Is) by every *TopicPartitionsError.
var ErrTopicPartitions = errors.New("engine: the topics' partition counts differ")

// TopicPartitionsError says that the topics read together do not all have the same partition
// count.
type TopicPartitionsError struct {
	Topics []string
	Counts []int32
}

func (e *TopicPartitionsError) Error() string {
	parts := make([]string, len(e.Topics))
	for i := range e.Topics {
		parts[i] = fmt.Sprintf("%s has %d", e.Topics[i], e.Counts[i])
	}
	return fmt.Sprintf("engine: topics read together must have the same partition count (a webhook's partition is murmur2(key) mod the count in each): %s", strings.Join(parts, ", "))
}

// Is makes errors.Is(err, ErrTopicPartitions) true.
func (e *TopicPartitionsError) Is(target error) bool { return target == ErrTopicPartitions }

// NewTopics reads srcs as one Source, the first being the local topic. It checks the partition
// counts at once. The Topics owns the sources: Close closes them all.
func NewTopics(ctx context.Context, srcs ...Source) (*Topics, error) {
	if len(srcs) == 0 {
		return nil, errors.New("engine: no topics")
	}
	seen := map[string]bool{}
	for _, s := range srcs {
		if seen[s.Topic()] {
			return nil, fmt.Errorf("engine: topic %q is listed twice", s.Topic())
		}
		seen[s.Topic()] = true
	}
	t := &Topics{srcs: srcs}
	n, err := t.PerTopic(ctx)
	if err != nil {
		return nil, err
	}
	if len(srcs) > 1 {
		t.per = n
	}
	return t, nil
}

// TopicsOf is src read as Topics: src itself when it is one, else a Topics of src alone.
func TopicsOf(src Source) *Topics {
	if t, ok := src.(*Topics); ok {
		return t
	}
	return &Topics{srcs: []Source{src}}
}

// Len is the number of topics.
func (t *Topics) Len() int { return len(t.srcs) }

// Name is the name of topic i (0: the local one).
func (t *Topics) Name(i int) string { return t.srcs[i].Topic() }

// Names are the topics' names in order.
func (t *Topics) Names() []string {
	n := make([]string, len(t.srcs))
	for i, s := range t.srcs {
		n[i] = s.Topic()
	}
	return n
}

// Source is topic i's own source.
func (t *Topics) Source(i int) Source { return t.srcs[i] }

// Topic is the topics' names joined by commas.
func (t *Topics) Topic() string { return strings.Join(t.Names(), ",") }

// PerTopic is the partition count of each topic, or a *TopicPartitionsError.
func (t *Topics) PerTopic(ctx context.Context) (int32, error) {
	counts := make([]int32, len(t.srcs))
	for i, s := range t.srcs {
		n, err := s.Partitions(ctx)
		if err != nil {
			return 0, t.wrap(i, -1, err)
		}
		counts[i] = n
	}
	for _, n := range counts[1:] {
		if n != counts[0] {
			return 0, &TopicPartitionsError{Topics: t.Names(), Counts: counts}
		}
	}
	return counts[0], nil
}

// Partitions is the topics' partitions together: their count times PerTopic.
func (t *Topics) Partitions(ctx context.Context) (int32, error) {
	n, err := t.PerTopic(ctx)
	return n * int32(len(t.srcs)), err
}

// Partition is the partition of Topics that is partition p of topic i, given the per-topic
// count n (PerTopic).
func Partition(i int, p, n int32) int32 { return int32(i)*n + p }

// Split is the topic and its partition that partition v of Topics is, given the per-topic count n.
func Split(v, n int32) (int, int32) {
	if n <= 0 {
		return 0, v
	}
	return int(v / n), v % n
}

// PerTopicKnown is each topic's partition count as NewTopics found it (the count Partition
// and Split need); 0 for a Topics of one topic, whose partitions are the topic's own.
func (t *Topics) PerTopicKnown() int32 { return t.per }

// locate maps v to a topic's source and its partition. A topic whose count changed since
// NewTopics is caught by Partitions, which the index asks before every lookup and build.
func (t *Topics) locate(_ context.Context, v int32) (int, int32, error) {
	if len(t.srcs) == 1 {
		return 0, v, nil
	}
	n := t.per
	if v < 0 || v >= n*int32(len(t.srcs)) {
		return 0, 0, fmt.Errorf("%w: %d of topics %s (%d partitions each)", ErrUnknownPartition, v, t.Topic(), n)
	}
	i, p := Split(v, n)
	return i, p, nil
}

// wrap names the topic (and partition, unless p < 0) in err when several topics are read.
func (t *Topics) wrap(i int, p int32, err error) error {
	if err == nil || len(t.srcs) == 1 || errors.Is(err, ErrStop) {
		return err
	}
	if p < 0 {
		return fmt.Errorf("topic %s: %w", t.srcs[i].Topic(), err)
	}
	return fmt.Errorf("topic %s partition %d: %w", t.srcs[i].Topic(), p, err)
}

// Bounds implements Source.
func (t *Topics) Bounds(ctx context.Context, v int32) (Bounds, error) {
	i, p, err := t.locate(ctx, v)
	if err != nil {
		return Bounds{}, err
	}
	b, err := t.srcs[i].Bounds(ctx, p)
	return b, t.wrap(i, p, err)
}

// OffsetForTime implements Source.
func (t *Topics) OffsetForTime(ctx context.Context, v int32, ts int64) (int64, bool, error) {
	i, p, err := t.locate(ctx, v)
	if err != nil {
		return 0, false, err
	}
	o, found, err := t.srcs[i].OffsetForTime(ctx, p, ts)
	return o, found, t.wrap(i, p, err)
}

// Scan implements Source.
func (t *Topics) Scan(ctx context.Context, v int32, from int64, fn func(*segment.Batch) error) error {
	i, p, err := t.locate(ctx, v)
	if err != nil {
		return err
	}
	return t.wrap(i, p, t.srcs[i].Scan(ctx, p, from, fn))
}

// ReadBatches implements Source.
func (t *Topics) ReadBatches(ctx context.Context, v int32, offsets []int64, fn func(*segment.Batch) error) error {
	i, p, err := t.locate(ctx, v)
	if err != nil {
		return err
	}
	return t.wrap(i, p, t.srcs[i].ReadBatches(ctx, p, offsets, fn))
}

// WaitForEnd implements Source.
func (t *Topics) WaitForEnd(ctx context.Context, v int32, offset int64) (int64, error) {
	i, p, err := t.locate(ctx, v)
	if err != nil {
		return 0, err
	}
	end, err := t.srcs[i].WaitForEnd(ctx, p, offset)
	return end, t.wrap(i, p, err)
}

// Close closes every topic's source.
func (t *Topics) Close() error {
	var errs []error
	for _, s := range t.srcs {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// NewestTimestamp is the greatest timestamp of the last batch of src's partition p (what a
// mirrored topic has caught up to), with ok false when the partition holds nothing.
func NewestTimestamp(ctx context.Context, src Source, p int32) (ts int64, ok bool, err error) {
	b, err := src.Bounds(ctx, p)
	if err != nil || b.End <= b.Start {
		return 0, false, err
	}
	err = src.Scan(ctx, p, b.End-1, func(bt *segment.Batch) error {
		if !ok || bt.MaxTimestamp > ts {
			ts, ok = bt.MaxTimestamp, true
		}
		return nil
	})
	return ts, ok, err
}

// Remote reports whether src reads over the network (a Kafka cluster, or Topics holding one),
// where every byte fetched counts and a scan fetches whole FetchMaxBytes answers past the range
// it is asked for: callers then read by offset.
func Remote(src Source) bool {
	switch s := src.(type) {
	case *KafkaSource:
		return true
	case *Topics:
		for _, t := range s.srcs {
			if Remote(t) {
				return true
			}
		}
	}
	return false
}
