package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/replay/replay/engine/kafkatest"
	"github.com/replay/replay/replayd/job"
	"github.com/replay/replay/replayd/job/mysqljob"
	"github.com/replay/replay/replayd/mysqldb/mysqldbtest"
	"github.com/replay/replay/replayd/receiver"
	"github.com/replay/replay/replayd/testwait"
)

// TestServeTwoDatacenters is the two-datacenter design on real Kafka: two KRaft clusters, dc1
// and dc2, each with its own delivery_log; MirrorMaker 2 replicates each into the other
// (DefaultReplicationPolicy: dc2.delivery_log in dc1); traffic is produced into both, a share of
// the events into both (a retry that crossed datacenters) and a share twice into one. Two
// replayd instances in dc1 read delivery_log and dc2.delivery_log with one MariaDB job store.
// (1) A replay is exact at a verifying sink: every unique event of the webhook and window once,
// from both datacenters, signed, then Complete, with counts per topic. (2) The instance running a
// replay is SIGKILLed mid-job: the other takes it over and resumes each topic from its own
// checkpoint; every event arrives, and the only repeats are the deliveries the killed instance
// made after its last checkpoint. (3) With MirrorMaker stopped, a replay of a window dc2 got
// since ends Incomplete naming dc2.delivery_log and the range; once MirrorMaker caught up, the
// same replay is Complete.
func TestServeTwoDatacenters(t *testing.T) {
	ctx := t.Context()
	t0 := time.Now()
	phase := func(what string) { t.Logf("%6.2fs %s", time.Since(t0).Seconds(), what) }

	// Two 1-node clusters, started side by side.
	clusters := make([]*kafkatest.Cluster, 2)
	errs := make(chan error, 2)
	for i := range clusters {
		go func() {
			c, err := kafkatest.Start(context.Background(), kafkatest.Options{})
			clusters[i] = c
			errs <- err
		}()
	}
	for range clusters {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clusters {
		t.Cleanup(c.Close)
	}
	dc1, dc2 := clusters[0], clusters[1]
	phase("two 1-node clusters up")
	const partitions = 4
	for _, c := range clusters {
		if err := c.CreateTopic(ctx, "delivery_log", partitions, 1, nil); err != nil {
			t.Fatal(err)
		}
	}

	dsn := mysqldbtest.Database(t)
	token, hooks := realWebhooks(t, dsn, "two-dc", "exact", "takeover", "lagging")
	exact, takeover, lagging := hooks[0], hooks[1], hooks[2]

	// An hour of traffic: each event into dc1 or dc2, a quarter into both, a tenth of the copies
	// twice (a producer's retry); other webhooks' events beside.
	now := time.Now().UTC().Truncate(time.Minute)
	start := now.Add(-90 * time.Minute)
	const n = 6000
	rng := rand.New(rand.NewPCG(14, 2))
	var recs [2][]*kgo.Record
	perTopic := map[string][2]int{} // the webhook's records per topic in the window
	from, to := start.Add(10*time.Minute), start.Add(50*time.Minute)
	for i := 0; i < n; i++ {
		var w *realWebhook
		key := strconv.Itoa(5000 + i%97)
		if i%5 < 2 {
			w = hooks[i%5]
			key = w.key()
		}
		ts := start.Add(time.Duration(i) * time.Hour / n).UnixMilli()
		body := fmt.Sprintf(`{"for_user_id":"1","favorite_events":[{"id_str":"%d","timestamp_ms":"%d"}]}`, i, ts)
		dcs := []int{rng.IntN(2)}
		if rng.IntN(4) == 0 {
			dcs = []int{0, 1}
		}
		if w != nil {
			w.events = append(w.events, &realEvent{body: body, ts: ts, offset: int64(i)})
		}
		for _, dc := range dcs {
			copies := 1
			if rng.IntN(10) == 0 {
				copies = 2
			}
			for range copies {
				if w != nil && ts >= from.UnixMilli() && ts < to.UnixMilli() {
					c := perTopic[w.name]
					c[dc]++
					perTopic[w.name] = c
				}
				recs[dc] = append(recs[dc], &kgo.Record{Key: []byte(key), Value: []byte(body), Timestamp: time.UnixMilli(ts),
					Headers: []kgo.RecordHeader{{Key: "event-id", Value: []byte(strconv.Itoa(i))}}})
			}
		}
	}
	for dc, c := range clusters {
		codec := []kgo.CompressionCodec{kgo.SnappyCompression(), kgo.ZstdCompression()}[dc]
		cl, err := c.Client(kgo.DefaultProduceTopic("delivery_log"), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
			kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(2*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(recs[dc]); i += 500 {
			if err := cl.ProduceSync(ctx, recs[dc][i:min(i+500, len(recs[dc]))]...).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		cl.Close()
	}
	phase(fmt.Sprintf("%d records into dc1, %d into dc2", len(recs[0]), len(recs[1])))

	mmStart := time.Now()
	mirrors := kafkatest.MirrorOptions{Clusters: map[string]*kafkatest.Cluster{"dc1": dc1, "dc2": dc2}}
	mm, err := kafkatest.StartMirror(ctx, mirrors)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("MirrorMaker log:\n%s", mm.Log())
		}
		mm.Close()
	})
	if err := mm.WaitTopic(ctx, dc1, "dc2.delivery_log", partitions); err != nil {
		t.Fatal(err)
	}
	phase(fmt.Sprintf("MirrorMaker 2 started: dc2.delivery_log in dc1 after %v", time.Since(mmStart).Round(time.Millisecond)))
	// Every record of dc2 mirrored into dc1 (MirrorMaker is at least once: possibly more).
	adm, err := dc1.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	testwait.For(t, 2*time.Minute, "dc2's records to be mirrored into dc1", func() bool {
		ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, "dc2.delivery_log")
		if err != nil {
			return false
		}
		var sum int64
		ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
		return sum >= int64(len(recs[1]))
	})
	phase(fmt.Sprintf("all %d records of dc2 mirrored into dc1, %v after MirrorMaker's start", len(recs[1]), time.Since(mmStart).Round(time.Millisecond)))

	jobs, err := mysqljob.Open(ctx, mysqljob.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer jobs.Close()
	common := []string{"--kafka-brokers", strings.Join(dc1.Bootstrap(), ","), "--topics", "delivery_log,dc2.delivery_log",
		"--mysql-dsn", dsn, "--lease-timeout", "2s", "--allow-private-webhooks", "--workers", "1", "--strict-order", "--mirror-wait", "3s"}
	var insts []*instance
	for range 2 {
		cmd, addr := startInstance(t, append(common, "--data", t.TempDir())...)
		insts = append(insts, &instance{cmd, addr})
	}
	phase("two replayd instances up in dc1")
	rj := realJobs{t: t, token: token, jobs: jobs}
	request := func(addr string, w *realWebhook) int64 { t.Helper(); return rj.request(addr, w, from, to) }
	waitStatus, getJob := rj.waitStatus, rj.get
	checkTopics := func(w *realWebhook, j *job.Job, exactly bool) {
		t.Helper()
		want := perTopic[w.name]
		if len(j.Topics) != 2 || j.Topics[0].Topic != "delivery_log" || j.Topics[1].Topic != "dc2.delivery_log" {
			t.Fatalf("%s: topic progress %+v", w.name, j.Topics)
		}
		for i, tp := range j.Topics {
			// MirrorMaker may have copied a record twice: at least what was produced.
			if tp.Read < int64(want[i]) || (exactly && tp.Read != tp.Delivered+tp.DuplicatesDropped) {
				t.Errorf("%s: topic %s: %+v, %d records produced", w.name, tp.Topic, tp, want[i])
			}
		}
		if j.Topics[1].Delivered == 0 || j.Topics[1].DuplicatesDropped == 0 || j.Topics[0].DuplicatesDropped == 0 {
			t.Errorf("%s: want deliveries and dropped duplicates from the mirrored topic, duplicates in the local one: %+v", w.name, j.Topics)
		}
	}

	// 1. Exact: every unique event of the window once, from both datacenters, then Complete.
	id := request(insts[0].addr, exact)
	st := waitStatus(exact, id)
	want := exact.want(from, to)
	if st.State != "Complete" || len(want) < 300 {
		t.Fatalf("exact: status %+v, %d events in the window", st, len(want))
	}
	bodies := make([]string, len(want))
	for i, e := range want {
		bodies[i] = e.body
	}
	// Merged by timestamp, which orders this traffic as it was produced (in log order per topic).
	if err := receiver.CheckReplay(exact.sink.Deliveries(), bodies, 1); err != nil {
		t.Fatalf("exact: %v", err)
	}
	j := getJob(id)
	if j.State != job.StateCompleted || j.Counters.Delivered != int64(len(want)) {
		t.Fatalf("exact: job %+v", j)
	}
	checkTopics(exact, j, true)
	phase(fmt.Sprintf("exact replay: %d events, %+v", len(want), j.Topics))

	// The instance's metrics count per topic and show the mirror's lag.
	resp, err := http.Get("http://" + insts[0].addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, s := range []string{`replay_topic_events_read_total{topic="dc2.delivery_log"}`, `replay_topic_duplicate_percent{topic="dc2.delivery_log"}`,
		`replay_mirror_lag_seconds{partition="0",topic="dc2.delivery_log"}`, `replay_index_lag_offsets{partition="0",topic="dc2.delivery_log"}`} {
		if !strings.Contains(string(metrics), s) {
			t.Errorf("/metrics lacks %q", s)
		}
	}

	// 2. The instance running a replay is SIGKILLed; the other takes the job over.
	takeover.sink.SetFaults(receiver.Faults{Latency: 10 * time.Millisecond}) // a job of several seconds
	id = request(insts[1].addr, takeover)
	testwait.For(t, 60*time.Second, "the takeover job to deliver some and checkpoint in both topics", func() bool {
		j := getJob(id)
		if j.State.Terminal() {
			t.Fatalf("takeover: job %s before the kill", j.State)
		}
		return len(j.Topics) == 2 && j.Topics[0].Checkpoint > 0 && j.Topics[1].Checkpoint > 0 && len(takeover.sink.Deliveries()) >= 100
	})
	victim := killHolder(t, insts, getJob(id))
	atKill := len(takeover.sink.Deliveries())
	killed := getJob(id)
	phase(fmt.Sprintf("killed the instance holding the job (%s) after %d deliveries; checkpoints %+v", killed.LeaseOwner, atKill, killed.Topics))
	st = waitStatus(takeover, id)
	done := getJob(id)
	if st.State != "Complete" || done.State != job.StateCompleted || done.LeaseOwner == killed.LeaseOwner {
		t.Fatalf("takeover: status %+v, job %s owner %q (killed %q)", st, done.State, done.LeaseOwner, killed.LeaseOwner)
	}
	for i := range done.Topics {
		if done.Topics[i].Checkpoint < killed.Topics[i].Checkpoint {
			t.Errorf("takeover: topic %s went back from %d to %d", done.Topics[i].Topic, killed.Topics[i].Checkpoint, done.Topics[i].Checkpoint)
		}
	}
	checkTopics(takeover, done, false)
	wantT := takeover.want(from, to)
	dups := takeover.checkAtLeastOnce(t, wantT, -1)
	// Strict order: what the killed instance delivered after its last recorded progress is all
	// that can come again.
	if unrecorded := atKill - int(killed.Counters.Delivered); dups > unrecorded {
		t.Fatalf("takeover: %d events delivered twice, but only %d deliveries were made after the last checkpoint", dups, unrecorded)
	}
	phase(fmt.Sprintf("takeover replay: %d events, %d delivered again (of %d after the last checkpoint), topics %+v",
		len(wantT), dups, atKill-int(killed.Counters.Delivered), done.Topics))

	// 3. The mirror lags: MirrorMaker is stopped and dc2 gets a later quarter hour of the
	// webhook's events (and others', in every partition). A replay of it from dc1 delivers what
	// dc1 has (nothing of it) and ends Incomplete naming dc2.delivery_log and the time range;
	// once MirrorMaker runs again and has caught up, the same replay is Complete.
	mm.Close()
	survivor := insts[1-victim]
	late0, late1 := now.Add(-25*time.Minute), now.Add(-10*time.Minute)
	var lateRecs []*kgo.Record
	for i := 0; i < 900; i++ {
		ts := late0.Add(time.Duration(i) * 20 * time.Minute / 900).UnixMilli() // up to 5 minutes past the window
		key := strconv.Itoa(5000 + i%97)
		body := fmt.Sprintf(`{"for_user_id":"1","favorite_events":[{"id_str":"%d","timestamp_ms":"%d"}]}`, n+i, ts)
		if i%3 == 0 {
			key = lagging.key()
			if ts < late1.UnixMilli() {
				lagging.events = append(lagging.events, &realEvent{body: body, ts: ts, offset: int64(n + i)})
			}
		}
		lateRecs = append(lateRecs, &kgo.Record{Key: []byte(key), Value: []byte(body), Timestamp: time.UnixMilli(ts),
			Headers: []kgo.RecordHeader{{Key: "event-id", Value: []byte(strconv.Itoa(n + i))}}})
	}
	cl2, err := dc2.Client(kgo.DefaultProduceTopic("delivery_log"), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl2.ProduceSync(ctx, lateRecs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl2.Close()
	lateReq := func() int64 { t.Helper(); return rj.request(survivor.addr, lagging, late0, late1) }
	id = lateReq()
	st = waitStatus(lagging, id)
	j = getJob(id)
	if st.State != "Incomplete" || j.State != job.StateIncomplete || !strings.Contains(j.Reason, "topic dc2.delivery_log partition") ||
		!strings.Contains(j.Reason, "had not been mirrored up to the window's end") || !strings.Contains(j.Reason, late1.Format(time.RFC3339)) {
		t.Fatalf("lagging mirror: status %+v, job %s: %q", st, j.State, j.Reason)
	}
	phase(fmt.Sprintf("mirror stopped: the replay of a later window ended %s: %s", j.State, j.Reason))
	mmStart = time.Now()
	if mm, err = kafkatest.StartMirror(ctx, mirrors); err != nil {
		t.Fatal(err)
	}
	wantLate := int64(len(recs[1]) + len(lateRecs))
	testwait.For(t, 2*time.Minute, "MirrorMaker to catch up with dc2", func() bool {
		ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, "dc2.delivery_log")
		if err != nil {
			return false
		}
		var sum int64
		ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
		return sum >= wantLate
	})
	phase(fmt.Sprintf("MirrorMaker restarted, caught up %v after its start", time.Since(mmStart).Round(time.Millisecond)))
	before := len(lagging.sink.Deliveries())
	id = lateReq()
	st = waitStatus(lagging, id)
	if st.State != "Complete" {
		t.Fatalf("after the mirror caught up: status %+v (%s)", st, getJob(id).Reason)
	}
	var second []string
	for _, d := range lagging.sink.Deliveries()[before:] {
		if d.Status == nil {
			second = append(second, string(d.Body))
		}
	}
	wantL := lagging.want(late0, late1)
	bodies = bodies[:0]
	for _, e := range wantL {
		bodies = append(bodies, e.body)
	}
	if len(wantL) < 50 || strings.Join(second, "\n") != strings.Join(bodies, "\n") {
		t.Fatalf("after the mirror caught up: %d deliveries, want the window's %d events in order", len(second), len(wantL))
	}
	phase(fmt.Sprintf("the same replay after the mirror caught up: Complete, %d events", len(wantL)))
}
