package delivery

import (
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The Standard Webhooks reference vector: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,
// msg_p5jXN8AQM9LWM0D4loKWxJek, 1614265330, {"test": 2432232314}.
func TestSignStandardReferenceVector(t *testing.T) {
	key, err := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	const want = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	if got := SignStandard(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`)); got != want {
		t.Fatalf("SignStandard = %s, want %s", got, want)
	}
}

func TestVerifyStandard(t *testing.T) {
	key, other := []byte("app-secret"), []byte("another-secret")
	body := []byte(`{"for_user_id":"1"}`)
	now := time.Unix(1_800_000_000, 0)
	headers := func(id string, ts int64, sigs ...string) http.Header {
		h := http.Header{}
		h.Set(StandardIDHeader, id)
		h.Set(StandardTimestampHeader, strconv.FormatInt(ts, 10))
		h.Set(StandardSignatureHeader, strings.Join(sigs, " "))
		return h
	}
	ts := now.Unix()
	good := SignStandard(key, "msg_1", ts, body)
	for _, tc := range []struct {
		name string
		h    http.Header
		want string // "" for accepted
	}{
		{"valid", headers("msg_1", ts, good), ""},
		{"one of several (a rotation)", headers("msg_1", ts, SignStandard(other, "msg_1", ts, body), good), ""},
		{"4m59s old", headers("msg_1", ts-299, SignStandard(key, "msg_1", ts-299, body)), ""},
		{"stale: 5m01s old", headers("msg_1", ts-301, SignStandard(key, "msg_1", ts-301, body)), "more than the tolerance of 5m0s: a stale or replayed request"},
		{"from the future", headers("msg_1", ts+400, SignStandard(key, "msg_1", ts+400, body)), "more than the tolerance"},
		{"another secret", headers("msg_1", ts, SignStandard(other, "msg_1", ts, body)), "no webhook-signature value is the v1 signature"},
		{"another id", headers("msg_2", ts, good), "no webhook-signature value"},
		{"the timestamp changed", headers("msg_1", ts+1, good), "no webhook-signature value"},
		{"no id", headers("", ts, good), "no webhook-id header"},
		{"bad timestamp", func() http.Header { h := headers("msg_1", ts, good); h.Set(StandardTimestampHeader, "soon"); return h }(), `webhook-timestamp "soon" is not Unix seconds`},
		{"no signature", headers("msg_1", ts), "no webhook-signature header"},
	} {
		err := VerifyStandard(key, tc.h, body, now, DefaultTolerance)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if err := VerifyStandard(key, headers("msg_1", ts, good), append(body, ' '), now, DefaultTolerance); err == nil {
		t.Error("a changed body verified")
	}
}

// A delivery with Standard Webhooks and a rotation's previous secret: both Twitter headers,
// webhook-id the same on every attempt, a fresh timestamp and signatures (with both secrets) on
// each, all verifiable by a receiver holding either secret.
func TestDeliverStandardWebhooksWithRotation(t *testing.T) {
	clk := newFakeClock()
	c := newTestClient(t, testOptions(clk))
	var mu sync.Mutex
	var seen []http.Header
	srv := newServer(t, func(_ *server, n int64, w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "2")
			http.Error(w, "deploying", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	tg := target(srv.URL)
	tg.PreviousSecret, tg.StandardWebhooks, tg.MessageID = []byte("old-secret"), true, "msg_7_1234"
	if _, err := c.Deliver(t.Context(), tg, []byte(testBody)); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 {
		t.Fatalf("%d attempts", len(seen))
	}
	for i, h := range seen {
		if h.Get(SignatureHeader) != Sign([]byte("app-secret"), []byte(testBody)) || h.Get(PreviousSignatureHeader) != Sign([]byte("old-secret"), []byte(testBody)) {
			t.Errorf("attempt %d: Twitter headers %q, %q", i+1, h.Get(SignatureHeader), h.Get(PreviousSignatureHeader))
		}
		if h.Get(StandardIDHeader) != "msg_7_1234" {
			t.Errorf("attempt %d: webhook-id %q", i+1, h.Get(StandardIDHeader))
		}
		if n := len(strings.Fields(h.Get(StandardSignatureHeader))); n != 2 {
			t.Errorf("attempt %d: %d signatures in %q, want the new and the old one", i+1, n, h.Get(StandardSignatureHeader))
		}
		for _, key := range []string{"app-secret", "old-secret"} {
			if err := VerifyStandard([]byte(key), h, []byte(testBody), clk.Now(), DefaultTolerance); err != nil {
				t.Errorf("attempt %d: a receiver holding %s refuses it: %v", i+1, key, err)
			}
		}
	}
	if seen[0].Get(StandardTimestampHeader) == seen[1].Get(StandardTimestampHeader) {
		t.Errorf("the retry kept the first attempt's timestamp %s (the clock moved by 2 s)", seen[0].Get(StandardTimestampHeader))
	}
	// Without the option and without a rotation: neither the Standard headers nor the previous one.
	seen = nil
	plain := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
	})
	if _, err := c.Deliver(t.Context(), target(plain.URL), []byte(testBody)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{StandardIDHeader, StandardTimestampHeader, StandardSignatureHeader, PreviousSignatureHeader} {
		if v := seen[0].Get(name); v != "" {
			t.Errorf("%s: %q sent without the option", name, v)
		}
	}
	// No message id given: one derived from the body, stable.
	tg = target(plain.URL)
	tg.StandardWebhooks = true
	seen = nil
	for range 2 {
		if _, err := c.Deliver(t.Context(), tg, []byte(testBody)); err != nil {
			t.Fatal(err)
		}
	}
	if id := seen[0].Get(StandardIDHeader); id != DerivedMessageID([]byte(testBody)) || seen[1].Get(StandardIDHeader) != id || !strings.HasPrefix(id, "msg_") {
		t.Errorf("derived webhook-ids %q, %q", id, seen[1].Get(StandardIDHeader))
	}
}

// During a rotation's overlap the CRC challenge passes with an answer made with either secret.
func TestChallengeAcceptsThePreviousSecret(t *testing.T) {
	c := newTestClient(t, testOptions(newFakeClock()))
	old := crcServer(t, "old-secret", func(http.ResponseWriter, *http.Request, string) bool { return false })
	if err := Challenge(t.Context(), c, old.URL, []byte("new-secret"), []byte("old-secret")); err != nil {
		t.Fatalf("an answer with the previous secret during the overlap: %v", err)
	}
	if err := Challenge(t.Context(), c, old.URL, []byte("new-secret")); err == nil {
		t.Fatal("an answer with the previous secret after the overlap passed")
	}
}
