package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/loadgen/manifest"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/embeddedapp"
	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/receiver"
	"github.com/replay/replay/replayd/server"
)

// TestTwoDatacenters: `loadgen produce --topics` writes two datacenters' traffic with cross-DC
// duplicates, as dc1 holds it once MirrorMaker copied dc2's (the local log and the mirrored
// topic's beside it); its manifest says which datacenter got each record; a replayd reading both
// topics replays a window into a recording sink; `loadgen verify` finds it exact and says how
// many events each datacenter alone got, and, told the replay read dc1 only, finds dc2's events
// extra.
func TestTwoDatacenters(t *testing.T) {
	ctx := t.Context()
	data := t.TempDir()
	apps, err := embeddedapp.Open(embeddedapp.Options{Dir: filepath.Join(data, "apps")})
	if err != nil {
		t.Fatal(err)
	}
	created, err := apps.CreateApp(ctx, app.CreateAppParams{Name: "two-dc"})
	apps.Close()
	if err != nil {
		t.Fatal(err)
	}
	topics := "delivery_log,dc2.delivery_log"
	srv, err := server.New(ctx, server.Config{
		DataDir: data, Source: engine.SourceSpec{Topics: strings.Split(topics, ",")}, Partitions: 4,
		Listen: "127.0.0.1:0", Workers: 1, AllowPrivateWebhooks: true, WebhookRate: 100000, MirrorWait: 100 * time.Millisecond,
		Delivery: delivery.Options{BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, MaxAttempts: 8, Timeout: time.Second},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())
	recordPath := filepath.Join(t.TempDir(), "deliveries.jsonl")
	recordFile, err := os.Create(recordPath)
	if err != nil {
		t.Fatal(err)
	}
	sink := receiver.New(created.App.Secret, recordFile)
	hs := httptest.NewServer(sink)
	defer hs.Close()
	call := func(method, path string, out any) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+srv.Addr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+created.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %s %s", method, path, resp.Status, b)
		}
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatal(err)
			}
		}
	}
	var wh struct{ ID string }
	call("POST", "/1.1/account_activity/webhooks.json?url="+url.QueryEscape(hs.URL+"/webhooks/a"), &wh)

	end := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	mpath := filepath.Join(t.TempDir(), "run.manifest")
	out := runLoadgen(t, "produce", "--data", data, "--topics", topics, "--partitions", "4", "--cross-dc-rate", "0.25",
		"--webhook-ids", wh.ID, "--webhooks", "20", "--events", "8000", "--span", "2h", "--end", end.Format(time.RFC3339),
		"--dup-rate", "0.02", "--seed", "5", "--manifest", mpath, "--quiet")
	if !strings.Contains(out, "datacenters dc1") {
		t.Fatalf("produce summary lacks the datacenters:\n%s", out)
	}
	// The manifest knows which datacenter got what, and the logs hold exactly that.
	mf, err := os.Open(mpath)
	if err != nil {
		t.Fatal(err)
	}
	h, entries, err := manifest.ReadAll(mf)
	mf.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.DCs) != 2 || h.CrossDCRate != 0.25 {
		t.Fatalf("manifest header %+v", h)
	}
	var perDC [2]int64
	cross := map[uint64]uint8{}
	for _, e := range entries {
		perDC[e.DC]++
		cross[e.ID] |= 1 << e.DC
	}
	both := 0
	for _, set := range cross {
		if set == 3 {
			both++
		}
	}
	if both < len(cross)/6 || both > len(cross)/3 {
		t.Fatalf("%d of %d events in both datacenters at --cross-dc-rate 0.25", both, len(cross))
	}
	for dc, dir := range []string{filepath.Join(data, "log"), engine.EmbeddedTopicDir(filepath.Join(data, "log"), "dc2.delivery_log")} {
		src, err := engine.OpenDir(engine.DirOptions{Dir: dir, Topic: strings.Split(topics, ",")[dc]})
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for p := int32(0); p < 4; p++ {
			b, err := src.Bounds(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			n += b.End - b.Start
		}
		src.Close()
		if n != perDC[dc] {
			t.Fatalf("datacenter %d's log holds %d records, the manifest %d", dc+1, n, perDC[dc])
		}
	}

	from, to := end.Add(-100*time.Minute), end.Add(-40*time.Minute)
	var accepted struct {
		JobID string `json:"job_id"`
	}
	call("POST", fmt.Sprintf("/1.1/account_activity/replay/webhooks/%s/subscriptions/all.json?from_date=%s&to_date=%s",
		wh.ID, from.Format("200601021504"), to.Format("200601021504")), &accepted)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if st, err := sink.WaitStatus(wctx, accepted.JobID); err != nil || st.State != "Complete" {
		t.Fatalf("status %+v, %v", st, err)
	}
	if err := sink.Flush(); err != nil {
		t.Fatal(err)
	}
	recordFile.Close()
	args := []string{"verify", "--manifest", mpath, "--record", recordPath, "--webhook", wh.ID,
		"--from", from.Format("200601021504"), "--to", to.Format("200601021504")}
	out = runLoadgen(t, args...)
	if !strings.Contains(out, "missing 0, extra 0, duplicated 0") || !strings.Contains(out, "only in embedded:") || !strings.Contains(out, "in more than one") {
		t.Fatalf("verify of the two-DC replay:\n%s", out)
	}
	// Told that the replay read dc1's topic only, verify finds dc2's own events extra.
	var stdout, stderr bytes.Buffer
	root := newRootCommand()
	root.SetArgs(append(args, "--dcs", "1"))
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	if err := root.ExecuteContext(ctx); err == nil || !strings.Contains(stdout.String(), "extra ") || strings.Contains(stdout.String(), "extra 0,") {
		t.Fatalf("verify --dcs 1 of a two-DC replay: %v\n%s", err, stdout.String())
	}
}
