package verify

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/loadgen/produce"
	"github.com/replay/replay/replayd/dedup"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/receiver"
	"github.com/replay/replay/replayd/traffic"
	"github.com/replay/replay/segment"
)

type logged struct {
	webhook string
	id      string
	ts      int64
	body    []byte
	dedup   uint64
}

// world is traffic produced into an embedded log with a manifest, and the log read back.
type world struct {
	manifest string
	records  []logged
	hooks    []string
	end      time.Time
}

func produceWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	end := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	hooks := []string{"1095098195724595200", "1095098195724595201", "1095098195724595202", "1095098195724595203"}
	out, err := produce.OpenEmbedded(filepath.Join(dir, "log"), 4, false, produce.DefaultBatching)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{manifest: filepath.Join(dir, "m"), hooks: hooks, end: end}
	f, err := os.Create(w.manifest)
	if err != nil {
		t.Fatal(err)
	}
	_, err = produce.Run(context.Background(), produce.Options{Manifest: f, Traffic: traffic.Config{
		Events: 4000, WebhookIDs: hooks, Skew: 0.5, DupRate: 0.05, Jitter: 3 * time.Minute, Span: 4 * time.Hour, End: end, Seed: 5}}, out)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	l, err := engine.Open(engine.Options{Dir: filepath.Join(dir, "log"), Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for p := int32(0); p < 4; p++ {
		l.Scan(context.Background(), p, 0, func(b *segment.Batch) error {
			var rr segment.RecordReader
			rr.Reset(b)
			for rr.Next() {
				r := rr.Record()
				id, _ := r.HeaderValue("event-id")
				w.records = append(w.records, logged{string(r.Key), string(id), r.Timestamp, bytes.Clone(r.Value), dedup.RecordKey(r.Headers, r.Value)})
			}
			return rr.Err()
		})
	}
	if len(w.records) != 4000 {
		t.Fatalf("log holds %d records", len(w.records))
	}
	return w
}

// replay is what a correct replay of webhook in [from, to) delivers: the window's records of the
// webhook in log order, duplicates dropped by replayd's dedup identity.
func (w *world) replay(webhook string, from, to time.Time) []logged {
	seen := map[uint64]bool{}
	var out []logged
	for _, r := range w.records {
		if r.webhook == webhook && r.ts >= from.UnixMilli() && r.ts < to.UnixMilli() && !seen[r.dedup] {
			seen[r.dedup] = true
			out = append(out, r)
		}
	}
	return out
}

func (w *world) open() (io.ReadCloser, error) { return os.Open(w.manifest) }

// record writes sink record lines for deliveries on path, then the job's status event.
func record(path, webhook, job string, ds []logged) []receiver.Delivery {
	var out []receiver.Delivery
	at := time.Now()
	for _, d := range ds {
		out = append(out, receiver.Delivery{At: at, Path: path, EventID: d.id, SignatureValid: true})
	}
	return append(out, receiver.Delivery{At: at, Path: path, SignatureValid: true, Status: &receiver.Status{WebhookID: webhook, JobID: job, State: "Complete"}})
}

func TestVerifyDetectsMissingExtraDuplicates(t *testing.T) {
	w := produceWorld(t)
	hook := w.hooks[1]
	from, to := w.end.Add(-3*time.Hour), w.end.Add(-time.Hour)
	good := w.replay(hook, from, to)
	if len(good) < 200 {
		t.Fatalf("window holds %d events", len(good))
	}
	run := func(rec []receiver.Delivery, o Options) *Report {
		t.Helper()
		o.Webhook, o.From, o.To = hook, from, to
		r, err := Run(o, w.open, rec)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Exactly right: passes.
	r := run(record("/webhooks/b", hook, "1", good), Options{})
	if !r.OK() || r.Expected != len(good) || r.Delivered != len(good) || r.Path != "/webhooks/b" || r.Job == nil || r.Job.JobID != "1" {
		var b bytes.Buffer
		r.Write(&b)
		t.Fatalf("correct replay failed:\n%s", b.String())
	}
	if r.Produced <= r.Expected {
		t.Fatalf("the window's records include no duplicates: produced %d, expected %d", r.Produced, r.Expected)
	}

	// Wrong: the 3rd and 10th missing, the 5th delivered three times, one event of another
	// webhook, one from before the window, one unknown id, one bad signature.
	var other, early logged
	for _, rec := range w.records {
		if rec.webhook == w.hooks[0] && other.id == "" {
			other = rec
		}
		if rec.webhook == hook && rec.ts < from.UnixMilli() && early.id == "" {
			early = rec
		}
	}
	var bad []logged
	for i, g := range good {
		switch i {
		case 2, 9:
			continue
		case 4:
			bad = append(bad, g, g)
		}
		bad = append(bad, g)
	}
	bad = append(bad, other, early, logged{id: "12345"})
	rec := record("/webhooks/b", hook, "2", bad)
	rec = append([]receiver.Delivery{{Path: "/webhooks/b", EventID: good[0].id}}, rec...) // unsigned
	// Another webhook's traffic on another path, and an earlier job on this one, are ignored.
	rec = append(record("/webhooks/a", w.hooks[0], "0", w.replay(w.hooks[0], from, to)), rec...)
	rec = append(record("/webhooks/b", hook, "1", good), rec...)
	r = run(rec, Options{Limit: 2})
	var out bytes.Buffer
	r.Write(&out)
	t.Log("\n" + out.String())
	if r.OK() || r.Missing != 2 || r.Extra != 3 || r.Duplicated != 1 || r.DupCopies != 2 || r.BadSignatures != 1 || r.Job.JobID != "2" {
		t.Fatalf("report %+v", r)
	}
	if r.MissingList[0].ID != mustU(good[2].id) || r.MissingList[1].ID != mustU(good[9].id) || len(r.ExtraList) != 2 || r.DupList[0] != (Dup{good[4].id, 3}) {
		t.Fatalf("lists: missing %v extra %v dup %v", r.MissingList, r.ExtraList, r.DupList)
	}
	if !strings.Contains(r.ExtraList[0].Reason, "webhook "+w.hooks[0]) || !strings.Contains(r.ExtraList[1].Reason, "outside the window") {
		t.Fatalf("extra reasons %v", r.ExtraList)
	}
	for _, s := range []string{"missing 2, extra 3, duplicated 1", "FAILED", "delivered 3 times"} {
		if !strings.Contains(out.String(), s) {
			t.Fatalf("report lacks %q", s)
		}
	}
	// The earlier job on the same path is still correct, chosen by --job.
	if r := run(rec, Options{Job: "1"}); !r.OK() {
		t.Fatalf("job 1: %+v", r)
	}
	// Errors: unknown webhook, unknown job, ambiguous path.
	if _, err := Run(Options{Webhook: "9", From: from, To: to}, w.open, record("/x", "9", "1", nil)); err == nil {
		t.Fatal("a webhook not in the manifest was verified")
	}
	if _, err := Run(Options{Webhook: hook, From: from, To: to, Job: "77"}, w.open, rec); err == nil {
		t.Fatal("an unknown job was verified")
	}
	amb := append(record("/p", "x", "1", nil), record("/q", "y", "2", nil)...)
	if _, err := Run(Options{Webhook: hook, From: from, To: to}, w.open, amb); err == nil {
		t.Fatal("verified without knowing the path")
	}
}

func mustU(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }

// Through a real sink: the correct replay's bodies POSTed, signed, to an in-process sink whose
// record file verify reads.
func TestVerifyThroughSinkRecord(t *testing.T) {
	w := produceWorld(t)
	hook := w.hooks[0]
	from, to := w.end.Add(-4*time.Hour), w.end.Add(-30*time.Minute)
	secret := []byte("app-secret")
	recPath := filepath.Join(t.TempDir(), "record.jsonl")
	f, err := os.Create(recPath)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	s := receiver.NewWithOptions(receiver.Options{Secret: secret, Record: bw})
	hs := httptest.NewServer(s)
	defer hs.Close()
	postBody := func(body []byte) {
		req, _ := http.NewRequest("POST", hs.URL+"/webhooks/main", bytes.NewReader(body))
		req.Header.Set("x-twitter-webhooks-signature", signFor(secret, body))
		resp, err := hs.Client().Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	good := w.replay(hook, from, to)
	for _, g := range good {
		postBody(g.body)
	}
	postBody([]byte(fmt.Sprintf(`{"replay_job_status":{"webhook_id":%q,"job_state":"Complete","job_state_description":"Job completed successfully","job_id":"55"}}`, hook)))
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rf, _ := os.Open(recPath)
	rec, err := ReadRecord(rf)
	rf.Close()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(Options{Webhook: hook, From: from, To: to}, w.open, rec)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Delivered != len(good) || r.Job.JobID != "55" || r.Job.State != "Complete" {
		var b bytes.Buffer
		r.Write(&b)
		t.Fatal(b.String())
	}
}

func TestParseTime(t *testing.T) {
	a, err := ParseTime("202605011030")
	b, err2 := ParseTime("2026-05-01T12:30:00+02:00")
	if err != nil || err2 != nil || !a.Equal(b) {
		t.Fatalf("%v %v %v %v", a, err, b, err2)
	}
	if _, err := ParseTime("yesterday"); err == nil {
		t.Fatal("parsed nonsense")
	}
}

func TestReadRecordTornTail(t *testing.T) {
	in := `{"path":"/a","event_id":"1","signature_valid":true}` + "\n" + `{"path":"/a","ev`
	rec, err := ReadRecord(strings.NewReader(in))
	if err != nil || len(rec) != 1 || rec[0].EventID != "1" {
		t.Fatalf("%+v %v", rec, err)
	}
	if _, err := ReadRecord(strings.NewReader("nope\n")); err == nil {
		t.Fatal("garbage read")
	}
}

func signFor(secret, body []byte) string { return delivery.Sign(secret, body) }
