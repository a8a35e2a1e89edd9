package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/replay/replay/engine"
)

// ErrPartitionCount is matched (errors.Is) by every *PartitionCountError.
var ErrPartitionCount = errors.New("index: partition count differs")

// PartitionCountError says that a source's topic has another partition count than the one the
// index was built with. A webhook's partition is murmur2(key) mod the count, so the index's
// entries (and a lookup's partition) would belong to other partitions than the source's records:
// the index refuses rather than answer for the wrong partition. Rebuild the index from the source.
type PartitionCountError struct {
	Dir    string // the index's directory
	Topic  string // the source's topic
	Index  int32  // the partition count recorded in the index's meta
	Source int32  // the source's partition count
}

func (e *PartitionCountError) Error() string {
	return fmt.Sprintf("index: topic %q has %d partitions but the index in %s was built with %d: its webhooks' partitions would be wrong; rebuild the index from this topic", e.Topic, e.Source, e.Dir, e.Index)
}

// Is makes errors.Is(err, ErrPartitionCount) true.
func (e *PartitionCountError) Is(target error) bool { return target == ErrPartitionCount }

// Partitions is the partition count recorded in the index's meta: that of the topic it was first
// built from, or 0 when no build has recorded one yet (a new index, or one from before the count
// was recorded: its next build adopts the source's count).
func (ix *Index) Partitions() int32 { return ix.partitions.Load() }

// checkPartitions returns src's partition count, or a *PartitionCountError when it is not the
// index's. With adopt (a build), an index without a recorded count records src's.
func (ix *Index) checkPartitions(ctx context.Context, src engine.Source, adopt bool) (int32, error) {
	n, err := src.Partitions(ctx)
	if err != nil {
		return 0, err
	}
	var names []string // nil: one topic
	if ts := engine.TopicsOf(src); ts.Len() > 1 {
		names = ts.Names()
	}
	have := ix.partitions.Load()
	if have == 0 && adopt && !ix.opts.ReadOnly {
		if have, err = ix.adoptPartitions(n, names); err != nil {
			return 0, err
		}
	}
	if have != 0 && !slices.Equal(ix.Topics(), names) {
		return 0, &TopicsError{Dir: ix.opts.Dir, Index: ix.Topics(), Source: names, SourceTopic: src.Topic()}
	}
	if have != 0 && have != n {
		return 0, &PartitionCountError{Dir: ix.opts.Dir, Topic: src.Topic(), Index: have, Source: n}
	}
	return n, nil
}

// adoptPartitions records n as the index's partition count unless one is recorded already, and
// returns the recorded count.
func (ix *Index) adoptPartitions(n int32, topics []string) (int32, error) {
	ix.metaMu.Lock()
	defer ix.metaMu.Unlock()
	if have := ix.partitions.Load(); have != 0 {
		return have, nil
	}
	b, err := json.Marshal(meta{Version: 1, BucketWidthMs: ix.widthMs, Partitions: n, Topics: topics})
	if err != nil {
		return 0, err
	}
	if err := ix.db.Set([]byte(keyMeta), b, pebble.Sync); err != nil {
		return 0, fmt.Errorf("index: %s: recording the partition count %d: %w", ix.opts.Dir, n, err)
	}
	ix.topics = topics
	ix.partitions.Store(n)
	return n, nil
}

// Topics is the topic list recorded in the index's meta: nil for an index of one topic (or not
// built yet), else the topics of the engine.Topics it was built from, in order.
func (ix *Index) Topics() []string {
	ix.metaMu.Lock()
	defer ix.metaMu.Unlock()
	return ix.topics
}

// ErrTopics is matched (errors.Is) by every *TopicsError.
var ErrTopics = errors.New("index: topics differ")

// TopicsError says that a source reads other topics (or the same in another order) than the
// index was built from: an index partition is a topic's ordinal times the partition count plus
// its partition, so its entries would belong to another topic's records. Rebuild the index.
type TopicsError struct {
	Dir         string
	Index       []string // nil: one topic
	Source      []string // nil: one topic
	SourceTopic string
}

func (e *TopicsError) Error() string {
	list := func(t []string, one string) string {
		if len(t) == 0 {
			return "one topic (" + one + ")"
		}
		return fmt.Sprintf("the topics %s", strings.Join(t, ","))
	}
	return fmt.Sprintf("index: the index in %s was built from %s, but the source reads %s: rebuild the index from these topics (replayd index rebuild --topics %s)",
		e.Dir, list(e.Index, "any name"), list(e.Source, e.SourceTopic), e.SourceTopic)
}

// Is makes errors.Is(err, ErrTopics) true.
func (e *TopicsError) Is(target error) bool { return target == ErrTopics }

// CheckSource says whether src fits the index: nil, a *TopicsError (src reads other topics than
// the index was built from) or a *PartitionCountError. It writes nothing.
func (ix *Index) CheckSource(ctx context.Context, src engine.Source) error {
	if err := ix.usable(); err != nil {
		return err
	}
	_, err := ix.checkPartitions(ctx, src, false)
	return err
}
