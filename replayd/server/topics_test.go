package server_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/replayd/api"
	"github.com/replay/replay/replayd/receiver"
	"github.com/replay/replay/replayd/server"
	"github.com/replay/replay/replayd/testwait"
	"github.com/replay/replay/segment"
)

var dcTopics = []string{"delivery_log", "dc2.delivery_log"}

// produceDCs appends n events for the webhook and others over span into the local topic's
// embedded log and the mirrored one's (engine.EmbeddedTopicDir): each into one DC or, a share
// crossDup, both; an eighth of the copies twice. It returns the unique events of the webhook in
// [from, to) and how many records of them each topic got.
func (e *e2e) produceDCs(n int, start time.Time, span time.Duration, crossDup float64, from, to time.Time) (want []string, perTopic [2]int) {
	e.t.Helper()
	rng := rand.New(rand.NewPCG(uint64(n), 9))
	var recs [2][]engine.Record
	for i := 0; i < n; i++ {
		wh := e.webhook
		if rng.IntN(3) > 0 {
			wh = 1000 + rng.Int64N(40)
		}
		ts := start.Add(span * time.Duration(i) / time.Duration(n)).UnixMilli()
		id := fmt.Sprintf("%d", 1461000000000000000+int64(i))
		body := fmt.Sprintf(`{"for_user_id":"2244994945","tweet_create_events":[{"id_str":%q,"timestamp_ms":"%d"}]}`, id, ts)
		dcs := []int{rng.IntN(2)}
		if rng.Float64() < crossDup {
			dcs = []int{0, 1}
		}
		in := wh == e.webhook && ts >= from.UnixMilli() && ts < to.UnixMilli()
		if in {
			want = append(want, body)
		}
		for _, dc := range dcs {
			copies := 1
			if rng.IntN(8) == 0 {
				copies = 2
			}
			for range copies {
				if in {
					perTopic[dc]++
				}
				recs[dc] = append(recs[dc], engine.Record{Key: []byte(strconv.FormatInt(wh, 10)), Value: []byte(body), Timestamp: ts,
					Headers: []segment.Header{{Key: []byte("event-id"), Value: []byte(id)}}})
			}
		}
	}
	for dc, dir := range []string{filepath.Join(e.data, "log"), engine.EmbeddedTopicDir(filepath.Join(e.data, "log"), dcTopics[1])} {
		l, err := engine.Open(engine.Options{Dir: dir, Topic: dcTopics[dc], MaxBatchBytes: 4096 * (dc + 1), Retention: -1})
		if err != nil {
			e.t.Fatal(err)
		}
		for i := 0; i < len(recs[dc]); i += 100 {
			if _, err := l.Append(e.t.Context(), recs[dc][i:min(i+100, len(recs[dc]))]); err != nil {
				e.t.Fatal(err)
			}
		}
		l.Close()
	}
	return want, perTopic
}

// TestServeTwoTopics: replayd reading the local and a mirrored topic (embedded logs) replays a
// window with every unique event once, whichever topics held it; GET /replay/jobs/{id} and
// /metrics count per topic, with the duplicate percentage, the index lag per topic-partition and
// the mirror's lag.
func TestServeTwoTopics(t *testing.T) {
	e := startE2E(t, func(c *server.Config) {
		c.Source.Topics = dcTopics
		c.MirrorWait = 50 * time.Millisecond
	})
	now := time.Now().UTC().Truncate(time.Minute)
	from, to := now.Add(-150*time.Minute), now.Add(-90*time.Minute)
	want, perTopic := e.produceDCs(4000, now.Add(-3*time.Hour), 2*time.Hour, 0.3, from, to)
	if len(want) < 100 || perTopic[1] == 0 {
		t.Fatalf("%d events, %v per topic: the test means little", len(want), perTopic)
	}
	jobID, _ := e.replayComplete(from, to, "replay request")
	if err := receiver.CheckReplay(e.sink.Deliveries(), want, len(want)); err != nil {
		t.Fatal(err)
	}
	var j api.JobView
	if code := e.call("GET", "/replay/jobs/"+jobID, &j); code != 200 || len(j.Topics) != 2 {
		t.Fatalf("GET job: %d %+v", code, j)
	}
	for i, tv := range j.Topics {
		if tv.Topic != dcTopics[i] || tv.Read != int64(perTopic[i]) || tv.Read != tv.Delivered+tv.DuplicatesDropped {
			t.Errorf("topic %d: %+v, want %s with %d read = delivered + duplicates", i, tv, dcTopics[i], perTopic[i])
		}
		if tv.Read > 0 && tv.DuplicatePercent != 100*float64(tv.DuplicatesDropped)/float64(tv.Read) {
			t.Errorf("topic %s: duplicate percent %v", tv.Topic, tv.DuplicatePercent)
		}
	}
	if j.Counts.Delivered != int64(len(want)) || j.Topics[0].Delivered+j.Topics[1].Delivered != int64(len(want)) {
		t.Errorf("counts %+v, topics %+v: want %d delivered", j.Counts, j.Topics, len(want))
	}
	resp, err := http.Get("http://" + e.srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, s := range []string{
		fmt.Sprintf(`replay_topic_events_read_total{topic="dc2.delivery_log"} %d`, perTopic[1]),
		fmt.Sprintf(`replay_topic_events_delivered_total{topic="delivery_log"} %d`, j.Topics[0].Delivered),
		fmt.Sprintf(`replay_topic_events_deduplicated_total{topic="dc2.delivery_log"} %d`, j.Topics[1].DuplicatesDropped),
		`replay_topic_duplicate_percent{topic="dc2.delivery_log"}`,
		`replay_index_lag_offsets{partition="3",topic="dc2.delivery_log"}`,
		`replay_mirror_lag_seconds{partition="0",topic="dc2.delivery_log"}`,
	} {
		if !strings.Contains(string(metrics), s) {
			t.Errorf("/metrics lacks %q", s)
		}
	}
}

// TestServeRefusesTopicsOfDifferentPartitionCounts: the error names the topics and counts.
func TestServeRefusesTopicsOfDifferentPartitionCounts(t *testing.T) {
	data := t.TempDir()
	l, err := engine.Open(engine.Options{Dir: engine.EmbeddedTopicDir(filepath.Join(data, "log"), dcTopics[1]), Topic: dcTopics[1], Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	c := testServeConfig(data) // 4 partitions for the local log it creates
	c.Source.Topics = dcTopics
	c.Logger = quietLogger()
	s, err := server.New(context.Background(), c)
	if err == nil {
		s.Stop(context.Background())
		t.Fatal("a server started on topics of 4 and 3 partitions")
	}
	for _, want := range []string{"delivery_log has 4", "dc2.delivery_log has 3", "same partition count"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestServeRefusesAnIndexOfOneTopicForTwo: a data directory whose index was built from the
// local topic alone is refused for two topics with the rebuild error (it would answer for the
// wrong partitions), and still serves one.
func TestServeRefusesAnIndexOfOneTopicForTwo(t *testing.T) {
	e := startE2E(t, nil)
	now := time.Now().UTC().Truncate(time.Minute)
	e.produce(400, now.Add(-2*time.Hour), time.Hour)
	// The builder has indexed the one topic (and recorded its partition count) once it caught up.
	testwait.For(t, 30*time.Second, "the index to catch up with the log", func() bool {
		lags, err := e.srv.Index().Lag(t.Context())
		if err != nil || len(lags) != 4 {
			return false
		}
		for _, l := range lags {
			if l.Lag != 0 || l.Checkpoint == 0 {
				return false
			}
		}
		return true
	})
	e.srv.Stop(context.Background())
	c := testServeConfig(e.data)
	c.Logger = quietLogger()
	c.Source.Topics = dcTopics
	if s, err := server.New(context.Background(), c); err == nil {
		s.Stop(context.Background())
		t.Fatal("a server started with two topics on an index of one")
	} else if !strings.Contains(err.Error(), "rebuild") || !strings.Contains(err.Error(), "dc2.delivery_log") {
		t.Fatalf("error %q does not say to rebuild for dc2.delivery_log", err)
	}
	c.Source.Topics = nil
	s, err := server.New(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	s.Stop(context.Background())
}
