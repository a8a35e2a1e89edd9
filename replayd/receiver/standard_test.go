package receiver

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/replayd/delivery"
)

// A receiver with Standard Webhooks on verifies webhook-signature and refuses a stale or
// replayed request by its webhook-timestamp; the Twitter signature is checked as well, in its
// header or, during a rotation, in the previous one.
func TestStandardWebhooksVerification(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, hs := start(t, Options{StandardWebhooks: true, Now: func() time.Time { return now }, KeepDeliveries: true})
	send := func(body string, ts int64, id string, twitterHeader string, keys ...[]byte) int {
		t.Helper()
		req, _ := http.NewRequest("POST", hs.URL+"/hook", strings.NewReader(body))
		req.Header.Set(twitterHeader, delivery.Sign(secret, []byte(body)))
		var sigs []string
		for _, k := range keys {
			sigs = append(sigs, delivery.SignStandard(k, id, ts, []byte(body)))
		}
		req.Header.Set(delivery.StandardIDHeader, id)
		req.Header.Set(delivery.StandardTimestampHeader, strconv.FormatInt(ts, 10))
		req.Header.Set(delivery.StandardSignatureHeader, strings.Join(sigs, " "))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	old := []byte("the-previous-secret")
	ts := now.Unix()
	for _, tc := range []struct {
		name   string
		code   int
		status int
	}{
		{"valid", send(event(1), ts, "msg_1", delivery.SignatureHeader, secret), 200},
		{"valid among two signatures (a rotation)", send(event(2), ts, "msg_2", delivery.SignatureHeader, old, secret), 200},
		{"twitter signature in the previous header", send(event(3), ts, "msg_3", delivery.PreviousSignatureHeader, secret), 200},
		{"stale", send(event(4), ts-600, "msg_4", delivery.SignatureHeader, secret), 401},
		{"replayed an hour later", send(event(1), ts-3600, "msg_1", delivery.SignatureHeader, secret), 401},
		{"another secret", send(event(5), ts, "msg_5", delivery.SignatureHeader, old), 401},
		{"no twitter signature", send(event(6), ts, "msg_6", "x-other", secret), 401},
	} {
		if tc.code != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, tc.code, tc.status)
		}
	}
	if got := s.BadSignatures(); got != 4 {
		t.Errorf("%d refused, want 4", got)
	}
	var refused []string
	for _, d := range s.Deliveries() {
		if d.Refused != "" {
			refused = append(refused, d.Refused)
		}
	}
	if len(refused) != 4 || !strings.Contains(refused[0], "stale or replayed") || !strings.Contains(refused[2], "webhook-signature") || !strings.Contains(refused[3], "bad signature") {
		t.Errorf("refusals recorded: %q", refused)
	}
	// Without the option the Standard headers are not required.
	plain, phs := start(t, Options{KeepDeliveries: true})
	if resp, err := post(t, http.DefaultClient, phs.URL+"/hook", event(1), secret); err != nil || resp.StatusCode != 200 || plain.BadSignatures() != 0 {
		t.Fatalf("plain receiver: %v %v", resp, err)
	}
}
