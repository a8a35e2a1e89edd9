package delivery

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawServer is a TCP server on 127.0.0.1 whose every connection is served by serve, for answers
// net/http's server would not give. It counts connections and requests read by readRequest.
type rawServer struct {
	ln       net.Listener
	conns    atomic.Int64
	requests atomic.Int64
}

func newRawServer(t *testing.T, serve func(s *rawServer, conn net.Conn, br *bufio.Reader)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go func() {
				defer conn.Close()
				serve(s, conn, bufio.NewReader(conn))
			}()
		}
	}()
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() + "/hook" }

// readRequest reads one request and its body; false when the connection ended.
func (s *rawServer) readRequest(br *bufio.Reader) bool {
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, req.Body)
	s.requests.Add(1)
	return true
}

const ok200 = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

// TestDeliverResendsOnAConnectionTheWebhookClosed: a webhook that closes each connection after
// one answer, without saying so (no Connection: close), gets every event once, each on a fresh
// connection after the reused one fails before any answer.
func TestDeliverResendsOnAConnectionTheWebhookClosed(t *testing.T) {
	s := newRawServer(t, func(s *rawServer, conn net.Conn, br *bufio.Reader) {
		if s.readRequest(br) {
			io.WriteString(conn, ok200)
		}
	})
	c := newTestClient(t, testOptions(newFakeClock()))
	for i := range 5 {
		res, err := c.Deliver(t.Context(), target(s.url()), []byte(testBody))
		if err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
		if res.Attempts != 1 {
			t.Errorf("delivery %d took %d attempts, want 1: the resend is part of the attempt", i, res.Attempts)
		}
	}
	if got := s.requests.Load(); got != 5 {
		t.Errorf("the webhook read %d requests for 5 events, want 5", got)
	}
}

// TestDeliverDoesNotResendAfterATimeout: a reused connection on which the answer does not come in
// time is not used to send the event again at once (that is the retry policy's call).
func TestDeliverDoesNotResendAfterATimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	s := newRawServer(t, func(s *rawServer, conn net.Conn, br *bufio.Reader) {
		for s.readRequest(br) {
			if s.requests.Load() > 1 {
				<-release // no answer
				return
			}
			io.WriteString(conn, ok200)
		}
	})
	o := testOptions(newFakeClock())
	o.Timeout = 200 * time.Millisecond
	o.MaxAttempts = 1
	c := newTestClient(t, o)
	if _, err := c.Deliver(t.Context(), target(s.url()), []byte(testBody)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Deliver(t.Context(), target(s.url()), []byte(testBody))
	var te *TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("a webhook that does not answer: %v, want a timeout", err)
	}
	if got := s.requests.Load(); got != 2 {
		t.Errorf("the webhook read %d requests, want 2 (no resend after the timeout)", got)
	}
}

// TestDeliverSkipsInformationalAnswers: 100 Continue and 103 Early Hints before the answer are
// not the answer.
func TestDeliverSkipsInformationalAnswers(t *testing.T) {
	s := newRawServer(t, func(s *rawServer, conn net.Conn, br *bufio.Reader) {
		for s.readRequest(br) {
			io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"+
				"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy")
		}
	})
	o := testOptions(newFakeClock())
	o.MaxAttempts = 1
	c := newTestClient(t, o)
	res, err := c.Deliver(t.Context(), target(s.url()), []byte(testBody))
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 503 || se.Body != "busy" || se.RetryAfter != 7*time.Second || res.Status != 503 {
		t.Fatalf("answer %d, %v; want the 503 with its body and Retry-After", res.Status, err)
	}
}

// TestDeliverBoundsTheAnswer: a webhook sending headers without end fails the attempt once
// maxAnswer bytes were read, instead of being read forever.
func TestDeliverBoundsTheAnswer(t *testing.T) {
	s := newRawServer(t, func(s *rawServer, conn net.Conn, br *bufio.Reader) {
		if !s.readRequest(br) {
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 OK\r\n")
		line := "X-Pad: " + strings.Repeat("p", 1000) + "\r\n"
		for {
			if _, err := io.WriteString(conn, line); err != nil {
				return
			}
		}
	})
	o := testOptions(newFakeClock())
	o.MaxAttempts = 1
	c := newTestClient(t, o)
	_, err := c.Deliver(t.Context(), target(s.url()), []byte(testBody))
	if !errors.Is(err, errAnswerTooLong) {
		t.Fatalf("endless headers: %v, want %v", err, errAnswerTooLong)
	}
}

// TestDeliverKeepsAtMostMaxIdleConnsPerHost: connections past the idle cap are closed when
// their answer is read, and Close closes the idle ones.
func TestDeliverKeepsAtMostMaxIdleConnsPerHost(t *testing.T) {
	srv := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, _ *http.Request) {})
	o := testOptions(newFakeClock())
	o.MaxIdleConnsPerHost = 2
	c := newTestClient(t, o)
	ep := c.endpoints.get(srv.URL)
	var cs []*conn
	for range 4 {
		cn, err := c.dial(t.Context(), ep)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, cn)
	}
	for _, cn := range cs {
		c.conns.put(cn, o.MaxIdleConnsPerHost, time.Now())
	}
	if n := len(c.conns.idle[ep.key]); n != 2 {
		t.Fatalf("%d idle connections kept, want 2", n)
	}
	if _, err := cs[3].nc.Write([]byte("x")); err == nil {
		t.Error("a connection past the cap is still open")
	}
	c.Close()
	if _, err := cs[0].nc.Write([]byte("x")); err == nil {
		t.Error("an idle connection is still open after Close")
	}
	// An idle connection past the idle timeout is not handed out.
	cn, err := c.dial(t.Context(), ep)
	if err != nil {
		t.Fatal(err)
	}
	c.conns.put(cn, o.MaxIdleConnsPerHost, time.Now().Add(-idleTimeout))
	if got := c.conns.get(ep.key, time.Now()); got != nil {
		t.Error("a connection idle past the timeout was handed out")
	}
}

// TestDeliverOverTLS: an https webhook gets the event over TLS, checked against
// Options.TLSConfig's roots, on one kept-alive connection; an http server behind an https URL is
// a scheme mismatch.
func TestDeliverOverTLS(t *testing.T) {
	var hits, newConns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || r.Header.Get(SignatureHeader) == "" {
			http.Error(w, "want TLS and a signature", http.StatusBadRequest)
			return
		}
		hits.Add(1)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			newConns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	o := testOptions(newFakeClock())
	o.TLSConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
	c := newTestClient(t, o)
	for range 3 {
		if _, err := c.Deliver(t.Context(), target(srv.URL), []byte(testBody)); err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 3 || newConns.Load() != 1 {
		t.Errorf("%d events over %d connections, want 3 over 1", hits.Load(), newConns.Load())
	}

	// Without the test server's root, its certificate is refused, and not retried.
	o.TLSConfig = nil
	strict := newTestClient(t, o)
	if _, err := strict.Deliver(t.Context(), target(srv.URL), []byte(testBody)); err == nil || IsRetryable(err) {
		t.Errorf("an unknown certificate: %v, want a failure that is not retried", err)
	}

	plain := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, _ *http.Request) {})
	_, err := c.Deliver(t.Context(), target(strings.Replace(plain.URL, "http://", "https://", 1)), []byte(testBody))
	if !errors.Is(err, http.ErrSchemeMismatch) {
		t.Errorf("https to an http server: %v, want %v", err, http.ErrSchemeMismatch)
	}
}

// FuzzExchangeAnswer: whatever a webhook answers, an exchange returns an answer or an error,
// never panics, reads no more than maxAnswer bytes of it, and keeps the connection only after a
// complete answer.
func FuzzExchangeAnswer(f *testing.F) {
	for _, seed := range []string{
		ok200,
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n0\r\n\r\n",
		"HTTP/1.1 429 Too Many Requests\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"garbage\r\n\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, reply []byte) {
		c, err := New(Options{AllowPrivate: true, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			br := bufio.NewReader(server)
			if req, err := http.ReadRequest(br); err == nil {
				io.Copy(io.Discard, req.Body)
			}
			server.Write(reply) // until the client closes its end
		}()
		raw := &writeBoundConn{Conn: client}
		cn := &conn{key: connKey{addr: "fuzz:80"}, nc: raw, raw: raw}
		cn.budget.r = cn.nc
		cn.br = bufio.NewReaderSize(&cn.budget, 4<<10)
		ep := parseEndpoint("http://fuzz/hook")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a, err := c.exchangeOn(ctx, cn, &request{ep: ep, userAgent: DefaultUserAgent, body: []byte(testBody)})
		if err == nil && (a.code < 200 && a.code != http.StatusSwitchingProtocols || a.code > 999) {
			t.Fatalf("answer with status %d and no error", a.code)
		}
		if cn.budget.n < 0 {
			t.Fatalf("read %d bytes past the bound", -cn.budget.n)
		}
		if len(a.head) > 256 {
			t.Fatalf("kept %d bytes of the body", len(a.head))
		}
		c.Close()
		client.Close()
	})
}

// TestAttemptOfAnEndpointNoRequestCanBeMadeFor: an endpoint parseEndpoint could make no request
// for (reqErr) fails every attempt with that error, and no connection is opened.
func TestAttemptOfAnEndpointNoRequestCanBeMadeFor(t *testing.T) {
	s := newRawServer(t, func(s *rawServer, conn net.Conn, br *bufio.Reader) {
		for s.readRequest(br) {
			io.WriteString(conn, ok200)
		}
	})
	c := newTestClient(t, testOptions(newFakeClock()))
	ep := *c.endpoints.get(s.url()) // its address is the server's
	ep.reqErr = &TargetError{URL: s.url(), Reason: "test: no request"}
	var res Result
	if err := c.attempt(t.Context(), &ep, signer{}, []byte(testBody), &res); err != ep.reqErr {
		t.Fatalf("attempt: %v, want %v", err, ep.reqErr)
	}
	if n := s.conns.Load(); n != 0 {
		t.Fatalf("%d connections opened for an endpoint no request can be made for", n)
	}
}
