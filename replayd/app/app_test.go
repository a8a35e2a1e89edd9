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

// TestNormalizeURL: URLs that name the same resource normalize to one string; different ones stay
// different.
func TestNormalizeURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://example.com/hook", "https://example.com/hook"},
		{"HTTPS://Example.COM/hook", "https://example.com/hook"},
		{"https://example.com:443/hook", "https://example.com/hook"},
		{"http://example.com:80/hook", "http://example.com/hook"},
		{"http://example.com:8080/hook", "http://example.com:8080/hook"},
		{"https://example.com:80/hook", "https://example.com:80/hook"},
		{"https://example.com", "https://example.com/"},
		{"https://example.com/hook?", "https://example.com/hook"},
		{"https://example.com/%68%6F%6Fk", "https://example.com/hook"},
		{"https://example.com/%7euser/a%2fb", "https://example.com/~user/a%2Fb"},
		{"https://example.com/hook?a=%7e&b=%2f", "https://example.com/hook?a=~&b=%2F"},
		{"https://example.com/hook?a=1", "https://example.com/hook?a=1"},
		{"http://[::1]:80/x", "http://[::1]/x"},
		{"http://[2001:DB8::1]:9000/x", "http://[2001:db8::1]:9000/x"},
	} {
		got, err := app.NormalizeURL(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		again, err := app.NormalizeURL(got)
		if err != nil || again != got {
			t.Errorf("NormalizeURL is not idempotent on %q: %q, %v", got, again, err)
		}
	}
	for _, bad := range []string{"", "ftp://example.com/", "https:///x", "https://u:p@example.com/", "https://example.com/#f", "https://example.com/a%zz"} {
		if got, err := app.NormalizeURL(bad); err == nil {
			t.Errorf("NormalizeURL(%q) = %q, want an error", bad, got)
		}
	}
}
