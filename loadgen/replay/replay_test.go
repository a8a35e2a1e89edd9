package replay

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/receiver"
)

// fakeAPI accepts replay requests like replayd (one active job per webhook: 409 otherwise) and
// delivers n signed events and the status event to the sink, per job.
func fakeAPI(t *testing.T, sinkURL string, secret []byte, n int) (*httptest.Server, *atomic.Int32) {
	var mu sync.Mutex
	active := map[string]bool{}
	var jobs, conflicts atomic.Int32
	post := func(path string, body string) {
		req, _ := http.NewRequest("POST", sinkURL+path, strings.NewReader(body))
		req.Header.Set(delivery.SignatureHeader, delivery.Sign(secret, []byte(body)))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"errors":[{"code":32,"message":"Could not authenticate you."}]}`)
			return
		}
		parts := strings.Split(r.URL.Path, "/")
		hook := parts[5]
		if r.URL.Query().Get("from_date") != "202605010900" || r.URL.Query().Get("to_date") != "202605011100" {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		if active[hook] {
			mu.Unlock()
			conflicts.Add(1)
			w.WriteHeader(409)
			return
		}
		active[hook] = true
		mu.Unlock()
		id := fmt.Sprint(jobs.Add(1))
		w.WriteHeader(202)
		fmt.Fprintf(w, `{"job_id":%q,"created_at":"2026-05-01T12:00:00Z"}`, id)
		go func() {
			for i := 0; i < n; i++ {
				post("/webhooks/"+hook, fmt.Sprintf(`{"for_user_id":"1","tweet_create_events":[{"id_str":"%s%03d"}]}`, id, i))
			}
			mu.Lock()
			active[hook] = false
			mu.Unlock()
			post("/webhooks/"+hook, fmt.Sprintf(`{"replay_job_status":{"webhook_id":%q,"job_state":"Complete","job_state_description":"Job completed successfully","job_id":%q}}`, hook, id))
		}()
	}))
	t.Cleanup(hs.Close)
	return hs, &conflicts
}

func TestRunMeasuresJobs(t *testing.T) {
	secret := []byte("sec")
	s := receiver.NewWithOptions(receiver.Options{Secret: secret})
	ss := httptest.NewServer(s)
	defer ss.Close()
	api, conflicts := fakeAPI(t, ss.URL, secret, 20)
	from := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, wait := range []struct {
		name string
		w    Waiter
	}{{"in-process", s.WaitJob}, {"http", HTTPWaiter(ss.Client(), ss.URL)}} {
		rs := Run(ctx, Options{API: api.URL, Token: "tok", Webhooks: []string{"11", "22", "33"}, From: from, To: from.Add(2 * time.Hour),
			Requests: 9, Concurrency: 4, Wait: wait.w})
		if len(rs) != 9 {
			t.Fatalf("%s: %d results", wait.name, len(rs))
		}
		for _, r := range rs {
			if r.Err != "" || r.Code != 202 || r.Job.Deliveries != 20 || r.Job.State != "Complete" || r.TTFE <= 0 || r.Total < r.TTFE || r.EventsPerSec <= 0 {
				t.Fatalf("%s: result %+v", wait.name, r)
			}
		}
		sum := Summarize(rs)
		if sum.Completed != 9 || sum.Events != 180 || sum.TTFE.P50 <= 0 || sum.TTFE.P50 > sum.TTFE.Max || sum.Total.P99 > sum.Total.Max {
			t.Fatalf("%s: summary %+v", wait.name, sum)
		}
		var b bytes.Buffer
		Write(&b, rs)
		if !strings.Contains(b.String(), "9 jobs: 9 completed, 0 failed; 180 events") || !strings.Contains(b.String(), "time to first") {
			t.Fatalf("%s:\n%s", wait.name, b.String())
		}
	}
	// One webhook's jobs never overlapped, though 4 requests ran at once.
	if conflicts.Load() != 0 {
		t.Fatalf("%d requests hit an active job", conflicts.Load())
	}
	// A bad token is reported per request, not waited on.
	rs := Run(ctx, Options{API: api.URL, Token: "bad", Webhooks: []string{"11"}, From: from, To: from.Add(2 * time.Hour), Wait: s.WaitJob})
	if rs[0].Code != 401 || !strings.Contains(rs[0].Err, "401") || Summarize(rs).Failed != 1 {
		t.Fatalf("bad token: %+v", rs[0])
	}
}

func TestPercentiles(t *testing.T) {
	var v []float64
	for i := 100; i >= 1; i-- {
		v = append(v, float64(i))
	}
	if p := percentiles(v); p != (Percentiles{50, 90, 99, 100}) {
		t.Fatalf("%+v", p)
	}
	if p := percentiles([]float64{7}); p != (Percentiles{7, 7, 7, 7}) {
		t.Fatalf("%+v", p)
	}
}
