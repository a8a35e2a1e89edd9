package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replay/replay/replayd/delivery"
	"github.com/replay/replay/replayd/server"
	"github.com/replay/replay/replayd/testwait"
)

// readUntilClosed reads c until the server closes it, or fails after limit.
func readUntilClosed(t *testing.T, c net.Conn, limit time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: the server kept the connection open for %v", what, limit)
	}
	return time.Since(start)
}

// TestServeClosesIdleAndSlowConnections: an idle keep-alive connection is closed after
// HTTPIdleTimeout, and a client trickling its body is cut off at HTTPReadTimeout.
func TestServeClosesIdleAndSlowConnections(t *testing.T) {
	e := startE2E(t, func(c *server.Config) {
		c.HTTPIdleTimeout, c.HTTPReadTimeout = 300*time.Millisecond, 500*time.Millisecond
	})
	// Idle: one request, then nothing.
	c, err := net.Dial("tcp", e.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if d := readUntilClosed(t, c, 10*time.Second, "idle keep-alive connection"); d > 5*time.Second {
		t.Fatalf("idle connection closed after %v", d)
	}
	// Slow body: 100 kB announced, one byte now and then.
	s, err := net.Dial("tcp", e.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	io.WriteString(s, "POST /1.1/account_activity/webhooks.json?url=x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for range 100 { // 10 s of trickling unless the server cuts it off
			if _, err := s.Write([]byte("x")); err != nil {
				return
			}
			<-tick.C
		}
	}()
	if d := readUntilClosed(t, s, 10*time.Second, "a body trickled one byte at a time"); d > 8*time.Second {
		t.Fatalf("slow body cut off after %v", d)
	}
	<-done
}

// TestServeCapsConnections: past MaxConns a new connection is not served until one closes.
func TestServeCapsConnections(t *testing.T) {
	e := startE2E(t, func(c *server.Config) { c.MaxConns = 2 })
	http.DefaultClient.CloseIdleConnections() // the set-up's connection gives its slot back
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", e.srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("healthz: %v %v", resp, err)
		}
		held = append(held, c)
	}
	third, err := net.Dial("tcp", e.srv.Addr()) // the kernel accepts it into the backlog
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	io.WriteString(third, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	r := bufio.NewReader(third)
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("a third connection was served with MaxConns 2")
	}
	held[0].Close()
	third.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the third connection after one closed: %v %v", resp, err)
	}
}

// TestServeInvalidWebhookGetsNoDeliveries: a webhook that stops answering the CRC challenge is
// marked invalid by a check (PUT), its replays are refused with 400/214 and it gets no events;
// when it answers again, a check makes it valid and replays work.
func TestServeInvalidWebhookGetsNoDeliveries(t *testing.T) {
	e := startE2E(t, nil)
	now := time.Now().UTC().Truncate(time.Minute)
	var broken atomic.Bool
	var posts atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
			return
		}
		token := r.URL.Query().Get("crc_token")
		if broken.Load() {
			token = "not the token"
		}
		json.NewEncoder(w).Encode(map[string]string{"response_token": delivery.CRCResponse(e.secret, token)})
	}))
	t.Cleanup(hook.Close)
	var reg struct{ ID string }
	if code := e.call("POST", "/1.1/account_activity/webhooks.json?url="+url.QueryEscape(hook.URL+"/h"), &reg); code != 200 {
		t.Fatalf("register: %d", code)
	}
	e.webhook, _ = strconv.ParseInt(reg.ID, 10, 64)
	e.produce(300, now.Add(-2*time.Hour), time.Hour)
	broken.Store(true)
	var errs struct {
		Errors []struct{ Code int } `json:"errors"`
	}
	if code := e.call("PUT", "/1.1/account_activity/webhooks/"+reg.ID+".json", &errs); code != 400 || len(errs.Errors) != 1 || errs.Errors[0].Code != 214 {
		t.Fatalf("PUT check of a failing webhook: %d %+v", code, errs)
	}
	if _, code := e.replay(now.Add(-2*time.Hour), now.Add(-time.Hour)); code != 400 {
		t.Fatalf("replay of an invalid webhook: %d, want 400", code)
	}
	broken.Store(false)
	if code := e.call("PUT", "/1.1/account_activity/webhooks/"+reg.ID+".json", nil); code != 204 {
		t.Fatalf("PUT check of a healed webhook: %d", code)
	}
	if posts.Load() != 0 {
		t.Fatalf("the webhook got %d POSTs while invalid", posts.Load())
	}
	jobID, code := e.replay(now.Add(-2*time.Hour), now.Add(-time.Hour))
	if code != 202 {
		t.Fatalf("replay after a passing check: %d", code)
	}
	testwait.For(t, 60*time.Second, "the replay to the healed webhook", func() bool {
		var j struct{ State string }
		e.call("GET", "/replay/jobs/"+jobID, &j)
		return j.State == "COMPLETED"
	})
	if posts.Load() == 0 {
		t.Fatal("no deliveries after the webhook was valid again")
	}
}

// --metrics-listen puts /metrics on its own address: there it answers, on the API's it does not,
// and the metrics address serves nothing of the API.
func TestServeMetricsOnItsOwnAddress(t *testing.T) {
	e := startE2E(t, func(c *server.Config) { c.MetricsListen = "127.0.0.1:0" })
	get := func(addr, path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if e.srv.MetricsAddr() == e.srv.Addr() {
		t.Fatalf("metrics on %s, the API's address", e.srv.MetricsAddr())
	}
	if code, body := get(e.srv.MetricsAddr(), "/metrics"); code != 200 || !strings.Contains(body, "replay_jobs{state=") || !strings.Contains(body, "replay_api_requests_total") {
		t.Fatalf("metrics address /metrics: %d %.200s", code, body)
	}
	if code, _ := get(e.srv.Addr(), "/metrics"); code != 404 {
		t.Fatalf("API address /metrics: %d, want 404", code)
	}
	if code, _ := get(e.srv.MetricsAddr(), "/healthz"); code != 404 {
		t.Fatalf("metrics address /healthz: %d, want 404", code)
	}
}
