package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/kafkatest"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/mysqlapp"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/mysqljob"
	"github.com/replay/replay/replayd/mysqldb/mysqldbtest"
	"github.com/replay/replay/replayd/receiver"
	"github.com/replay/replay/replayd/testwait"
)

// realEvent is one event produced for a webhook of the real-Kafka test.
type realEvent struct {
	body   string
	ts     int64
	offset int64 // of its first copy
}

// realWebhook is a registered webhook with its own sink and the events produced for it.
type realWebhook struct {
	name   string
	wh     *app.Webhook
	sink   *receiver.Sink
	events []*realEvent // unique events in log order (by the offset of the first copy)
}

func (w *realWebhook) key() string { return strconv.FormatInt(w.wh.ID, 10) }

// instance is a `replayd serve` child process and the address of its API.
type instance struct {
	cmd  *exec.Cmd
	addr string
}

// killHolder SIGKILLs the instance whose worker holds j and returns its index.
func killHolder(t *testing.T, insts []*instance, j *job.Job) int {
	t.Helper()
	for i, in := range insts {
		if strings.Contains(j.LeaseOwner, ":"+strconv.Itoa(in.cmd.Process.Pid)+"/") {
			in.cmd.Process.Signal(syscall.SIGKILL)
			in.cmd.Wait()
			return i
		}
	}
	t.Fatalf("job %d: lease owner %q is none of the instances", j.ID, j.LeaseOwner)
	return -1
}

// realJobs asks the instances for replays with an app's token and follows the jobs in the job
// store they share: the real-Kafka and two-datacenter end-to-end tests.
type realJobs struct {
	t     *testing.T
	token string
	jobs  job.Driver
}

// request asks the instance at addr to replay w's window [from, to) and returns the new job's id.
func (r realJobs) request(addr string, w *realWebhook, from, to time.Time) int64 {
	r.t.Helper()
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/1.1/account_activity/replay/webhooks/%d/subscriptions/all.json?from_date=%s&to_date=%s",
		addr, w.wh.ID, from.Format("200601021504"), to.Format("200601021504")), nil)
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("replay request for %s: %v", w.name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		r.t.Fatalf("replay request for %s: %s", w.name, resp.Status)
	}
	list, err := r.jobs.List(r.t.Context(), job.ListParams{WebhookID: w.wh.ID})
	if err != nil || len(list.Jobs) == 0 {
		r.t.Fatalf("jobs of %s: %+v, %v", w.name, list, err)
	}
	return list.Jobs[0].ID
}

func (r realJobs) get(id int64) *job.Job {
	r.t.Helper()
	j, err := r.jobs.Get(r.t.Context(), job.GetParams{ID: id})
	if err != nil {
		r.t.Fatal(err)
	}
	return j
}

// waitStatus waits up to 3 minutes for job id's replay_job_status event at w.
func (r realJobs) waitStatus(w *realWebhook, id int64) receiver.Status {
	r.t.Helper()
	wctx, cancel := context.WithTimeout(r.t.Context(), 3*time.Minute)
	defer cancel()
	st, err := w.sink.WaitStatus(wctx, strconv.FormatInt(id, 10))
	if err != nil {
		j, _ := r.jobs.Get(r.t.Context(), job.GetParams{ID: id})
		r.t.Fatalf("%s: waiting for the status event of job %d (%+v): %v", w.name, id, j, err)
	}
	return st
}

// realWebhooks creates an app in the MySQL app store at dsn and, for each name, a verifying
// receiver registered as one of its webhooks (valid, at path /name). It returns the app's token.
func realWebhooks(t *testing.T, dsn, appName string, names ...string) (string, []*realWebhook) {
	t.Helper()
	ctx := t.Context()
	apps, err := mysqlapp.Open(ctx, mysqlapp.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer apps.Close()
	created, err := apps.CreateApp(ctx, app.CreateAppParams{Name: appName})
	if err != nil {
		t.Fatal(err)
	}
	var hooks []*realWebhook
	for _, name := range names {
		w := &realWebhook{name: name, sink: receiver.New(created.App.Secret, nil)}
		hs := httptest.NewServer(w.sink)
		t.Cleanup(hs.Close)
		if w.wh, err = apps.CreateWebhook(ctx, app.CreateWebhookParams{AppID: created.App.ID, URL: hs.URL + "/" + name, Valid: true}); err != nil {
			t.Fatal(err)
		}
		hooks = append(hooks, w)
	}
	return created.Token, hooks
}

// want is the webhook's unique events in [from, to), in log order.
func (w *realWebhook) want(from, to time.Time) []*realEvent {
	var out []*realEvent
	for _, e := range w.events {
		if e.ts >= from.UnixMilli() && e.ts < to.UnixMilli() {
			out = append(out, e)
		}
	}
	return out
}

// counts is how often each body arrived at the webhook's sink, the status events left out.
func (w *realWebhook) counts() map[string]int {
	n := map[string]int{}
	for _, d := range w.sink.Deliveries() {
		if d.Status == nil {
			n[string(d.Body)]++
		}
	}
	return n
}

// checkAtLeastOnce fails unless every wanted event arrived, nothing else did, and every event that
// arrived more than once is at or above checkpoint (the taken-over checkpoint). It returns the
// number of events delivered more than once.
func (w *realWebhook) checkAtLeastOnce(t *testing.T, want []*realEvent, checkpoint int64) int {
	t.Helper()
	byBody := map[string]*realEvent{}
	for _, e := range want {
		byBody[e.body] = e
	}
	counts := w.counts()
	for _, e := range want {
		if counts[e.body] == 0 {
			t.Fatalf("%s: event at offset %d never delivered", w.name, e.offset)
		}
	}
	dups := 0
	for body, n := range counts {
		e := byBody[body]
		if e == nil {
			t.Fatalf("%s: delivered %s, which is not in the window", w.name, body)
		}
		if n > 1 {
			dups++
			if e.offset < checkpoint {
				t.Fatalf("%s: event at offset %d delivered %d times, below the taken-over checkpoint %d", w.name, e.offset, n, checkpoint)
			}
		}
	}
	if w.sink.BadSignatures() != 0 {
		t.Fatalf("%s: %d deliveries with a bad signature", w.name, w.sink.BadSignatures())
	}
	return dups
}

// stateWatch polls a job's row until stopped and remembers every state it saw: a transient
// fault must never end a job INCOMPLETE, however briefly a test looks away.
type stateWatch struct {
	mu     sync.Mutex
	seen   map[job.State]bool
	tokens []int64
	stop   chan struct{}
	done   chan struct{}
}

func watchJob(t *testing.T, jobs job.Driver, id int64) *stateWatch {
	w := &stateWatch{seen: map[job.State]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if j, err := jobs.Get(context.Background(), job.GetParams{ID: id}); err == nil {
				w.mu.Lock()
				w.seen[j.State] = true
				if n := len(w.tokens); n == 0 || w.tokens[n-1] != j.FencingToken {
					w.tokens = append(w.tokens, j.FencingToken)
				}
				w.mu.Unlock()
				if j.State.Terminal() {
					return
				}
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(w.end)
	return w
}

func (w *stateWatch) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *stateWatch) saw(s job.State) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen[s]
}

// Two `replayd serve --kafka-brokers` instances sharing MariaDB against a 3-broker Kafka 4.4
// cluster (replication 3):
//   - a replay is exact at a verifying sink: every event of the window once, in log order, signed;
//   - a replay survives the SIGKILL of its partition's leader (leadership moves) and then of the
//     instance running it: the other takes it over from the checkpoint and completes it, nothing
//     missing, duplicates only at or above the taken-over checkpoint;
//   - a replay whose partition has no leader for a while (its leader and a second broker killed:
//     no controller quorum, so leadership cannot move) is released and leased again, never ended
//     INCOMPLETE, and completes once the brokers are back;
//   - `replayd index rebuild --source kafka=…` and `replayd index verify` pass on the cluster.
func TestServeOnRealKafka(t *testing.T) {
	ctx := t.Context()
	t0 := time.Now()
	phase := func(what string) { t.Logf("%6.2fs %s", time.Since(t0).Seconds(), what) }
	cluster := kafkatest.New(t, kafkatest.Options{Nodes: 3})
	phase("3-node cluster up")
	const topic, partitions = "delivery_log", 4
	if err := cluster.CreateTopic(ctx, topic, partitions, 3, nil); err != nil {
		t.Fatal(err)
	}
	brokers := strings.Join(cluster.Bootstrap(), ",")
	dsn := mysqldbtest.Database(t)

	token, hooks := realWebhooks(t, dsn, "real-kafka", "exact", "failover", "leaderless")
	exact, failover, leaderless := hooks[0], hooks[1], hooks[2]

	// An hour of history through franz-go (Kafka's partitioner, snappy, acks from all replicas):
	// each webhook's events with re-produced duplicates, and other webhooks' traffic.
	cl, err := cluster.Client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerBatchCompression(kgo.SnappyCompression()), kgo.ProducerLinger(2*time.Millisecond),
		// The Java producer's batch.size: a window is many batches, more than a job reads ahead
		// of its deliveries (franz-go's 1 MB default made one a handful, all read before a kill).
		kgo.ProducerBatchMaxBytes(16<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	now := time.Now().UTC().Truncate(time.Minute)
	start := now.Add(-90 * time.Minute)
	const n = 6000
	var recs []*kgo.Record
	byBody := map[string]*realEvent{}
	owner := map[string]*realWebhook{}
	for i := 0; i < n; i++ {
		var w *realWebhook
		key := strconv.Itoa(5000 + i%97)
		if i%5 < 3 {
			w = hooks[i%5]
			key = w.key()
		}
		ts := start.Add(time.Duration(i) * time.Hour / n).UnixMilli()
		body := fmt.Sprintf(`{"for_user_id":"1","favorite_events":[{"id_str":"%d","timestamp_ms":"%d"}]}`, i, ts)
		copies := 1
		if i%11 == 0 {
			copies = 2
		}
		if w != nil {
			e := &realEvent{body: body, ts: ts, offset: -1}
			byBody[body], owner[body] = e, w
			w.events = append(w.events, e)
		}
		for c := 0; c < copies; c++ {
			recs = append(recs, &kgo.Record{Key: []byte(key), Value: []byte(body), Timestamp: time.UnixMilli(ts),
				Headers: []kgo.RecordHeader{{Key: "event-id", Value: []byte(strconv.Itoa(i))}}})
		}
	}
	for i := 0; i < len(recs); i += 500 {
		res := cl.ProduceSync(ctx, recs[i:min(i+500, len(recs))]...)
		if err := res.FirstErr(); err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if e := byBody[string(r.Record.Value)]; e != nil && e.offset < 0 {
				e.offset = r.Record.Offset
			}
		}
	}
	phase(fmt.Sprintf("%d records produced", len(recs)))

	jobs, err := mysqljob.Open(ctx, mysqljob.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer jobs.Close()
	common := []string{"--kafka-brokers", brokers, "--mysql-dsn", dsn, "--lease-timeout", "2s", "--allow-private-webhooks", "--workers", "2",
		"--strict-order", // one delivery at a time: a job lasts long enough for the kills (the default window is TestServeFailoverOnKafkaAndMySQL's)
		// Fetches of 16 KiB, a batch: a job still needs the broker when a kill comes (with 4 MiB
		// one fetch may bring the whole window, and the leaderless job completed without it).
		"--kafka-fetch-max-bytes", "16384"}
	var insts []*instance
	for range 2 {
		cmd, addr := startInstance(t, append(common, "--data", t.TempDir())...)
		insts = append(insts, &instance{cmd, addr})
	}
	phase("two replayd instances up")
	from, to := start.Add(10*time.Minute), start.Add(50*time.Minute)
	rj := realJobs{t: t, token: token, jobs: jobs}
	request := func(addr string, w *realWebhook) int64 { t.Helper(); return rj.request(addr, w, from, to) }
	waitStatus, getJob := rj.waitStatus, rj.get
	leaderOf := func(w *realWebhook) int {
		t.Helper()
		p := engine.PartitionFor([]byte(w.key()), partitions)
		var idx int
		testwait.For(t, 30*time.Second, fmt.Sprintf("a leader of %s-%d", topic, p), func() bool {
			td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
			if err != nil {
				return false
			}
			leader := td[topic].Partitions[p].Leader
			for i, nd := range cluster.Nodes {
				if nd.ID == leader && nd.Running() {
					idx = i
					return true
				}
			}
			return false
		})
		return idx
	}
	// deliveredAtLeast waits until the webhook's sink has n events and the job a checkpoint.
	deliveredAtLeast := func(w *realWebhook, id int64, n int, what string) {
		t.Helper()
		testwait.For(t, 60*time.Second, what, func() bool {
			j := getJob(id)
			if j.State.Terminal() {
				t.Fatalf("%s: job %s (checkpoint %d, %d delivered) before %s", w.name, j.State, j.Checkpoint, len(w.sink.Deliveries()), what)
			}
			return j.Checkpoint > 0 && len(w.sink.Deliveries()) >= n
		})
	}

	// 1. Exact: every event of the window once, correctly signed, none more than the delivery
	// window ahead of its place in log order, then Complete.
	id := request(insts[0].addr, exact)
	st := waitStatus(exact, id)
	want := exact.want(from, to)
	if st.State != "Complete" || len(want) < 300 {
		t.Fatalf("exact: status %+v, %d events in the window", st, len(want))
	}
	got := exact.sink.Deliveries()
	bodies := make([]string, len(want))
	for i, e := range want {
		bodies[i] = e.body
	}
	if err := receiver.CheckReplay(got, bodies, 1); err != nil { // the instances run --strict-order
		t.Fatalf("exact: %v", err)
	}
	if j := getJob(id); j.State != job.StateCompleted || j.Counters.Delivered != int64(len(want)) || j.Counters.DuplicatesDropped == 0 {
		t.Fatalf("exact: job %+v", j)
	}
	phase(fmt.Sprintf("exact replay: %d events", len(want)))

	// 2. The partition's leader is SIGKILLed mid-replay, then the instance running the job.
	failover.sink.SetFaults(receiver.Faults{Latency: 15 * time.Millisecond}) // a job of several seconds
	id = request(insts[1].addr, failover)
	watch := watchJob(t, jobs, id)
	deliveredAtLeast(failover, id, 50, "the failover job to deliver some and checkpoint")
	killedBroker := leaderOf(failover)
	cluster.Kill(killedBroker)
	atKill := len(failover.sink.Deliveries())
	phase(fmt.Sprintf("killed broker %d, the partition's leader, after %d deliveries", cluster.Nodes[killedBroker].ID, atKill))
	deliveredAtLeast(failover, id, atKill+100, "the failover job to go on delivering after the leader's death")
	moved := leaderOf(failover)
	phase(fmt.Sprintf("leadership moved to broker %d; %d delivered", cluster.Nodes[moved].ID, len(failover.sink.Deliveries())))
	victim := killHolder(t, insts, getJob(id))
	killed := getJob(id)
	phase(fmt.Sprintf("killed the instance holding the job (%s), checkpoint %d", killed.LeaseOwner, killed.Checkpoint))
	survivor := insts[1-victim]
	st = waitStatus(failover, id)
	watch.end()
	done := getJob(id)
	if st.State != "Complete" || done.State != job.StateCompleted || done.LeaseOwner == killed.LeaseOwner || watch.saw(job.StateIncomplete) {
		t.Fatalf("failover: status %+v, job %s owner %q (killed %q), INCOMPLETE seen %t", st, done.State, done.LeaseOwner, killed.LeaseOwner, watch.saw(job.StateIncomplete))
	}
	wantF := failover.want(from, to)
	dups := failover.checkAtLeastOnce(t, wantF, killed.Checkpoint)
	phase(fmt.Sprintf("failover replay: %d events, %d redelivered above the taken-over checkpoint %d, fencing tokens %v",
		len(wantF), dups, killed.Checkpoint, watch.tokens))

	// 3. No leader for a while: the job is released and leased again, never INCOMPLETE.
	if err := cluster.Restart(ctx, killedBroker); err != nil {
		t.Fatal(err)
	}
	phase("restarted the killed broker")
	leaderless.sink.SetFaults(receiver.Faults{Latency: 10 * time.Millisecond})
	id = request(survivor.addr, leaderless)
	watch = watchJob(t, jobs, id)
	deliveredAtLeast(leaderless, id, 30, "the leaderless job to deliver some and checkpoint")
	leader := leaderOf(leaderless)
	other := (leader + 1) % 3
	cluster.Kill(leader)
	cluster.Kill(other)
	before := getJob(id)
	phase(fmt.Sprintf("killed brokers %d (the leader) and %d: no quorum; job token %d, checkpoint %d",
		cluster.Nodes[leader].ID, cluster.Nodes[other].ID, before.FencingToken, before.Checkpoint))
	var released *job.Job
	testwait.For(t, 90*time.Second, "the job to be released after the transient fault and leased again", func() bool {
		j := getJob(id)
		if j.State.Terminal() {
			t.Fatalf("leaderless: job ended %s (%s) while its partition had no leader", j.State, j.Reason)
		}
		if j.FencingToken > before.FencingToken {
			released = j
			return true
		}
		return false
	})
	phase(fmt.Sprintf("released and leased again: token %d, checkpoint %d", released.FencingToken, released.Checkpoint))
	for _, i := range []int{leader, other} {
		if err := cluster.Restart(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	phase("restarted both brokers")
	st = waitStatus(leaderless, id)
	watch.end()
	if st.State != "Complete" || watch.saw(job.StateIncomplete) {
		t.Fatalf("leaderless: status %+v, INCOMPLETE seen %t", st, watch.saw(job.StateIncomplete))
	}
	wantL := leaderless.want(from, to)
	dups = leaderless.checkAtLeastOnce(t, wantL, before.Checkpoint)
	phase(fmt.Sprintf("leaderless replay: %d events, %d redelivered, fencing tokens %v", len(wantL), dups, watch.tokens))

	// 4. The operator's commands against the cluster.
	data := t.TempDir()
	out := mustRun(t, "index", "rebuild", "--data", data, "--source", "kafka="+strings.Join(cluster.Bootstrap(), ","))
	if !strings.Contains(out, "live index is now") {
		t.Fatalf("index rebuild from Kafka:\n%s", out)
	}
	out = mustRun(t, "index", "verify", "--data", data, "--source", "kafka", "--kafka-brokers", strings.Join(cluster.Bootstrap(), ","))
	if !strings.Contains(out, " 0 mismatches") {
		t.Fatalf("index verify against Kafka:\n%s", out)
	}
	phase("index rebuild and verify against the cluster")
}
