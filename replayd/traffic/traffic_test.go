package traffic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"testing"
	"time"
)

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(1000 + i)
	}
	return out
}

func generate(t *testing.T, cfg Config) []Event {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out []Event
	for {
		ev, ok := g.Next()
		if !ok {
			return out
		}
		out = append(out, ev)
	}
}

var end = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func base(n int) Config {
	return Config{Events: n, WebhookIDs: ids(100), Skew: 1.1, DupRate: 0.05, Jitter: 2 * time.Minute, Span: 5 * 24 * time.Hour, End: end, Seed: 42}
}

func TestZipfSkew(t *testing.T) {
	evs := generate(t, base(50000))
	counts := make([]int, 100)
	for _, e := range evs {
		counts[e.Webhook]++
	}
	g, _ := New(base(1))
	top10 := 0
	for k := 0; k < 10; k++ {
		top10 += counts[k]
	}
	share := float64(top10) / float64(len(evs))
	want := 0.0
	for k := 0; k < 10; k++ {
		want += g.Share(k)
	}
	// 10% of the webhooks hold most of the traffic, and the measured share matches Zipf's.
	if share < 0.5 || math.Abs(share-want) > 0.02 {
		t.Fatalf("top 10 of 100 webhooks hold %.3f of the records, Zipf(1.1) says %.3f", share, want)
	}
	if counts[0] < 5*counts[20] {
		t.Fatalf("rank 1 has %d records, rank 21 %d: not skewed", counts[0], counts[20])
	}
	// Skew 0 is uniform.
	cfg := base(50000)
	cfg.Skew = 0
	counts = make([]int, 100)
	for _, e := range generate(t, cfg) {
		counts[e.Webhook]++
	}
	sort.Ints(counts)
	if counts[0] < 350 || counts[99] > 650 {
		t.Fatalf("uniform: per-webhook counts range %d..%d, want about 500", counts[0], counts[99])
	}
}

func TestDuplicates(t *testing.T) {
	evs := generate(t, base(40000))
	seen := map[uint64]Event{}
	dups := 0
	for _, e := range evs {
		first, ok := seen[e.ID]
		if e.Duplicate != ok {
			t.Fatalf("event %d: duplicate flag %t, seen before %t", e.ID, e.Duplicate, ok)
		}
		if ok {
			dups++
			if first.Webhook != e.Webhook || first.Timestamp != e.Timestamp || !bytes.Equal(first.Body, e.Body) {
				t.Fatalf("duplicate of %d differs from the original", e.ID)
			}
			continue
		}
		seen[e.ID] = e
	}
	rate := float64(dups) / float64(len(evs))
	// 40000 Bernoulli(0.05) trials: σ ≈ 0.0011; allow 4σ.
	if math.Abs(rate-0.05) > 0.0045 {
		t.Fatalf("duplicate rate %.4f, want 0.05", rate)
	}
	cfg := base(5000)
	cfg.DupRate = 0
	for _, e := range generate(t, cfg) {
		if e.Duplicate {
			t.Fatal("duplicate with rate 0")
		}
	}
}

func TestJitterAndSpan(t *testing.T) {
	cfg := base(30000)
	evs := generate(t, cfg)
	start, stop := end.Add(-cfg.Span).UnixMilli(), end.UnixMilli()
	outOfOrder, maxBack := 0, int64(0)
	var prevMax int64
	for i, e := range evs {
		if e.Timestamp < start || e.Timestamp >= stop {
			t.Fatalf("event %d at %d outside the span [%d, %d)", i, e.Timestamp, start, stop)
		}
		if e.Duplicate {
			continue
		}
		nominal := start + int64(float64(stop-start)*float64(i)/float64(cfg.Events))
		if back := nominal - e.Timestamp; back < 0 || back > cfg.Jitter.Milliseconds() {
			t.Fatalf("event %d is %dms before its place, jitter is %v", i, back, cfg.Jitter)
		} else {
			maxBack = max(maxBack, back)
		}
		if e.Timestamp < prevMax {
			outOfOrder++
		}
		prevMax = max(prevMax, e.Timestamp)
	}
	if outOfOrder < len(evs)/4 || maxBack < cfg.Jitter.Milliseconds()*9/10 {
		t.Fatalf("only %d of %d records out of order, largest jitter %dms", outOfOrder, len(evs), maxBack)
	}
	// The span is covered: the first and last records are near its ends.
	if evs[0].Timestamp > start+cfg.Jitter.Milliseconds() || evs[len(evs)-1].Timestamp < stop-cfg.Jitter.Milliseconds()-60_000 {
		t.Fatalf("records span %d..%d, want about %d..%d", evs[0].Timestamp, evs[len(evs)-1].Timestamp, start, stop)
	}
	// No jitter: in order.
	cfg.Jitter, cfg.DupRate = 0, 0
	evs = generate(t, cfg)
	for i := 1; i < len(evs); i++ {
		if evs[i].Timestamp < evs[i-1].Timestamp {
			t.Fatalf("jitter 0: record %d goes back in time", i)
		}
	}
}

func TestPayloads(t *testing.T) {
	cfg := base(20000)
	evs := generate(t, cfg)
	types := map[string]int{}
	for _, e := range evs {
		if n := len(e.Body); n < 500 || n > 3072 {
			t.Fatalf("%s payload of %d bytes, want 0.5-3 KB: %s", e.Type, n, e.Body)
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(e.Body, &top); err != nil {
			t.Fatalf("%s payload is not JSON: %v\n%s", e.Type, err, e.Body)
		}
		if string(top["for_user_id"]) != `"2244994945"` || top[e.Type] == nil {
			t.Fatalf("payload lacks for_user_id or %s: %s", e.Type, e.Body)
		}
		id, ok := EventIDOf(e.Body)
		if !ok || id != strconv.FormatUint(e.ID, 10) {
			t.Fatalf("EventIDOf = %q, %t; want %d", id, ok, e.ID)
		}
		types[e.Type]++
	}
	for typ, w := range DefaultMix {
		got := float64(types[typ]) / float64(len(evs))
		want := w / 100
		if math.Abs(got-want) > 0.015 {
			t.Errorf("%s: %.3f of the records, mix says %.3f", typ, got, want)
		}
	}
	// The slow path reads a payload whose id_str is not first.
	if id, ok := EventIDOf([]byte(`{"for_user_id":"1","follow_events":[{"type":"follow","id_str":"77"}]}`)); !ok || id != "77" {
		t.Fatalf("EventIDOf slow path = %q %t", id, ok)
	}
	if _, ok := EventIDOf([]byte(`{"replay_job_status":{"job_id":"1"}}`)); ok {
		t.Fatal("a status event has no event id")
	}
	// Every type, tweet_delete_events included, is valid JSON carrying its id.
	for _, typ := range Types {
		c := base(20)
		c.Mix = map[string]float64{typ: 1}
		for _, e := range generate(t, c) {
			if !json.Valid(e.Body) {
				t.Fatalf("%s: invalid JSON %s", typ, e.Body)
			}
			if id, _ := EventIDOf(e.Body); id != fmt.Sprint(e.ID) {
				t.Fatalf("%s: id %q, want %d", typ, id, e.ID)
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	a, b := generate(t, base(3000)), generate(t, base(3000))
	for i := range a {
		if a[i].ID != b[i].ID || a[i].Timestamp != b[i].Timestamp || a[i].Webhook != b[i].Webhook || !bytes.Equal(a[i].Body, b[i].Body) {
			t.Fatalf("record %d differs between two runs with the same seed", i)
		}
	}
	c := base(3000)
	c.Seed = 43
	other := generate(t, c)
	same := 0
	for i := range a {
		if bytes.Equal(a[i].Body, other[i].Body) {
			same++
		}
	}
	if same > 0 {
		t.Fatalf("%d identical bodies with another seed", same)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Events: 1, Span: time.Hour},
		{Events: 1, WebhookIDs: []string{"x"}, Span: time.Hour},
		{Events: 1, WebhookIDs: ids(1), Span: time.Hour, DupRate: 1},
		{Events: 1, WebhookIDs: ids(1), Span: 0},
		{Events: 1, WebhookIDs: ids(1), Span: time.Hour, Skew: -1},
		{Events: 1, WebhookIDs: ids(1), Span: time.Hour, Mix: map[string]float64{"nope_events": 1}},
		{Events: 1, WebhookIDs: ids(1), Span: time.Hour, Mix: map[string]float64{"follow_events": 0}},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	if m, err := ParseMix("tweet_create=3,follow_events=1"); err != nil || m["tweet_create_events"] != 3 || m["follow_events"] != 1 {
		t.Fatalf("ParseMix: %v %v", m, err)
	}
	if _, err := ParseMix("bogus=1"); err == nil {
		t.Fatal("ParseMix accepted an unknown type")
	}
}
