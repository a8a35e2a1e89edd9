package app_test

import (
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/replay/replay/replayd/app"
)

func TestNewID(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seen := map[int64]bool{}
	prev := int64(0)
	for i := range 1000 {
		id := app.NewID(t0.Add(time.Duration(i) * time.Millisecond))
		if id <= 0 || id < 1<<60 || seen[id] {
			t.Fatalf("id %d: want positive, large, unique", id)
		}
		if id>>22 <= prev>>22 {
			t.Fatalf("id %d is not ordered after %d", id, prev)
		}
		seen[id], prev = true, id
	}
	if got := len(app.NewToken()); got != 43 {
		t.Fatalf("token length %d", got)
	}
	s := app.NewSecret()
	if b, err := base64.RawURLEncoding.DecodeString(string(s)); err != nil || len(b) != 32 {
		t.Fatalf("secret %q is not base64url of 32 bytes: %v", s, err)
	}
}

func TestValidateURL(t *testing.T) {
	for _, ok := range []string{"https://example.com/webhook", "http://127.0.0.1:9000/x?y=1"} {
		if err := app.ValidateURL(ok); err != nil {
			t.Errorf("ValidateURL(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "example.com", "ftp://x/", "https:///path", "https://a@b/"} {
		if err := app.ValidateURL(bad); err == nil {
			t.Errorf("ValidateURL(%q) accepted", bad)
		}
	}
	if err := (app.CreateWebhookParams{URL: "x"}).Validate(); !errors.Is(err, app.ErrInvalidParams) {
		t.Fatalf("Validate = %v", err)
	}
}
