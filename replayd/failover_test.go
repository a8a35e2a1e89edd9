package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/mysqlapp"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/mysqljob"
	"github.com/replay/replay/replayd/mysqldb/mysqldbtest"
	"github.com/replay/replay/replayd/receiver"
	"github.com/replay/replay/replayd/testwait"
)

// childArgsEnv makes the test binary run replayd with these arguments (separated by \x1f)
// instead of the tests: how the failover test starts instances it can SIGKILL.
const childArgsEnv = "REPLAYD_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childArgsEnv); args != "" {
		root := newRootCommand()
		root.SetArgs(strings.Split(args, "\x1f"))
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM) // as main does
		defer stop()
		if err := root.ExecuteContext(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "replayd:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startInstance runs `replayd serve` in a child process and waits until its API answers.
func startInstance(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	addr := freePort(t)
	args = append([]string{"serve", "--listen", addr}, args...)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(args, "\x1f"))
	logf, err := os.Create(filepath.Join(t.TempDir(), "replayd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() || os.Getenv("REPLAYD_TEST_SHOW_LOGS") != "" {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("instance %s log:\n%s", addr, b)
		}
	})
	// Another process: no signal to wait on but its health check.
	testwait.For(t, 30*time.Second, "the instance on "+addr+" to come up", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return cmd, addr
}

// Two instances on Kafka (kfake) and MariaDB: the one running a job is killed with SIGKILL
// mid-job; the other takes the job over after the lease timeout and completes it from the
// checkpoint. Every event of the window arrives at least once, and the only duplicates are of
// events at or after the checkpoint the killed instance had recorded.
func TestServeFailoverOnKafkaAndMySQL(t *testing.T) {
	ctx := t.Context()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "delivery_log"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	dsn := mysqldbtest.Database(t)

	apps, err := mysqlapp.Open(ctx, mysqlapp.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer apps.Close()
	created, err := apps.CreateApp(ctx, app.CreateAppParams{Name: "failover"})
	if err != nil {
		t.Fatal(err)
	}
	sk := receiver.New(created.App.Secret, nil)
	sk.SetFaults(receiver.Faults{Latency: 4 * time.Millisecond}) // a job that takes a few seconds
	hs := httptest.NewServer(sk)
	defer hs.Close()
	wh, err := apps.CreateWebhook(ctx, app.CreateWebhookParams{AppID: created.App.ID, URL: hs.URL + "/webhook", Valid: true})
	if err != nil {
		t.Fatal(err)
	}

	// Produce through franz-go with Kafka's partitioner: the webhook's events, duplicates, and
	// other webhooks' traffic, an hour of history.
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("delivery_log"),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	now := time.Now().UTC().Truncate(time.Minute)
	start := now.Add(-90 * time.Minute)
	type ev struct {
		id, body string
		ts       int64
	}
	var mine []ev
	var recs []*kgo.Record
	for i := 0; i < 3000; i++ {
		key := strconv.FormatInt(wh.ID, 10)
		if i%2 == 1 {
			key = strconv.Itoa(5000 + i%97)
		}
		ts := start.Add(time.Duration(i) * time.Hour / 3000).UnixMilli()
		e := ev{id: strconv.Itoa(i), ts: ts, body: fmt.Sprintf(`{"for_user_id":"1","favorite_events":[{"id":"%d"}]}`, i)}
		copies := 1
		if i%11 == 0 {
			copies = 2 // re-produced
		}
		for c := 0; c < copies; c++ {
			if key == strconv.FormatInt(wh.ID, 10) {
				mine = append(mine, e)
			}
			recs = append(recs, &kgo.Record{Key: []byte(key), Value: []byte(e.body), Timestamp: time.UnixMilli(ts),
				Headers: []kgo.RecordHeader{{Key: "event-id", Value: []byte(e.id)}}})
		}
	}
	offsetOf := map[string]int64{} // body → offset, for the webhook's records (first copy)
	for i := 0; i < len(recs); i += 200 {
		res := cl.ProduceSync(ctx, recs[i:min(i+200, len(recs))]...)
		if err := res.FirstErr(); err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if string(r.Record.Key) == strconv.FormatInt(wh.ID, 10) {
				if _, ok := offsetOf[string(r.Record.Value)]; !ok {
					offsetOf[string(r.Record.Value)] = r.Record.Offset
				}
			}
		}
	}

	t0 := time.Now()
	phase := func(what string) { t.Logf("%6.2fs %s", time.Since(t0).Seconds(), what) }
	common := []string{"--kafka-brokers", brokers, "--mysql-dsn", dsn, "--lease-timeout", "2s", "--allow-private-webhooks",
		"--webhook-rate", "400"} // the default window would finish the job before a kill: a few seconds of it
	a, addrA := startInstance(t, append(common, "--data", t.TempDir())...)
	phase("instance A up")
	from, to := start.Add(10*time.Minute), start.Add(50*time.Minute)
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/1.1/account_activity/replay/webhooks/%d/subscriptions/all.json?from_date=%s&to_date=%s",
		addrA, wh.ID, from.Format("200601021504"), to.Format("200601021504")), nil)
	req.Header.Set("Authorization", "Bearer "+created.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("replay request: %v %v", resp, err)
	}
	resp.Body.Close()

	jobs, err := mysqljob.Open(ctx, mysqljob.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer jobs.Close()
	list, err := jobs.List(ctx, job.ListParams{WebhookID: wh.ID})
	if err != nil || len(list.Jobs) != 1 {
		t.Fatalf("jobs: %+v, %v", list, err)
	}
	jobID := list.Jobs[0].ID
	// Kill A once it has delivered some and checkpointed.
	testwait.For(t, 60*time.Second, "instance A to deliver some and checkpoint", func() bool {
		j, err := jobs.Get(ctx, job.GetParams{ID: jobID})
		if err != nil {
			t.Fatal(err)
		}
		if j.State.Terminal() {
			t.Fatalf("job %s before instance A could be killed mid-job (checkpoint %d, %d delivered)", j.State, j.Checkpoint, len(sk.Deliveries()))
		}
		return j.Checkpoint > 0 && len(sk.Deliveries()) > 50
	})
	phase("killing A")
	a.Process.Signal(syscall.SIGKILL)
	a.Wait()
	killed, err := jobs.Get(ctx, job.GetParams{ID: jobID})
	if err != nil {
		t.Fatal(err)
	}
	checkpoint := killed.Checkpoint
	beforeB := len(sk.Deliveries())

	startInstance(t, append(common, "--data", t.TempDir())...)
	phase("instance B up")
	waitCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	st, err := sk.WaitStatus(waitCtx, strconv.FormatInt(jobID, 10))
	if err != nil {
		t.Fatal(err)
	}
	phase("status event")
	if st.State != "Complete" {
		t.Fatalf("status %+v", st)
	}
	done, _ := jobs.Get(ctx, job.GetParams{ID: jobID})
	if done.State != job.StateCompleted || done.FencingToken < 2 || done.LeaseOwner == killed.LeaseOwner {
		t.Fatalf("job after takeover: %s token %d owner %q (killed owner %q)", done.State, done.FencingToken, done.LeaseOwner, killed.LeaseOwner)
	}

	want := map[string]bool{}
	for _, e := range mine {
		if e.ts >= from.UnixMilli() && e.ts < to.UnixMilli() {
			want[e.body] = true
		}
	}
	count := map[string]int{}
	for _, d := range sk.Deliveries() {
		if !strings.Contains(string(d.Body), "replay_job_status") {
			count[string(d.Body)]++
		}
	}
	for body := range want {
		if count[body] == 0 {
			t.Fatalf("event %s (offset %d) never delivered", body, offsetOf[body])
		}
	}
	dups := 0
	for body, n := range count {
		if !want[body] {
			t.Fatalf("delivered %s, which is not in the window", body)
		}
		if n > 1 {
			dups++
			if offsetOf[body] < checkpoint {
				t.Fatalf("event at offset %d delivered %d times, but the checkpoint was %d: a duplicate before the checkpoint", offsetOf[body], n, checkpoint)
			}
		}
	}
	t.Logf("%d events, %d delivered by A before the kill, checkpoint %d, %d redelivered after the takeover; the job counts %d delivered, %d redelivered (A's last heartbeat had %d delivered)",
		len(want), beforeB, checkpoint, dups, done.Counters.Delivered, done.Counters.Redelivered, killed.Counters.Delivered)
	// The counters tell the truth about at-least-once: each event counts once in delivered; the
	// redeliveries counted are real ones; those not counted are what A delivered after its last
	// heartbeat, at most a heartbeat interval (1 s) at the webhook rate plus the deliveries in
	// flight (the window, at most --max-in-flight 512).
	if done.Counters.Delivered != int64(len(want)) {
		t.Fatalf("the job counts %d delivered, %d events were (each once or more)", done.Counters.Delivered, len(want))
	}
	if done.Counters.Redelivered > int64(dups) {
		t.Fatalf("the job counts %d redelivered, the webhook got %d events twice", done.Counters.Redelivered, dups)
	}
	if uncounted := int64(dups) - done.Counters.Redelivered; uncounted > 400+512 {
		t.Fatalf("%d redeliveries not counted, more than a heartbeat interval at 400 events/s plus 512 in flight", uncounted)
	}
}
