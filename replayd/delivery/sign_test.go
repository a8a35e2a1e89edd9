package delivery

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestSignKnownVectors(t *testing.T) {
	// Vectors from `openssl dgst -sha256 -hmac consumer-secret -binary | base64`.
	body := `{"for_user_id":"2244994945","tweet_create_events":[]}`
	if got, want := Sign([]byte("consumer-secret"), []byte(body)), "sha256=8ZKMZJQlQBLCsGiw/q1yrNQyXpR6DZy3vh/q8ZeFj7M="; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	if got, want := CRCResponse([]byte("consumer-secret"), "crc-token-123"), "sha256=pqNVCku98klY+uShlb3Xa/LIgd2B2xq7EveP37yRYOI="; got != want {
		t.Errorf("CRCResponse = %s, want %s", got, want)
	}
	for _, tc := range []struct{ secret, msg string }{{"", ""}, {"k", "x"}, {"s3cr3t", strings.Repeat("é", 1000)}} {
		if got, want := Sign([]byte(tc.secret), []byte(tc.msg)), "sha256="+hmacB64(tc.secret, tc.msg); got != want {
			t.Errorf("Sign(%q, %q) = %s, want %s", tc.secret, tc.msg, got, want)
		}
	}
}

// crcServer answers CRC challenges as a webhook would, with its own HMAC computation; answer can
// override what it says.
func crcServer(t *testing.T, secret string, answer func(w http.ResponseWriter, r *http.Request, good string) bool) *server {
	return newServer(t, func(s *server, _ int64, w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "want GET", http.StatusMethodNotAllowed)
			return
		}
		token := r.URL.Query().Get("crc_token")
		if token == "" {
			http.Error(w, "no crc_token", http.StatusBadRequest)
			return
		}
		good := "sha256=" + hmacB64(secret, token)
		if answer != nil && answer(w, r, good) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"response_token": good})
	})
}

func TestChallengeSuccess(t *testing.T) {
	c := newTestClient(t, testOptions(newFakeClock()))
	var gotQuery string
	srv := crcServer(t, "app-secret", func(w http.ResponseWriter, r *http.Request, _ string) bool {
		gotQuery = r.URL.RawQuery
		return false
	})
	if err := Challenge(t.Context(), c, srv.URL+"/webhook", []byte("app-secret")); err != nil {
		t.Fatalf("Challenge: %v", err)
	}
	if !strings.HasPrefix(gotQuery, "crc_token=") {
		t.Errorf("query %q", gotQuery)
	}
	// A URL that already has a query keeps it and gets &crc_token appended.
	if err := Challenge(t.Context(), c, srv.URL+"/webhook?team=a%20b&x=1", []byte("app-secret")); err != nil {
		t.Fatalf("Challenge with query: %v", err)
	}
	if !strings.HasPrefix(gotQuery, "team=a%20b&x=1&crc_token=") || strings.Count(gotQuery, "?") != 0 {
		t.Errorf("query with existing parameters = %q", gotQuery)
	}
}

func TestChallengeFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answer  func(w http.ResponseWriter, r *http.Request, good string) bool
		want    string
		failure ChallengeFailure
	}{
		{"wrong token", func(w http.ResponseWriter, _ *http.Request, _ string) bool {
			fmt.Fprintf(w, `{"response_token":"sha256=%s"}`, hmacB64("other-secret", "x"))
			return true
		}, "is not sha256=base64(HMAC-SHA256", ChallengeWrongToken},
		{"no prefix", func(w http.ResponseWriter, _ *http.Request, good string) bool {
			fmt.Fprintf(w, `{"response_token":%q}`, strings.TrimPrefix(good, "sha256="))
			return true
		}, "does not start with sha256=", ChallengeWrongToken},
		{"non-200", func(w http.ResponseWriter, _ *http.Request, good string) bool {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, `{"response_token":%q}`, good)
			return true
		}, "webhook answered 500 Internal Server Error, want 200 OK", ChallengeBadAnswer},
		{"redirect", func(w http.ResponseWriter, r *http.Request, _ string) bool {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return true
		}, "webhook answered 302 Found, want 200 OK", ChallengeBadAnswer},
		{"bad json", func(w http.ResponseWriter, _ *http.Request, _ string) bool {
			io.WriteString(w, "<html>ok</html>")
			return true
		}, "answer is not a JSON object", ChallengeBadAnswer},
		{"missing field", func(w http.ResponseWriter, _ *http.Request, _ string) bool {
			io.WriteString(w, `{"token":"sha256=abc"}`)
			return true
		}, "answer has no response_token", ChallengeBadAnswer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestClient(t, testOptions(newFakeClock()))
			srv := crcServer(t, "app-secret", tc.answer)
			err := Challenge(t.Context(), c, srv.URL, []byte("app-secret"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Challenge error = %v, want one containing %q", err, tc.want)
			}
			var ce *ChallengeError
			if !errors.As(err, &ce) || ce.Failure != tc.failure || ce.PublicReason() != string(tc.failure) {
				t.Fatalf("Challenge error %#v, want a *ChallengeError of kind %q", err, tc.failure)
			}
		})
	}
}

func TestChallengeTimeout(t *testing.T) {
	o := testOptions(newFakeClock())
	o.Timeout = 100 * time.Millisecond
	c := newTestClient(t, o)
	srv := newServer(t, func(s *server, _ int64, w http.ResponseWriter, r *http.Request) { s.block(r) })
	err := Challenge(t.Context(), c, srv.URL, []byte("app-secret"))
	var te *TimeoutError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "no complete answer within 100ms") {
		t.Fatalf("Challenge error = %v, want a *TimeoutError", err)
	}
	var ce *ChallengeError
	if !errors.As(err, &ce) || ce.Failure != ChallengeTimeout {
		t.Fatalf("Challenge error = %#v, want kind %q", err, ChallengeTimeout)
	}
}

func TestChallengeDeniedAndBadURL(t *testing.T) {
	o := testOptions(newFakeClock())
	o.AllowPrivate = false
	c := newTestClient(t, o)
	srv := crcServer(t, "app-secret", nil)
	err := Challenge(t.Context(), c, srv.URL, []byte("app-secret"))
	var (
		de *DeniedError
		ce *ChallengeError
	)
	if !errors.As(err, &de) || !errors.As(err, &ce) || ce.Failure != ChallengeDenied {
		t.Fatalf("Challenge to loopback with AllowPrivate off: %v, want *DeniedError of kind %q", err, ChallengeDenied)
	}
	if strings.Contains(ce.PublicReason(), "127.0.0.1") {
		t.Errorf("public reason %q names the address", ce.PublicReason())
	}
	if srv.hits.Load() != 0 {
		t.Errorf("server saw %d requests", srv.hits.Load())
	}
	for _, u := range []string{"ftp://example.com/x", "/relative", "http://", "http://%zz"} {
		var te *TargetError
		if err := Challenge(t.Context(), c, u, nil); !errors.As(err, &te) || !errors.As(err, &ce) || ce.Failure != ChallengeBadURL {
			t.Errorf("Challenge(%q) = %v, want *TargetError of kind %q", u, err, ChallengeBadURL)
		}
	}
}

// TestChallengeRefusedAndLeaks: a closed port is "unreachable", and no kind of failure lets the
// registering app read what the URL answered (an internal page, here a metrics-like body).
func TestChallengeRefusedAndLeaks(t *testing.T) {
	c := newTestClient(t, testOptions(newFakeClock()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/hook"
	ln.Close()
	err = Challenge(t.Context(), c, closed, []byte("app-secret"))
	var ce *ChallengeError
	if !errors.As(err, &ce) || ce.Failure != ChallengeUnreachable || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Challenge to a closed port = %v, want kind %q with the detail in Error", err, ChallengeUnreachable)
	}
	const secretPage = "# HELP go_goroutines internal_secret_metric 42"
	srv := crcServer(t, "app-secret", func(w http.ResponseWriter, _ *http.Request, _ string) bool {
		io.WriteString(w, secretPage)
		return true
	})
	err = Challenge(t.Context(), c, srv.URL+"/metrics", []byte("app-secret"))
	if !errors.As(err, &ce) || ce.Failure != ChallengeBadAnswer {
		t.Fatalf("Challenge to a metrics page = %v, want kind %q", err, ChallengeBadAnswer)
	}
	if strings.Contains(ce.PublicReason(), "internal_secret_metric") || strings.Contains(ce.PublicReason(), "127.0.0.1") {
		t.Fatalf("public reason %q leaks the answer or the address", ce.PublicReason())
	}
	if !strings.Contains(err.Error(), "internal_secret_metric") {
		t.Fatalf("detail %q lost the answer the server log needs", err)
	}
}
