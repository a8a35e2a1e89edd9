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
	// Logger is the source's logger, where it takes one. Default slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills in the defaults of unset fields.
func (s *SourceSpec) EnsureDefaults() *SourceSpec {
	if s.Topic == "" {
		s.Topic = "delivery_log"
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	return s
}

// Validate reports a spec that names no source it could open.
func (s *SourceSpec) Validate() error {
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

// Open opens the source the spec names. The caller closes it. A failure returns a nil
// interface, never a typed nil.
func (s SourceSpec) Open(ctx context.Context) (Source, error) {
	s.EnsureDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
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
		src, err := NewKafkaSource(ctx, KafkaOptions{Brokers: s.Brokers, Topic: s.Topic})
		if err != nil {
			return nil, err
		}
		return src, nil
	}
}
