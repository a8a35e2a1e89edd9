package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/replay/replay/index/diskreserve"
	"github.com/replay/replay/replayd/receiver"
	"github.com/replay/replay/replayd/server"
	"github.com/replay/replay/replayd/testwait"
	"github.com/replay/replay/replayd/worker"
)

// A data directory whose disk fills below the reserve: the server stays up, /healthz and
// /metrics say it is degraded and why, a replay request (a job store write) answers 503/67
// instead of crashing anything, and once space returns everything resumes by itself: the index
// catches up and a replay of events appended meanwhile is exact.
func TestServeSurvivesALowDisk(t *testing.T) {
	fs := diskreserve.NewFreeFS(vfs.Default, 1<<40)
	e := startE2E(t, func(c *server.Config) { c.FS, c.DiskReserve = fs, 64<<20 })
	now := time.Now().UTC().Truncate(time.Minute)
	e.produce(1000, now.Add(-3*time.Hour), time.Hour)

	fs.Free.Store(1 << 20)
	e.produce(1000, now.Add(-2*time.Hour), time.Hour) // the builder cannot commit these
	var h struct {
		Status   string   `json:"status"`
		Degraded []string `json:"degraded"`
	}
	testwait.For(t, 30*time.Second, "/healthz to report the stopped builder and the low disk", func() bool {
		h.Status, h.Degraded = "", nil
		return e.call("GET", "/healthz", &h) == 200 && h.Status == "degraded" && len(h.Degraded) == 2
	})
	if !strings.Contains(h.Degraded[0], "index builder stopped") || !strings.Contains(h.Degraded[0], "below the reserve of 64 MiB") ||
		!strings.Contains(h.Degraded[1], "data directory") || !strings.Contains(h.Degraded[1], "1.0 MiB free") {
		t.Fatalf("/healthz degraded: %q", h.Degraded)
	}
	var refused struct {
		Errors []struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if code := e.call("POST", replayPath(e.webhook, now.Add(-150*time.Minute), now.Add(-90*time.Minute)), &refused); code != 503 ||
		len(refused.Errors) != 1 || refused.Errors[0].Code != 67 {
		t.Fatalf("replay request on a low disk: %d %+v; want 503/67", code, refused)
	}
	if m := scrape(t, e); !strings.Contains(m, "replay_index_builder_degraded 1") || !strings.Contains(m, "replay_data_disk_free_bytes 1.048576e+06") ||
		!strings.Contains(m, "replay_data_disk_reserve_bytes 6.7108864e+07") {
		t.Fatalf("/metrics on a low disk lacks the degraded builder or the disk's numbers:\n%s", grepLines(m, "replay_index_builder", "replay_data_disk"))
	}

	fs.Free.Store(1 << 40)
	testwait.For(t, 30*time.Second, "/healthz ok once space returned", func() bool {
		h.Status, h.Degraded = "", nil
		return e.call("GET", "/healthz", &h) == 200 && h.Status == "ok"
	})
	from, to := now.Add(-150*time.Minute), now.Add(-90*time.Minute)
	e.replayComplete(from, to, "replay once space returned")
	if err := receiver.CheckReplay(e.sink.Deliveries(), e.want(from, to), worker.MaxAhead(worker.DefaultMaxInFlight)); err != nil {
		t.Fatal(err)
	}
	if m := scrape(t, e); !strings.Contains(m, "replay_index_builder_degraded 0") {
		t.Fatalf("/metrics after recovery: %s", grepLines(m, "replay_index_builder"))
	}
}

func replayPath(webhook int64, from, to time.Time) string {
	return "/1.1/account_activity/replay/webhooks/" + jsonNumber(webhook) + "/subscriptions/all.json?from_date=" +
		from.UTC().Format("200601021504") + "&to_date=" + to.UTC().Format("200601021504")
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

func scrape(t *testing.T, e *e2e) string {
	t.Helper()
	resp, err := http.Get("http://" + e.srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}
