package kafkatest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// MirrorVersion is the connect-mirror release maven/mirror/pom.xml pins: the newest published
// (there is none of KafkaVersion), speaking the same protocol to the brokers.
const MirrorVersion = "4.3.1"

// MainMirrorMaker is MirrorMaker 2's dedicated-mode main class.
const MainMirrorMaker = "org.apache.kafka.connect.mirror.MirrorMaker"

// MirrorLibDir is the directory of MirrorMaker 2's jars: $REPLAY_MIRROR_LIB, else the cache
// fetch-kafka.sh fills beside the broker's. It fails, naming the fetch command, when the
// directory holds no complete copy.
func MirrorLibDir() (string, error) {
	return libDir("REPLAY_MIRROR_LIB", "MirrorMaker", "connect-mirror-"+MirrorVersion+".jar", "connect-mirror-"+MirrorVersion, MirrorVersion)
}

// MirrorOptions configure a MirrorMaker 2.
type MirrorOptions struct {
	// Clusters are the clusters by alias (dc1, dc2): every one is replicated into every other
	// (A->B and B->A enabled), with DefaultReplicationPolicy: in B, A's topic T is "A.T".
	Clusters map[string]*Cluster
	// Topics is the regular expression of the topics replicated. Default "delivery_log".
	Topics string
	// Properties are added to (or override) mm2.properties.
	Properties map[string]string
	// Heap is the JVM's -Xmx. Default "384m".
	Heap string
}

// MirrorMaker is a running MirrorMaker 2 (dedicated mode, its own JVM).
type MirrorMaker struct {
	Dir string // mm2.properties, log4j2.properties, mirror.log
	cmd *exec.Cmd

	exited  chan struct{}
	waitErr error
}

// MirrorProperties are the mm2.properties a MirrorMaker of o runs with: what the tests and
// ARCHITECTURE.md's two-datacenter section describe.
func MirrorProperties(o MirrorOptions) map[string]string {
	if o.Topics == "" {
		o.Topics = "delivery_log"
	}
	aliases := make([]string, 0, len(o.Clusters))
	for a := range o.Clusters {
		aliases = append(aliases, a)
	}
	sort.Strings(aliases)
	rf := "1"
	for _, c := range o.Clusters {
		if len(c.Nodes) < 3 {
			rf = "1"
			break
		}
		rf = "3"
	}
	props := map[string]string{
		"clusters":                 strings.Join(aliases, ", "),
		"replication.policy.class": "org.apache.kafka.connect.mirror.DefaultReplicationPolicy",
		// Replicated topics and MirrorMaker's own (its Connect worker's configs, offsets and
		// status, heartbeats, checkpoints, offset syncs) at the clusters' size.
		"replication.factor":                    rf,
		"config.storage.replication.factor":     rf,
		"offset.storage.replication.factor":     rf,
		"status.storage.replication.factor":     rf,
		"heartbeats.topic.replication.factor":   rf,
		"checkpoints.topic.replication.factor":  rf,
		"offset-syncs.topic.replication.factor": rf,
		// A topic created at the source is noticed within a second (default 10 minutes), and
		// MirrorMaker starts reading a new topic at its beginning.
		"refresh.topics.interval.seconds":  "1",
		"sync.topic.configs.enabled":       "true",
		"sync.topic.acls.enabled":          "false", // the test clusters have no authorizer
		"emit.checkpoints.enabled":         "false", // no consumer groups to translate
		"sync.group.offsets.enabled":       "false",
		"refresh.groups.enabled":           "false",
		"emit.heartbeats.interval.seconds": "1",
		"tasks.max":                        "1",
		"offset.flush.interval.ms":         "1000",
	}
	for _, a := range aliases {
		props[a+".bootstrap.servers"] = strings.Join(o.Clusters[a].Bootstrap(), ",")
		// The replicas are the source records (key, value, headers, timestamp, partition) in
		// batches of MirrorMaker's own producer into a: lz4, its own offsets.
		props[a+".producer.compression.type"] = "lz4"
		props[a+".producer.linger.ms"] = "5"
		for _, b := range aliases {
			if a != b {
				props[a+"->"+b+".enabled"] = "true"
				props[a+"->"+b+".topics"] = o.Topics
			}
		}
	}
	for k, v := range o.Properties {
		props[k] = v
	}
	return props
}

// StartMirror writes mm2.properties and starts MirrorMaker 2. It returns once the JVM runs; a
// replica appears in the other cluster seconds later (WaitTopic waits for the first).
func StartMirror(ctx context.Context, o MirrorOptions) (*MirrorMaker, error) {
	if len(o.Clusters) < 2 {
		return nil, fmt.Errorf("kafkatest: MirrorMaker needs two clusters, got %d", len(o.Clusters))
	}
	if o.Heap == "" {
		o.Heap = "384m"
	}
	lib, err := MirrorLibDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kafkatest-mirror-")
	if err != nil {
		return nil, err
	}
	propsPath := filepath.Join(dir, "mm2.properties")
	if err := writeProperties(propsPath, MirrorProperties(o)); err != nil {
		return nil, err
	}
	log4j := filepath.Join(dir, "log4j2.properties")
	if err := os.WriteFile(log4j, []byte(mirrorLog4j), 0o644); err != nil {
		return nil, err
	}
	cmd, err := javaCommandIn(lib, o.Heap, log4j, MainMirrorMaker, propsPath)
	if err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "mirror.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := startProcess(cmd); err != nil {
		f.Close()
		return nil, fmt.Errorf("kafkatest: start MirrorMaker: %w", err)
	}
	m := &MirrorMaker{Dir: dir, cmd: cmd, exited: make(chan struct{})}
	go func() {
		m.waitErr = cmd.Wait()
		f.Close()
		close(m.exited)
	}()
	return m, nil
}

// mirrorLog4j logs warnings and MirrorMaker's own lifecycle to mirror.log.
const mirrorLog4j = `status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.mm.name = org.apache.kafka.connect.mirror.MirrorMaker
logger.mm.level = INFO
`

// Log is the tail of mirror.log, for failure messages.
func (m *MirrorMaker) Log() string {
	b, _ := os.ReadFile(filepath.Join(m.Dir, "mirror.log"))
	return string(tail(b, 8000))
}

// Running says whether MirrorMaker's JVM is running.
func (m *MirrorMaker) Running() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// WaitTopic waits until c has topic (a replica MirrorMaker creates) with partitions
// partitions, or MirrorMaker exits, or ctx ends.
func (m *MirrorMaker) WaitTopic(ctx context.Context, c *Cluster, topic string, partitions int) error {
	for {
		md, err := c.Nodes[0].metadata(ctx, topic)
		if err == nil && len(md.Topics) == 1 && md.Topics[0].ErrorCode == 0 && len(md.Topics[0].Partitions) == partitions {
			return nil
		}
		select {
		case <-m.exited:
			return fmt.Errorf("kafkatest: MirrorMaker exited (%v) before %s appeared; %s:\n%s", m.waitErr, topic, filepath.Join(m.Dir, "mirror.log"), m.Log())
		case <-ctx.Done():
			return fmt.Errorf("kafkatest: %s did not appear: %w; %s:\n%s", topic, ctx.Err(), filepath.Join(m.Dir, "mirror.log"), m.Log())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops MirrorMaker (SIGTERM, then SIGKILL after 10 s) and removes its directory. It is
// idempotent.
func (m *MirrorMaker) Close() error {
	if m.Running() {
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(10 * time.Second):
			m.cmd.Process.Kill()
			<-m.exited
		}
	}
	var err error
	if m.Dir != "" {
		err = os.RemoveAll(m.Dir)
		m.Dir = ""
	}
	return err
}
