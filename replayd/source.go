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

// addSourceFlags registers --data, --source, --segments-dir, --kafka-brokers and --topic.
func addSourceFlags(fs *pflag.FlagSet, f *sourceFlags) {
	fs.StringVar(&f.data, "data", "./data", "data directory: the embedded log is DATA/log, the index lives under DATA")
	fs.StringVar(&f.source, "source", "embedded", "where the delivery_log is read: embedded, segments=DIR or kafka=BROKERS")
	fs.StringVar(&f.segmentsDir, "segments-dir", "", "broker log directory for --source segments")
	fs.StringVar(&f.brokers, "kafka-brokers", "", "comma-separated seed brokers (host:port) for --source kafka")
	fs.StringVar(&f.topic, "topic", "delivery_log", "topic name")
}

// spec turns the flags into the source they name.
func (f *sourceFlags) spec() (engine.SourceSpec, error) {
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
		return engine.SourceSpec{Kind: engine.SourceKafka, Brokers: list, Topic: f.topic}, nil
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
