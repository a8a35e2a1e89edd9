package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/replay/replay/segment"
)

func openTopicLog(t *testing.T, topic string, parts int32) *Log {
	t.Helper()
	l, err := Open(Options{Dir: filepath.Join(t.TempDir(), topic), Topic: topic, Partitions: parts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestTopicsRefusesDifferentPartitionCounts(t *testing.T) {
	a, b := openTopicLog(t, "delivery_log", 4), openTopicLog(t, "dc2.delivery_log", 3)
	_, err := NewTopics(t.Context(), a, b)
	var pe *TopicPartitionsError
	if !errors.As(err, &pe) || !errors.Is(err, ErrTopicPartitions) {
		t.Fatalf("NewTopics = %v, want a *TopicPartitionsError", err)
	}
	for _, want := range []string{"delivery_log has 4", "dc2.delivery_log has 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := NewTopics(t.Context(), a, a); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("a topic listed twice: %v", err)
	}
}

// TestTopicsPartitions: partition v of Topics is partition v mod P of topic v / P, and errors
// name the topic.
func TestTopicsPartitions(t *testing.T) {
	ctx := context.Background()
	a, b := openTopicLog(t, "delivery_log", 3), openTopicLog(t, "dc2.delivery_log", 3)
	for i, l := range []*Log{a, b} {
		var recs []Record
		for k := range 30 {
			recs = append(recs, Record{Key: fmt.Appendf(nil, "%d", k), Value: fmt.Appendf(nil, "%s-%d", l.Topic(), k), Timestamp: int64(1000*i + k)})
		}
		if _, err := l.Append(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	ts, err := NewTopics(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ts.Partitions(ctx)
	if err != nil || n != 6 || ts.PerTopicKnown() != 3 {
		t.Fatalf("Partitions = %d, %v (per topic %d), want 6", n, err, ts.PerTopicKnown())
	}
	if ts.Topic() != "delivery_log,dc2.delivery_log" {
		t.Errorf("Topic = %q", ts.Topic())
	}
	for v := range n {
		i, p := Split(v, 3)
		if Partition(i, p, 3) != v {
			t.Fatalf("Partition(Split(%d)) = %d", v, Partition(i, p, 3))
		}
		var got, want []string
		read := func(into *[]string) func(*segment.Batch) error {
			return func(bt *segment.Batch) error {
				var rr segment.RecordReader
				if err := rr.Reset(bt); err != nil {
					return err
				}
				for rr.Next() {
					*into = append(*into, string(rr.Record().Value))
				}
				return rr.Err()
			}
		}
		if err := ts.Scan(ctx, v, 0, read(&got)); err != nil {
			t.Fatal(err)
		}
		if err := ts.Source(i).Scan(ctx, p, 0, read(&want)); err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("partition %d (topic %d partition %d): %v, want %v", v, i, p, got, want)
		}
		for _, s := range got {
			if !strings.HasPrefix(s, ts.Name(i)+"-") {
				t.Errorf("partition %d holds %q of another topic", v, s)
			}
		}
	}
	if _, err := ts.Bounds(ctx, 6); !errors.Is(err, ErrUnknownPartition) {
		t.Errorf("Bounds(6) = %v, want ErrUnknownPartition", err)
	}
	b.Close()
	_, err = ts.Bounds(ctx, 4)
	if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "topic dc2.delivery_log partition 1") {
		t.Errorf("Bounds of a closed topic = %v, want ErrClosed naming topic dc2.delivery_log partition 1", err)
	}
	if one := TopicsOf(a); one.Len() != 1 || one.Source(0) != Source(a) || TopicsOf(ts) != ts {
		t.Errorf("TopicsOf")
	}
}

// TestSourceSpecTopics: a list of topics opens a Topics of them (the embedded log's mirrored
// topics beside it), the first being Topic; a list of one is that topic alone; bad lists are
// refused naming the topic.
func TestSourceSpecTopics(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"delivery_log", "dc2.delivery_log"} {
		d := filepath.Join(dir, "log")
		if name != "delivery_log" {
			d = EmbeddedTopicDir(d, name)
		}
		l, err := Open(Options{Dir: d, Topic: name, Partitions: 2})
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
	spec := SourceSpec{Kind: SourceEmbedded, Dir: filepath.Join(dir, "log"), Topics: []string{"delivery_log", "dc2.delivery_log"}}
	if got := spec.ForTopic(1); got.Dir != filepath.Join(dir, "log.dc2.delivery_log") || got.Topic != "dc2.delivery_log" || got.Topics != nil {
		t.Fatalf("ForTopic(1) = %+v", got)
	}
	src, err := spec.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ts, ok := src.(*Topics)
	if !ok || ts.Topic() != "delivery_log,dc2.delivery_log" {
		t.Fatalf("Open = %T %v", src, src.Topic())
	}
	if n, err := ts.Partitions(t.Context()); err != nil || n != 4 {
		t.Fatalf("Partitions = %d, %v", n, err)
	}
	src.Close()
	one := SourceSpec{Kind: SourceEmbedded, Dir: filepath.Join(dir, "log"), Topics: []string{"delivery_log"}}
	if src, err := one.Open(t.Context()); err != nil || src.Topic() != "delivery_log" {
		t.Fatalf("a list of one: %v, %v", src, err)
	} else if _, ok := src.(*Topics); ok {
		t.Fatal("a list of one opened as Topics")
	} else {
		src.Close()
	}
	for _, bad := range [][]string{{"delivery_log", "delivery_log"}, {"delivery_log", ""}, {"delivery_log", "a/b"}, {"delivery_log", "dc3.delivery_log"}} {
		spec.Topics = bad
		if src, err := spec.Open(t.Context()); err == nil {
			src.Close()
			t.Errorf("topics %q opened", bad)
		} else if !strings.Contains(err.Error(), bad[1]) && bad[1] != "" {
			t.Errorf("topics %q: %v does not name %q", bad, err, bad[1])
		}
	}
}
