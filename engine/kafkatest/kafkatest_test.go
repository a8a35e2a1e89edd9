package kafkatest_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/replay/replay/engine/kafkatest"
)

func TestMain(m *testing.M) {
	if os.Getenv("KAFKATEST_ORPHAN") == "1" {
		orphan()
		return
	}
	kafkatest.Main(m)
}

// roundTrip produces n records into a new topic and consumes them back.
func roundTrip(t *testing.T, c *kafkatest.Cluster, topic string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.CreateTopic(ctx, topic, 2, 0, nil); err != nil {
		t.Fatal(err)
	}
	cl, err := c.Client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := 0; i < n; i++ {
		r := &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: []byte(fmt.Sprint("v", i))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d to %s: %v", i, topic, err)
		}
	}
	seen := map[string]string{}
	for len(seen) < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume %s: %v (%d of %d records)", topic, err, len(seen), n)
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Key)] = string(r.Value) })
	}
	for i := 0; i < n; i++ {
		if v := seen[strconv.Itoa(i)]; v != fmt.Sprint("v", i) {
			t.Fatalf("record %d: value %q", i, v)
		}
	}
}

func TestOneNode(t *testing.T) {
	c := kafkatest.Shared(t, 1)
	if len(c.Bootstrap()) != 1 {
		t.Fatalf("bootstrap %v", c.Bootstrap())
	}
	if _, err := os.Stat(c.Nodes[0].LogDir + "/meta.properties"); err != nil {
		t.Fatalf("log dir: %v", err)
	}
	roundTrip(t, c, "one", 20)
	if _, err := os.Stat(c.Nodes[0].LogDir + "/one-0"); err != nil {
		t.Fatalf("partition dir in the log dir: %v", err)
	}
}

// TestThreeNodes stops, kills and restarts brokers of a 3-node cluster, which keeps serving a
// topic replicated on all three.
func TestThreeNodes(t *testing.T) {
	c := kafkatest.Shared(t, 3)
	if len(c.Bootstrap()) != 3 {
		t.Fatalf("bootstrap %v", c.Bootstrap())
	}
	roundTrip(t, c, "three", 20)
	ctx := context.Background()

	start := time.Now()
	if err := c.Stop(2, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGTERM stop of node 3: %v", time.Since(start))
	if c.Nodes[2].Running() || len(c.Bootstrap()) != 2 {
		t.Fatalf("node 3 still running after Stop")
	}
	roundTrip(t, c, "three-stopped", 5)
	start = time.Now()
	if err := c.Restart(ctx, 2); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart of node 3: %v", time.Since(start))

	c.Kill(1)
	if c.Nodes[1].Running() {
		t.Fatalf("node 2 still running after Kill")
	}
	start = time.Now()
	if err := c.Restart(ctx, 1); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart of node 2 after SIGKILL: %v", time.Since(start))
	roundTrip(t, c, "three-restarted", 5)
}

func TestStartTimes(t *testing.T) {
	for _, n := range []int{1, 3} {
		start := time.Now()
		c, err := kafkatest.Start(context.Background(), kafkatest.Options{Nodes: n})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d-node cluster ready in %v", n, time.Since(start))
		c.Close()
		for _, nd := range c.Nodes {
			if nd.Running() || alive(nd.Pid()) {
				t.Fatalf("node %d (pid %d) running after Close", nd.ID, nd.Pid())
			}
		}
		if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
			t.Fatalf("cluster dir %s left after Close: %v", c.Dir, err)
		}
	}
}

// alive says whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// orphan is the child of TestKilledTestLeavesNoJVM: it starts a cluster, prints its JVM's pid and
// waits to be killed.
func orphan() {
	c, err := kafkatest.Start(context.Background(), kafkatest.Options{Nodes: 1})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("pid", c.Nodes[0].Pid(), c.Dir)
	select {}
}

// TestKilledTestLeavesNoJVM SIGKILLs a test binary that runs a cluster: its JVM must die too.
func TestKilledTestLeavesNoJVM(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KAFKATEST_ORPHAN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	var pid int
	var dir string
	if _, err := fmt.Sscanf(line, "pid %d %s", &pid, &dir); err != nil {
		t.Fatalf("child said %q", line)
	}
	defer os.RemoveAll(dir)
	if !alive(pid) {
		t.Fatalf("the child's JVM %d is not running", pid)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	deadline := time.Now().Add(15 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("JVM %d still running 15s after its test binary was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMissingJars(t *testing.T) {
	t.Setenv("REPLAY_KAFKA_LIB", t.TempDir())
	_, err := kafkatest.Start(context.Background(), kafkatest.Options{})
	if err == nil || !strings.Contains(err.Error(), "REPLAY_KAFKA_LIB") {
		t.Fatalf("Start without jars: %v", err)
	}
	t.Setenv("REPLAY_KAFKA_LIB", "")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	_, err = kafkatest.Start(context.Background(), kafkatest.Options{})
	if err == nil || !strings.Contains(err.Error(), kafkatest.FetchCommand) {
		t.Fatalf("Start without jars: %v, want an error naming %q", err, kafkatest.FetchCommand)
	}
}
