package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/replay/replay/engine"
)

// sourceFlags choose where the delivery_log is read: the embedded log under --data, a broker's
// log directory read in place, or a Kafka cluster. Commands register them with addSourceFlags
// and open the source with openSource.
type sourceFlags struct {
	data        string // data directory; the embedded log is DATA/log
	source      string // embedded | segments[=DIR] | kafka[=BROKERS]
	segmentsDir string
	brokers     string
	topic       string
	topics      string // the local topic, then the mirrored ones; empty: --topic alone
	fetchBytes  int32  // --kafka-fetch-max-bytes
}

const sourceFlagsHelp = `The delivery_log is read from --source:
  embedded          the embedded log in DATA/log, which 'loadgen produce' and 'replayd demo'
                    append to and 'replayd serve' reads in place. Opening it takes its lock:
                    while a producer runs, read the same files with --source segments=DATA/log.
  segments=DIR      a Kafka broker's log directory (one of its log.dirs, holding
                    <topic>-<partition> directories), read in place and never written;
                    also --source segments --segments-dir DIR.
  kafka=BROKERS     a Kafka cluster, BROKERS a comma-separated host:port list;
                    also --source kafka --kafka-brokers BROKERS.`

// addSourceFlags registers --data, --source, --segments-dir, --kafka-brokers, --topic and
// --topics.
func addSourceFlags(fs *pflag.FlagSet, f *sourceFlags) {
	fs.StringVar(&f.data, "data", "./data", "data directory: the embedded log is DATA/log, the index lives under DATA")
	fs.StringVar(&f.source, "source", "embedded", "where the delivery_log is read: embedded, segments=DIR or kafka=BROKERS")
	fs.StringVar(&f.segmentsDir, "segments-dir", "", "broker log directory for --source segments")
	fs.StringVar(&f.brokers, "kafka-brokers", "", "comma-separated seed brokers (host:port) for --source kafka")
	fs.StringVar(&f.topic, "topic", "delivery_log", "topic name")
	fs.Int32Var(&f.fetchBytes, "kafka-fetch-max-bytes", 4<<20, "most bytes one Fetch from Kafka asks for (a consumer's fetch.max.bytes): scans, and targeted reads that bring wanted batches along together")
	fs.StringVar(&f.topics, "topics", "", "comma-separated topics read together, the local one first, then the ones MirrorMaker 2 copies from the other datacenters (delivery_log,dc2.delivery_log); all must have the same partition count. Of the embedded log, a mirrored topic is the log in DATA/log.<topic>. Default: --topic alone")
}

// topicList is the --topics list, or --topic alone; both given, they must agree on the first.
func (f *sourceFlags) topicList() (topic string, topics []string, err error) {
	if f.topics == "" {
		return f.topic, nil, nil
	}
	for _, t := range strings.Split(f.topics, ",") {
		topics = append(topics, strings.TrimSpace(t))
	}
	if f.topic != "delivery_log" && f.topic != topics[0] {
		return "", nil, fmt.Errorf("--topic %s and --topics %s name different local topics (the first of --topics is the local one)", f.topic, f.topics)
	}
	return topics[0], topics, nil
}

// spec turns the flags into the source they name.
func (f *sourceFlags) spec() (engine.SourceSpec, error) {
	spec, err := f.kindSpec()
	if err != nil {
		return spec, err
	}
	if spec.Topic, spec.Topics, err = f.topicList(); err != nil {
		return spec, err
	}
	if err := spec.Validate(); err != nil {
		return spec, fmt.Errorf("--topics: %w", err)
	}
	return spec, nil
}

// kindSpec is the spec of --source and its directory or brokers.
func (f *sourceFlags) kindSpec() (engine.SourceSpec, error) {
	kind, arg, hasArg := strings.Cut(f.source, "=")
	switch kind {
	case "embedded":
		if hasArg {
			return engine.SourceSpec{}, fmt.Errorf("--source embedded takes no argument (the log is in --data %s)", f.data)
		}
		return engine.SourceSpec{Kind: engine.SourceEmbedded, Dir: filepath.Join(f.data, "log"), Topic: f.topic}, nil
	case "segments":
		dir := f.segmentsDir
		if hasArg {
			if dir != "" && dir != arg {
				return engine.SourceSpec{}, errors.New("--source segments=DIR and --segments-dir name different directories")
			}
			dir = arg
		}
		if dir == "" {
			return engine.SourceSpec{}, errors.New("--source segments needs a directory: --source segments=DIR or --segments-dir DIR")
		}
		return engine.SourceSpec{Kind: engine.SourceSegments, Dir: dir, Topic: f.topic}, nil
	case "kafka":
		brokers := f.brokers
		if hasArg {
			if brokers != "" && brokers != arg {
				return engine.SourceSpec{}, errors.New("--source kafka=BROKERS and --kafka-brokers name different brokers")
			}
			brokers = arg
		}
		var list []string
		for _, b := range strings.Split(brokers, ",") {
			if b = strings.TrimSpace(b); b != "" {
				list = append(list, b)
			}
		}
		if len(list) == 0 {
			return engine.SourceSpec{}, errors.New("--source kafka needs brokers: --source kafka=host:9092,... or --kafka-brokers")
		}
		if f.fetchBytes <= 0 {
			return engine.SourceSpec{}, fmt.Errorf("--kafka-fetch-max-bytes %d: want a positive number of bytes", f.fetchBytes)
		}
		return engine.SourceSpec{Kind: engine.SourceKafka, Brokers: list, Topic: f.topic, KafkaFetchMaxBytes: f.fetchBytes}, nil
	}
	return engine.SourceSpec{}, fmt.Errorf("--source %q: want embedded, segments=DIR or kafka=BROKERS", f.source)
}

// openSource opens the source the flags name. The caller closes it.
func openSource(ctx context.Context, f *sourceFlags) (engine.Source, error) {
	spec, err := f.spec()
	if err != nil {
		return nil, err
	}
	src, err := spec.Open(ctx)
	if errors.Is(err, os.ErrNotExist) && spec.Kind == engine.SourceEmbedded {
		return nil, fmt.Errorf("%w (is --data right?)", err)
	}
	return src, err
}
