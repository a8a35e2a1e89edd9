package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// SourceKind says which implementation of Source a SourceSpec opens.
type SourceKind int

const (
	// SourceEmbedded is the embedded Log in SourceSpec.Dir, opened for reading: it takes the
	// log's lock, and never applies retention. The log must exist.
	SourceEmbedded SourceKind = iota
	// SourceSegments is a broker's log directory (or the embedded log's directory) read in place
	// by a DirSource: no lock, never written, so a producer may append meanwhile.
	SourceSegments
	// SourceKafka is a Kafka cluster through a KafkaSource.
	SourceKafka
)

func (k SourceKind) String() string {
	switch k {
	case SourceEmbedded:
		return "embedded"
	case SourceSegments:
		return "segments"
	case SourceKafka:
		return "kafka"
	}
	return fmt.Sprintf("SourceKind(%d)", int(k))
}

// SourceSpec names a Source to open: one of the three implementations and what it needs.
// Commands and the server build one from their flags and call Open; nothing else chooses an
// implementation.
type SourceSpec struct {
	Kind SourceKind
	// Dir is the log's directory for SourceEmbedded and SourceSegments.
	Dir string
	// Brokers are the seed brokers (host:port) for SourceKafka.
	Brokers []string
	// Topic is the topic's name. Default "delivery_log".
	Topic string
	// Topics, when it names more than one, are the topics read together as one Topics: the local
	// one first (Topic is set to it), then the ones mirrored from the other datacenters
	// (dc2.delivery_log, …), all of the same partition count. Of a Kafka cluster or a broker's log
	// directory they are topics of it; of the embedded log, topic i > 0 is the embedded log in
	// EmbeddedTopicDir(Dir, name).
	Topics []string
	// KafkaFetchMaxBytes is the most bytes one Fetch of a Kafka source asks for
	// (KafkaOptions.FetchMaxBytes: scans, and targeted reads that bring along wanted batches).
	// Default 4 MiB.
	KafkaFetchMaxBytes int32
	// Logger is the source's logger, where it takes one. Default slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills in the defaults of unset fields.
func (s *SourceSpec) EnsureDefaults() *SourceSpec {
	if len(s.Topics) > 0 && s.Topics[0] != "" {
		s.Topic = s.Topics[0]
	}
	if s.Topic == "" {
		s.Topic = "delivery_log"
	}
	if len(s.Topics) <= 1 {
		s.Topics = nil
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	return s
}

// Validate reports a spec that names no source it could open.
func (s *SourceSpec) Validate() error {
	seen := map[string]bool{}
	for i, t := range s.Topics {
		if t == "" || len(t) > 249 || strings.ContainsAny(t, "/\\ ,") {
			return fmt.Errorf("topic %d of the list is %q: want a Kafka topic name (1 to 249 characters, no '/', ',' or spaces)", i+1, t)
		}
		if seen[t] {
			return fmt.Errorf("topic %q is listed twice", t)
		}
		seen[t] = true
	}
	switch s.Kind {
	case SourceEmbedded, SourceSegments:
		if s.Dir == "" {
			return fmt.Errorf("a %s source needs a directory", s.Kind)
		}
	case SourceKafka:
		if len(s.Brokers) == 0 {
			return errors.New("a kafka source needs brokers")
		}
	default:
		return fmt.Errorf("unknown source kind %v", s.Kind)
	}
	return nil
}

// String is the spec in the form of replayd's --source flag.
func (s SourceSpec) String() string {
	switch s.Kind {
	case SourceKafka:
		return "kafka=" + strings.Join(s.Brokers, ",")
	case SourceEmbedded, SourceSegments:
		return s.Kind.String() + "=" + s.Dir
	}
	return s.Kind.String()
}

// EmbeddedTopicDir is the directory of the embedded log of a mirrored topic beside the local
// one's, dir: "<dir>.<topic>" (DATA/log.dc2.delivery_log).
func EmbeddedTopicDir(dir, topic string) string { return dir + "." + topic }

// TopicNames are the topics the spec reads: Topics, else Topic alone.
func (s SourceSpec) TopicNames() []string {
	s.EnsureDefaults()
	if len(s.Topics) == 0 {
		return []string{s.Topic}
	}
	return s.Topics
}

// ForTopic is the spec of topic i of TopicNames alone.
func (s SourceSpec) ForTopic(i int) SourceSpec {
	names := s.TopicNames()
	t := s
	t.Topic, t.Topics = names[i], nil
	if s.Kind == SourceEmbedded && i > 0 {
		t.Dir = EmbeddedTopicDir(s.Dir, names[i])
	}
	return t
}

// Open opens the source the spec names: with several topics, a *Topics of them (a
// *TopicPartitionsError when their partition counts differ). The caller closes it. A failure
// returns a nil interface, never a typed nil.
func (s SourceSpec) Open(ctx context.Context) (Source, error) {
	s.EnsureDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if len(s.Topics) > 1 {
		var srcs []Source
		for i := range s.Topics {
			src, err := s.ForTopic(i).open(ctx)
			if err != nil {
				for _, o := range srcs {
					o.Close()
				}
				return nil, fmt.Errorf("topic %s: %w", s.Topics[i], err)
			}
			srcs = append(srcs, src)
		}
		t, err := NewTopics(ctx, srcs...)
		if err != nil {
			for _, o := range srcs {
				o.Close()
			}
			return nil, err
		}
		return t, nil
	}
	return s.open(ctx)
}

func (s SourceSpec) open(ctx context.Context) (Source, error) {
	switch s.Kind {
	case SourceEmbedded:
		// Open would create an empty log: reading a log that is not there is a mistake.
		if _, err := os.Stat(filepath.Join(s.Dir, "replay-log.json")); err != nil {
			return nil, fmt.Errorf("no embedded log in %s: %w", s.Dir, err)
		}
		// Retention -1: a reader never deletes from the log.
		l, err := Open(Options{Dir: s.Dir, Topic: s.Topic, Retention: -1, Logger: s.Logger})
		if err != nil {
			return nil, err
		}
		return l, nil
	case SourceSegments:
		src, err := OpenDir(DirOptions{Dir: s.Dir, Topic: s.Topic})
		if err != nil {
			return nil, err
		}
		return src, nil
	default: // SourceKafka
		src, err := NewKafkaSource(ctx, KafkaOptions{Brokers: s.Brokers, Topic: s.Topic, FetchMaxBytes: s.KafkaFetchMaxBytes})
		if err != nil {
			return nil, err
		}
		return src, nil
	}
}
