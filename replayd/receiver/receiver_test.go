package receiver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/replayd/delivery"
)

var secret = []byte("s3cr3t-app-secret")

func start(t *testing.T, o Options) (*Sink, *httptest.Server) {
	t.Helper()
	if o.Secret == nil {
		o.Secret = secret
	}
	s := NewWithOptions(o)
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs
}

func post(t *testing.T, c *http.Client, url string, body string, key []byte) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set(delivery.SignatureHeader, delivery.Sign(key, []byte(body)))
	resp, err := c.Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

func event(id int) string {
	return fmt.Sprintf(`{"for_user_id":"1","tweet_create_events":[{"id_str":"%d","text":"hi"}]}`, id)
}

func status(webhook, job string) string {
	return fmt.Sprintf(`{"replay_job_status":{"webhook_id":%q,"job_state":"Complete","job_state_description":"Job completed successfully","job_id":%q}}`, webhook, job)
}

func TestCRCChallenge(t *testing.T) {
	_, hs := start(t, Options{})
	resp, err := http.Get(hs.URL + "/webhooks/a?crc_token=abc")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		ResponseToken string `json:"response_token"`
	}
	json.NewDecoder(resp.Body).Decode(&got)
	if resp.StatusCode != 200 || got.ResponseToken != delivery.CRCResponse(secret, "abc") {
		t.Fatalf("CRC: %d %q", resp.StatusCode, got.ResponseToken)
	}
	// replayd's own challenge accepts the answer.
	c, err := delivery.New(delivery.Options{AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := delivery.Challenge(t.Context(), c, hs.URL+"/webhooks/b", secret); err != nil {
		t.Fatal(err)
	}
	if err := delivery.Challenge(t.Context(), c, hs.URL+"/webhooks/b", []byte("other")); err == nil {
		t.Fatal("challenge with another secret passed")
	}
	if resp, _ := http.Get(hs.URL + "/webhooks/a"); resp.StatusCode != 400 {
		t.Fatalf("GET without crc_token: %d", resp.StatusCode)
	}
}

func TestSignaturesRecordingDuplicates(t *testing.T) {
	var buf bytes.Buffer
	rec := bufio.NewWriter(&buf)
	s, hs := start(t, Options{Record: rec, KeepDeliveries: true})
	c := hs.Client()
	for _, p := range []struct {
		path string
		id   int
	}{{"/webhooks/a", 1}, {"/webhooks/a", 2}, {"/webhooks/a", 1}, {"/webhooks/b", 1}, {"/webhooks/b", 3}} {
		if resp, err := post(t, c, hs.URL+p.path, event(p.id), secret); err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST: %v %v", resp, err)
		}
	}
	// A bad signature is refused, counted and recorded as such.
	if resp, err := post(t, c, hs.URL+"/webhooks/a", event(9), []byte("wrong")); err != nil || resp.StatusCode != 401 {
		t.Fatalf("bad signature: %v %v", resp, err)
	}
	if resp, err := post(t, c, hs.URL+"/webhooks/a", status("77", "j1"), secret); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status: %v %v", resp, err)
	}
	if s.BadSignatures() != 1 {
		t.Fatalf("bad signatures %d", s.BadSignatures())
	}
	st := s.Stats()
	a, b := st.Paths["/webhooks/a"], st.Paths["/webhooks/b"]
	if st.Deliveries != 5 || st.Duplicates != 1 || a.Deliveries != 3 || a.Duplicates != 1 || b.Deliveries != 2 || b.Duplicates != 0 {
		t.Fatalf("stats %+v a %+v b %+v", st, a, b)
	}
	if a.WebhookID != "77" || len(a.Jobs) != 1 || a.Jobs[0].Deliveries != 3 || a.Jobs[0].Duplicates != 1 || a.Pending != 0 || b.Pending != 2 {
		t.Fatalf("path a %+v, b %+v", a, b)
	}
	if st.Responses["200"] != 6 || st.Responses["401"] != 1 {
		t.Fatalf("responses %v", st.Responses)
	}
	js, err := s.WaitJob(t.Context(), "j1")
	if err != nil || js.State != "Complete" || js.FirstAt.IsZero() || js.CompletedAt.Before(js.LastAt) {
		t.Fatalf("job %+v %v", js, err)
	}
	// The status event flushed the record: every delivery is there, in order.
	var lines []Delivery
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	for sc.Scan() {
		var d Delivery
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, d)
	}
	want := []struct {
		path, id string
		valid    bool
		dup      bool
	}{{"/webhooks/a", "1", true, false}, {"/webhooks/a", "2", true, false}, {"/webhooks/a", "1", true, true},
		{"/webhooks/b", "1", true, false}, {"/webhooks/b", "3", true, false}, {"/webhooks/a", "9", false, false}, {"/webhooks/a", "", true, false}}
	if len(lines) != len(want) {
		t.Fatalf("record has %d lines, want %d:\n%s", len(lines), len(want), buf.Bytes())
	}
	for i, w := range want {
		l := lines[i]
		if l.Path != w.path || l.SignatureValid != w.valid || l.Duplicate != w.dup || (w.valid && l.EventID != w.id) || l.Body != nil {
			t.Fatalf("line %d: %+v, want %+v", i, l, w)
		}
	}
	if lines[6].Status == nil || lines[6].Status.JobID != "j1" {
		t.Fatalf("status line %+v", lines[6])
	}
	if len(s.Deliveries()) != 7 || string(s.Deliveries()[0].Body) != event(1) {
		t.Fatalf("deliveries %d", len(s.Deliveries()))
	}
}

func setFaults(t *testing.T, hs *httptest.Server, js string) Faults {
	t.Helper()
	resp, err := http.Post(hs.URL+"/_sink/faults", "application/json", strings.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var f Faults
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /_sink/faults %s: %d %s", js, resp.StatusCode, b)
	}
	json.NewDecoder(resp.Body).Decode(&f)
	return f
}

func TestFaultErrorAndThrottle(t *testing.T) {
	s, hs := start(t, Options{})
	setFaults(t, hs, `{"error_rate":1}`)
	if resp, _ := post(t, hs.Client(), hs.URL+"/w", event(1), secret); resp.StatusCode != 500 {
		t.Fatalf("error fault: %d", resp.StatusCode)
	}
	f := setFaults(t, hs, `{"throttle_rate":1,"retry_after":"3s"}`)
	if f.ThrottleRate != 1 || f.RetryAfter != 3*time.Second {
		t.Fatalf("faults %+v", f)
	}
	resp, _ := post(t, hs.Client(), hs.URL+"/w", event(1), secret)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("throttle: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Half the deliveries fail: over 200, both kinds of answer are seen (bounded loop).
	setFaults(t, hs, `{"error_rate":0.5}`)
	codes := map[int]int{}
	for i := 0; i < 200; i++ {
		resp, _ := post(t, hs.Client(), hs.URL+"/w", event(i), secret)
		codes[resp.StatusCode]++
	}
	if codes[200] < 50 || codes[500] < 50 {
		t.Fatalf("error_rate 0.5: %v", codes)
	}
	st := s.Stats()
	if st.Responses["500"] != int64(codes[500])+1 || st.Responses["429"] != 1 || st.Deliveries != int64(codes[200]) {
		t.Fatalf("stats %+v", st)
	}
	// Bad requests to the control endpoint.
	for _, bad := range []string{`{"error_rate":2}`, `{"error_rate":0.6,"reset_rate":0.6}`, `{"nope":1}`, `{"latency":"x"}`} {
		resp, _ := http.Post(hs.URL+"/_sink/faults", "application/json", strings.NewReader(bad))
		if resp.StatusCode != 400 {
			t.Fatalf("%s: %d", bad, resp.StatusCode)
		}
	}
}

func TestFaultLatency(t *testing.T) {
	_, hs := start(t, Options{})
	setFaults(t, hs, `{"latency":"150ms"}`)
	began := time.Now()
	if resp, _ := post(t, hs.Client(), hs.URL+"/w", event(1), secret); resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
	if d := time.Since(began); d < 150*time.Millisecond {
		t.Fatalf("answered after %v, latency is 150ms", d)
	}
}

func TestFaultTimeout(t *testing.T) {
	s, hs := start(t, Options{})
	setFaults(t, hs, `{"timeout_rate":1,"timeout_hold":"1m"}`)
	c := &http.Client{Timeout: 200 * time.Millisecond}
	_, err := post(t, c, hs.URL+"/w", event(1), secret)
	var ne interface{ Timeout() bool }
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("timeout fault: client got %v", err)
	}
	if st := s.Stats(); st.Responses["timeout"] != 1 || st.Deliveries != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The held request ends with the client's: Close does not wait a minute.
}

func TestFaultReset(t *testing.T) {
	s, hs := start(t, Options{})
	setFaults(t, hs, `{"reset_rate":1}`)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	_, err := post(t, c, hs.URL+"/w", event(1), secret)
	if err == nil {
		t.Fatal("reset fault: the request succeeded")
	}
	if !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "EOF") {
		t.Fatalf("reset fault: %v", err)
	}
	if st := s.Stats(); st.Responses["reset"] != 1 || st.Deliveries != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Back to normal at runtime.
	setFaults(t, hs, `{}`)
	if resp, err := post(t, c, hs.URL+"/w", event(1), secret); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after clearing faults: %v %v", resp, err)
	}
}

func TestControlEndpoints(t *testing.T) {
	_, hs := start(t, Options{})
	// A job's status: 404 until it arrives; a waiting request is answered when it does.
	resp, _ := http.Get(hs.URL + "/_sink/jobs/j9")
	if resp.StatusCode != 404 {
		t.Fatalf("unknown job: %d", resp.StatusCode)
	}
	got := make(chan JobStats, 1)
	go func() {
		resp, err := http.Get(hs.URL + "/_sink/jobs/j9?wait=30s")
		if err != nil {
			close(got)
			return
		}
		defer resp.Body.Close()
		var js JobStats
		json.NewDecoder(resp.Body).Decode(&js)
		got <- js
	}()
	post(t, hs.Client(), hs.URL+"/webhooks/x", event(5), secret)
	post(t, hs.Client(), hs.URL+"/webhooks/x", status("42", "j9"), secret)
	js := <-got
	if js.JobID != "j9" || js.WebhookID != "42" || js.Deliveries != 1 || js.Path != "/webhooks/x" {
		t.Fatalf("job %+v", js)
	}
	resp, err := http.Get(hs.URL + "/_sink/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st Stats
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Deliveries != 1 || st.Paths["/webhooks/x"] == nil || len(st.Paths["/webhooks/x"].Jobs) != 1 || st.Faults.RetryAfter != time.Second {
		t.Fatalf("stats %+v", st)
	}
	if resp, _ := http.Get(hs.URL + "/_sink/nope"); resp.StatusCode != 404 {
		t.Fatalf("unknown control endpoint: %d", resp.StatusCode)
	}
}
