// Package kafkatest runs a real Apache Kafka for tests: a KRaft cluster of 1 or 3 combined
// broker+controller nodes, each a JVM started from the jars that fetch-kafka.sh copied from Maven
// Central into the cache.
//
// Getting Kafka: `bash engine/kafkatest/fetch-kafka.sh` (which ./test.sh runs) copies the runtime
// classpath named by maven/broker/pom.xml (kafka_2.13 and kafka-tools at KafkaVersion, log4j2 and
// its slf4j binding) into ${XDG_CACHE_HOME:-$HOME/.cache}/replay/kafka-<version>/lib, and
// MirrorMaker 2 (maven/mirror/pom.xml) beside it. Once fetched it works offline. REPLAY_KAFKA_LIB
// points the tests at another directory of jars. Tests that need Kafka fail, never skip, when
// the jars or Java are missing; the error names the fetch command.
//
// A cluster: Start formats each node's storage (kafka.tools.StorageTool format, a static
// controller.quorum.voters quorum), starts kafka.Kafka on free 127.0.0.1 ports in a temp dir
// with a small heap, and returns once the cluster answers Metadata listing every broker.
// Cluster.Stop (SIGTERM, then wait), Cluster.Kill (SIGKILL) and Cluster.Restart act on one node;
// Close kills them all and removes the dirs. Each node's output is in Node.Dir/server.log.
//
// No JVM outlives the test binary: every JVM is started with Pdeathsig SIGKILL from one OS
// thread locked for the life of the process (the signal fires when the creating thread exits,
// not the process), and Close, Main and t.Cleanup stop them on the normal paths.
//
// Sharing: a cluster takes seconds to start, so a test package starts one of each size once,
// lazily, with Shared, and tears them down in TestMain with Main:
//
//	func TestMain(m *testing.M) { kafkatest.Main(m) }
//
//	func TestX(t *testing.T) {
//		c := kafkatest.Shared(t, 3)
//		...
//	}
//
// Tests on a shared cluster use their own topics. Tests that stop or kill nodes start their own
// cluster with New (Start, closed when the test ends), or restart what they stopped before they
// end.
//
// Outside tests: Start and the Cluster's methods need no testing.T (the bench binary starts its
// broker with Start and closes it); only Shared, New and Main belong to tests.
//
// Running them: ./test.sh runs every test, Kafka's included; once the jars are fetched, plain
// `go test ./engine/...` does too.
package kafkatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KafkaVersion is the Kafka release maven/broker/pom.xml pins.
const KafkaVersion = "4.4.0"

// FetchCommand is the command that fetches the jars, for error messages.
const FetchCommand = "bash engine/kafkatest/fetch-kafka.sh"

// Main classes of the Kafka jars.
const (
	MainServer          = "kafka.Kafka"
	MainStorageTool     = "kafka.tools.StorageTool"
	MainDumpLogSegments = "org.apache.kafka.tools.DumpLogSegments"
	MainConsoleProducer = "org.apache.kafka.tools.ConsoleProducer"
)

// LibDir is the directory of the Kafka jars: $REPLAY_KAFKA_LIB, else the cache fetch-kafka.sh
// fills. It fails, naming the fetch command, when the directory holds no complete copy.
func LibDir() (string, error) {
	return libDir("REPLAY_KAFKA_LIB", "Kafka", "kafka_2.13-"+KafkaVersion+".jar", "kafka-"+KafkaVersion, KafkaVersion)
}

// libDir is the directory of a cached Maven classpath: $env when set (it must hold jar), else
// the cache directory name fetch-kafka.sh fills (complete when it holds .complete).
func libDir(env, what, jar, name, version string) (string, error) {
	if d := os.Getenv(env); d != "" {
		if _, err := os.Stat(filepath.Join(d, jar)); err != nil {
			return "", fmt.Errorf("kafkatest: %s=%s holds no %s: %w", env, d, jar, err)
		}
		return d, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("kafkatest: no cache directory for the %s jars (set %s): %w", what, env, err)
	}
	dir := filepath.Join(cache, "replay", name)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		return "", fmt.Errorf("kafkatest: the %s %s jars are not in %s: run `%s` (./test.sh does) to fetch them from Maven Central",
			what, version, dir, FetchCommand)
	}
	return filepath.Join(dir, "lib"), nil
}

// javaFlags keep a JVM small and quick to start: the tests' brokers hold little data.
var javaFlags = []string{
	"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto", "-XX:-UsePerfData",
	"-Djava.awt.headless=true",
}

// javaCommand is a java command running mainClass from the Kafka jars, with the JVM tied to this
// process (see startProcess). heap is -Xmx, e.g. "256m".
func javaCommand(heap, log4j string, mainClass string, args ...string) (*exec.Cmd, error) {
	lib, err := LibDir()
	if err != nil {
		return nil, err
	}
	return javaCommandIn(lib, heap, log4j, mainClass, args...)
}

// javaCommandIn is javaCommand with the jars of lib (MirrorMaker's are not the broker's).
func javaCommandIn(lib, heap, log4j string, mainClass string, args ...string) (*exec.Cmd, error) {
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, fmt.Errorf("kafkatest: java is not on the PATH (./test.sh installs it): %w", err)
	}
	argv := append([]string{"-Xmx" + heap}, javaFlags...)
	if log4j != "" {
		argv = append(argv, "-Dlog4j2.configurationFile="+log4j)
	}
	argv = append(argv, "-cp", filepath.Join(lib, "*"), mainClass)
	argv = append(argv, args...)
	cmd := exec.Command(java, argv...)
	setDeathSignal(cmd)
	return cmd, nil
}

// RunTool runs one of Kafka's command-line tools (mainClass, e.g. MainDumpLogSegments) to
// completion with stdin (nil: none) and returns its standard output and standard error. A
// non-zero exit is an error holding the tail of its standard error. The JVM dies with ctx and
// with this process.
func RunTool(ctx context.Context, stdin []byte, mainClass string, args ...string) (stdout, stderr []byte, err error) {
	cmd, err := javaCommand("256m", "", mainClass, args...)
	if err != nil {
		return nil, nil, err
	}
	var outBuf, errBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outBuf, &errBuf
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := startProcess(cmd); err != nil {
		return nil, nil, fmt.Errorf("kafkatest: start %s: %w", mainClass, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		err = ctx.Err()
	}
	if err != nil {
		err = fmt.Errorf("kafkatest: %s %s: %w\n%s", mainClass, strings.Join(args, " "), err, tail(errBuf.Bytes(), 4000))
	}
	return outBuf.Bytes(), errBuf.Bytes(), err
}

// spawner starts every JVM from one goroutine locked to its OS thread for the life of the
// process: Pdeathsig fires when the thread that forked the child exits, so a child started from
// an ordinary goroutine's thread could be killed whenever the Go runtime retires that thread.
var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

func startProcess(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the goroutine and its thread live forever
			for r := range spawnCh {
				r.err <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, err: make(chan error, 1)}
	spawnCh <- r
	return <-r.err
}

// Options configure a cluster. The zero value is a 1-node cluster.
type Options struct {
	// Nodes is the number of combined broker+controller nodes: 1 or 3. Default 1.
	Nodes int
	// Heap is each JVM's -Xmx. Default "320m".
	Heap string
	// Properties are added to (or override) every node's server.properties.
	Properties map[string]string
	// StartTimeout bounds the start of the cluster and of a restarted node. Default 90s.
	StartTimeout time.Duration
}

// Cluster is a running Kafka cluster.
type Cluster struct {
	ID    string // the KRaft cluster id
	Dir   string // the temp dir holding every node's dir
	Nodes []*Node
	o     Options

	mu     sync.Mutex
	closed bool
}

// Node is one broker+controller.
type Node struct {
	ID             int32
	Addr           string // the broker listener, host:port
	ControllerAddr string
	Dir            string // server.properties, log4j2.properties, server.log
	LogDir         string // log.dirs: the partition directories (<topic>-<p>/), meta.properties

	cluster *Cluster
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the running process has exited
	waitErr error
	logFile *os.File
}

// Start formats and starts a cluster and waits until it answers Metadata with every broker.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Nodes == 0 {
		o.Nodes = 1
	}
	if o.Nodes != 1 && o.Nodes != 3 {
		return nil, fmt.Errorf("kafkatest: %d nodes: want 1 or 3", o.Nodes)
	}
	if o.Heap == "" {
		o.Heap = "320m"
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 90 * time.Second
	}
	if _, err := LibDir(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()
	// A port found free can be taken before the JVM binds it: then start again on others.
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(2 * o.Nodes)
		if err != nil {
			return nil, err
		}
		c, err := start(ctx, o, ports)
		if err == nil || !errors.Is(err, errBind) || attempt == 3 {
			return c, err
		}
	}
}

// errBind marks a start that failed because a node could not bind its ports.
var errBind = errors.New("kafkatest: a node could not bind its port")

// start starts a cluster whose nodes listen on ports: node i's broker on ports[2i], its
// controller on ports[2i+1].
func start(ctx context.Context, o Options, ports []int) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "kafkatest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{ID: newClusterID(), Dir: dir, o: o}
	var voters []string
	for i := 0; i < o.Nodes; i++ {
		n := &Node{
			ID:             int32(i + 1),
			Addr:           net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i])),
			ControllerAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i+1])),
			Dir:            filepath.Join(dir, fmt.Sprintf("node-%d", i+1)),
			cluster:        c,
		}
		n.LogDir = filepath.Join(n.Dir, "data")
		voters = append(voters, fmt.Sprintf("%d@%s", n.ID, n.ControllerAddr))
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := n.configure(strings.Join(voters, ",")); err != nil {
			c.Close()
			return nil, err
		}
	}
	// Format all nodes at once: each StorageTool is a JVM start.
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Go(func() {
			_, _, errs[i] = RunTool(ctx, nil, MainStorageTool, "format", "--config", n.propsPath(), "--cluster-id", c.ID)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, fmt.Errorf("kafkatest: format storage: %w", err)
	}
	for _, n := range c.Nodes {
		if err := n.start(); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.waitReady(ctx, c.Nodes); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// newClusterID is a random KRaft cluster id: 16 bytes, base64url without padding, as
// `kafka-storage random-uuid` prints. Like Kafka's Uuid.randomUuid it never starts with '-':
// StorageTool would read "--cluster-id -x…" as another option and fail (1 start in 64).
func newClusterID() string {
	for {
		var b [16]byte
		rand.Read(b[:])
		if id := base64.RawURLEncoding.EncodeToString(b[:]); id[0] != '-' {
			return id
		}
	}
}

// freePorts reserves n distinct free ports on 127.0.0.1 and releases them for the brokers. They
// are taken below the kernel's ephemeral range where possible, so that no outgoing connection
// (of another cluster, say) takes one as its local port before the broker binds it.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	low := ephemeralLow()
	var ports []int
	for tries := 0; len(ports) < n && tries < 200 && low > 20000; tries++ {
		port := 10000 + mrand.IntN(low-10000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, port)
	}
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kafkatest: a free port on 127.0.0.1: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux), 0 when unknown.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	low, _ := strconv.Atoi(f[0])
	return low
}

func (n *Node) propsPath() string { return filepath.Join(n.Dir, "server.properties") }

// configure writes the node's server.properties and log4j2.properties.
func (n *Node) configure(voters string) error {
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return err
	}
	rf := strconv.Itoa(len(n.cluster.Nodes))
	props := map[string]string{
		"process.roles":                            "broker,controller",
		"node.id":                                  strconv.Itoa(int(n.ID)),
		"controller.quorum.voters":                 voters,
		"listeners":                                "PLAINTEXT://" + n.Addr + ",CONTROLLER://" + n.ControllerAddr,
		"advertised.listeners":                     "PLAINTEXT://" + n.Addr,
		"controller.listener.names":                "CONTROLLER",
		"inter.broker.listener.name":               "PLAINTEXT",
		"listener.security.protocol.map":           "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"log.dirs":                                 n.LogDir,
		"auto.create.topics.enable":                "false",
		"num.partitions":                           "1",
		"default.replication.factor":               rf,
		"offsets.topic.replication.factor":         rf,
		"offsets.topic.num.partitions":             "1",
		"transaction.state.log.replication.factor": rf,
		"transaction.state.log.min.isr":            "1",
		"transaction.state.log.num.partitions":     "1",
		"group.initial.rebalance.delay.ms":         "0",
		// Test data carries timestamps far from now: accept them as a broker of Kafka 3 did, and
		// keep them: with the default 7-day retention the broker's first retention check (30 s
		// after its start) deleted such segments, the active one included, under a test that
		// was still reading them (a loaded machine's flake of the live-broker DirSource test).
		"log.retention.ms":                    "-1",
		"log.message.timestamp.before.max.ms": strconv.FormatInt(1<<63-1, 10),
		"log.message.timestamp.after.max.ms":  strconv.FormatInt(1<<63-1, 10),
		"num.network.threads":                 "2",
		"num.io.threads":                      "2",
		"num.recovery.threads.per.data.dir":   "1",
		"log.cleaner.enable":                  "false",
		// Brokers are unfenced on a heartbeat, and a restarted broker may register again only once
		// its old session has expired: beat often and expire sooner than the defaults (2s, 9s).
		"broker.heartbeat.interval.ms":                     "500",
		"broker.session.timeout.ms":                        "4500",
		"share.coordinator.state.topic.replication.factor": rf,
		"share.coordinator.state.topic.min.isr":            "1",
	}
	for k, v := range n.cluster.o.Properties {
		props[k] = v
	}
	if err := writeProperties(n.propsPath(), props); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.Dir, "log4j2.properties"), []byte(log4jConfig), 0o644)
}

// writeProperties writes props to path as a Java properties file, keys sorted.
func writeProperties(path string, props map[string]string) error {
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, props[k])
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// log4jConfig logs warnings and Kafka's start and stop lines to the node's server.log.
const log4jConfig = `status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
`

// start starts the node's JVM; its output is appended to server.log.
func (n *Node) start() error {
	cmd, err := javaCommand(n.cluster.o.Heap, filepath.Join(n.Dir, "log4j2.properties"), MainServer, n.propsPath())
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(n.Dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := startProcess(cmd); err != nil {
		f.Close()
		return fmt.Errorf("kafkatest: start node %d: %w", n.ID, err)
	}
	n.cmd, n.logFile, n.exited, n.waitErr = cmd, f, make(chan struct{}), nil
	exited := n.exited
	go func() {
		err := cmd.Wait()
		f.Close()
		n.waitErr = err
		close(exited)
	}()
	return nil
}

// Running says whether the node's JVM is running.
func (n *Node) Running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Pid is the node's JVM process id, 0 when none was started.
func (n *Node) Pid() int {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Log is the tail of the node's server.log, for failure messages.
func (n *Node) Log() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "server.log"))
	return string(tail(b, 6000))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Bootstrap are the running brokers' addresses.
func (c *Cluster) Bootstrap() []string {
	var addrs []string
	for _, n := range c.Nodes {
		if n.Running() {
			addrs = append(addrs, n.Addr)
		}
	}
	return addrs
}

// Client is a franz-go client of the cluster with opts added, closed by the caller.
func (c *Cluster) Client(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.Bootstrap()...)}, opts...)...)
}

// waitReady waits until each of nodes answers Metadata listing every running node as a broker.
func (c *Cluster) waitReady(ctx context.Context, nodes []*Node) error {
	want := map[int32]bool{}
	for _, n := range c.Nodes {
		if n.Running() {
			want[n.ID] = true
		}
	}
	for _, n := range nodes {
		if err := n.waitReady(ctx, want); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) waitReady(ctx context.Context, want map[int32]bool) error {
	var last error
	for {
		m, err := n.metadata(ctx)
		if err == nil && (m.ClusterID == nil || *m.ClusterID != n.cluster.ID) {
			// Another cluster's broker holds the port (one of another test package, started
			// after freePorts released it): this node cannot bind it and will exit, and its
			// "Address already in use" makes Start try other ports. Never take the foreign
			// broker's answer for this cluster's.
			id := "<none>"
			if m.ClusterID != nil {
				id = *m.ClusterID
			}
			m, err = nil, fmt.Errorf("%s is answered by cluster %s, not this cluster %s", n.Addr, id, n.cluster.ID)
		}
		if err == nil {
			got := map[int32]bool{}
			for _, b := range m.Brokers {
				got[b.NodeID] = true
			}
			missing := []string{}
			for id := range want {
				if !got[id] {
					missing = append(missing, strconv.Itoa(int(id)))
				}
			}
			if len(missing) == 0 {
				return nil
			}
			sort.Strings(missing)
			err = fmt.Errorf("brokers %s not yet registered", strings.Join(missing, ","))
		}
		last = err
		select {
		case <-n.exited:
			log := n.Log()
			err := fmt.Errorf("kafkatest: node %d exited during start (%v); %s:\n%s", n.ID, n.waitErr, filepath.Join(n.Dir, "server.log"), log)
			if strings.Contains(log, "Address already in use") {
				err = fmt.Errorf("%w: %w", errBind, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("kafkatest: node %d (%s) not ready: %v (last: %v); %s:\n%s", n.ID, n.Addr, ctx.Err(), last, filepath.Join(n.Dir, "server.log"), n.Log())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// metadata asks this node, and no other, for the cluster's metadata (topics: nil, all of them).
func (n *Node) metadata(ctx context.Context, topics ...string) (*kmsg.MetadataResponse, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.Addr), kgo.RequestRetries(0), kgo.DialTimeout(time.Second))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	if topics == nil {
		req.Topics = []kmsg.MetadataRequestTopic{} // none: brokers only
	}
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl.SeedBrokers()[0])
	if err != nil {
		return nil, fmt.Errorf("metadata from node %d (%s): %w", n.ID, n.Addr, err)
	}
	return resp, nil
}

// Stop stops node i (an index into Nodes) with SIGTERM, a controlled shutdown, and waits for it
// to exit; after timeout it is killed and Stop reports that.
func (c *Cluster) Stop(i int, timeout time.Duration) error {
	n := c.Nodes[i]
	if !n.Running() {
		return nil
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
		return nil
	case <-time.After(timeout):
		n.cmd.Process.Kill()
		<-n.exited
		return fmt.Errorf("kafkatest: node %d did not stop within %v of SIGTERM: killed", n.ID, timeout)
	}
}

// Kill kills node i with SIGKILL and waits for it to exit.
func (c *Cluster) Kill(i int) {
	n := c.Nodes[i]
	if !n.Running() {
		return
	}
	n.cmd.Process.Kill()
	<-n.exited
}

// Restart starts node i again (after Stop or Kill; it is killed first if running) with the same
// ports and directories, and waits until it answers Metadata listing every running broker.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	c.Kill(i)
	n := c.Nodes[i]
	if err := n.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.StartTimeout)
	defer cancel()
	return c.waitReady(ctx, []*Node{n})
}

// Close kills every node (the cluster's data is thrown away, so no controlled shutdown) and
// removes the cluster's directory. It is idempotent.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	for i := range c.Nodes {
		c.Kill(i)
	}
	os.RemoveAll(c.Dir)
}
