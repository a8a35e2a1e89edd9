package delivery

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestCheckDestination(t *testing.T) {
	const (
		always = iota // denied whatever AllowPrivate says
		unlessAllowed
		allowed
	)
	for _, tc := range []struct {
		addr string
		want int
	}{
		{"169.254.169.254", always},
		{"169.254.170.2", always},
		{"169.254.0.1", always},
		{"fe80::1", always},
		{"fe80::1%eth0", always},
		{"fd00:ec2::254", always},
		{"100.100.100.200", always},
		{"::ffff:169.254.169.254", always},
		{"64:ff9b::a9fe:a9fe", always}, // NAT64 of 169.254.169.254
		{"224.0.0.1", always},          // link-local multicast
		{"ff02::1", always},
		{"127.0.0.1", unlessAllowed},
		{"127.10.20.30", unlessAllowed},
		{"::1", unlessAllowed},
		{"::ffff:127.0.0.1", unlessAllowed},
		{"10.1.2.3", unlessAllowed},
		{"172.16.0.1", unlessAllowed},
		{"172.31.255.255", unlessAllowed},
		{"192.168.1.1", unlessAllowed},
		{"100.64.0.1", unlessAllowed},
		{"100.127.255.254", unlessAllowed},
		{"fc00::1", unlessAllowed},
		{"fd12:3456::1", unlessAllowed},
		{"0.0.0.0", unlessAllowed},
		{"0.1.2.3", unlessAllowed},
		{"::", unlessAllowed},
		{"239.1.2.3", unlessAllowed},
		{"ff0e::1", unlessAllowed},
		{"255.255.255.255", unlessAllowed},
		{"64:ff9b::a00:1", unlessAllowed}, // NAT64 of 10.0.0.1
		// IPv6 forms that embed an IPv4 address are judged by it.
		{"::7f00:1", unlessAllowed},                             // IPv4-compatible 127.0.0.1
		{"::127.0.0.1", unlessAllowed},                          // the same, dotted
		{"::a9fe:a9fe", always},                                 // IPv4-compatible 169.254.169.254
		{"::ffff:0:7f00:1", unlessAllowed},                      // SIIT 127.0.0.1
		{"::ffff:0:a9fe:a9fe", always},                          // SIIT 169.254.169.254
		{"2002:a9fe:a9fe::1", always},                           // 6to4 of 169.254.169.254
		{"2002:7f00:1::1", unlessAllowed},                       // 6to4 of 127.0.0.1
		{"2002:c0a8:101::1", unlessAllowed},                     // 6to4 of 192.168.1.1
		{"64:ff9b:1::7f00:1", unlessAllowed},                    // local-use NAT64
		{"64:ff9b:1::a9fe:a9fe", always},                        // local-use NAT64 of the metadata address
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", unlessAllowed}, // Teredo, client 127.0.0.1
		{"2001:0:4136:e378:8000:63bf:5601:5601", always},        // Teredo, client 169.254.169.254
		{"2001:0:a9fe:a9fe:8000:63bf:3fff:fdd2", always},        // Teredo, server 169.254.169.254
		{"2606:4700::5efe:7f00:1", unlessAllowed},               // ISATAP interface id, 127.0.0.1
		{"2606:4700::200:5efe:a00:1", unlessAllowed},            // ISATAP interface id, 10.0.0.1
		// IANA special-purpose ranges that are not globally reachable.
		{"198.18.0.1", unlessAllowed},
		{"198.19.255.254", unlessAllowed},
		{"240.0.0.1", unlessAllowed},
		{"192.0.0.170", unlessAllowed},
		{"192.0.2.1", unlessAllowed},
		{"198.51.100.7", unlessAllowed},
		{"203.0.113.9", unlessAllowed},
		{"192.88.99.1", unlessAllowed},
		{"100::1", unlessAllowed},
		{"2001:2::1", unlessAllowed},
		{"2001:10::1", unlessAllowed},
		{"2001:db8::1", unlessAllowed},
		{"3fff::1", unlessAllowed},
		{"5f00::1", unlessAllowed},
		{"fec0::1", unlessAllowed},
		// Public, including the forms above when what they embed is public.
		{"8.8.8.8", allowed},
		{"192.31.196.1", allowed}, // AS112, globally reachable
		{"192.175.48.1", allowed}, // AS112, globally reachable
		{"198.20.0.1", allowed},   // just past 198.18.0.0/15
		{"239.255.255.255", unlessAllowed},
		{"2002:808:808::1", allowed},                      // 6to4 of 8.8.8.8
		{"64:ff9b::808:808", allowed},                     // NAT64 of 8.8.8.8
		{"2001:0:4136:e378:8000:63bf:f7f7:f7f7", allowed}, // Teredo, client 8.8.8.8
		{"2001:4860:4860::8888", allowed},
		{"172.32.0.1", allowed},
		{"100.128.0.1", allowed},
		{"2606:4700::1111", allowed},
		{"::ffff:1.1.1.1", allowed},
	} {
		a := netip.MustParseAddr(tc.addr)
		for _, allow := range []bool{false, true} {
			err := CheckDestination(a, allow)
			wantDenied := tc.want == always || (tc.want == unlessAllowed && !allow)
			if (err != nil) != wantDenied {
				t.Errorf("CheckDestination(%s, allowPrivate=%v) = %v, want denied=%v", tc.addr, allow, err, wantDenied)
			}
			var de *DeniedError
			if err != nil && (!errors.As(err, &de) || IsRetryable(err)) {
				t.Errorf("CheckDestination(%s): %v is not a non-retryable *DeniedError", tc.addr, err)
			}
		}
	}
}

// TestControl drives the dialer's Control function with the "ip:port" strings a dial hands it.
func TestControl(t *testing.T) {
	strict := newTestClient(t, Options{})
	lax := newTestClient(t, Options{AllowPrivate: true})
	for _, tc := range []struct {
		network, address string
		strict, lax      bool // allowed?
	}{
		{"tcp4", "127.0.0.1:8080", false, true},
		{"tcp6", "[::1]:443", false, true},
		{"tcp4", "169.254.169.254:80", false, false},
		{"tcp6", "[fd00:ec2::254]:80", false, false},
		{"tcp4", "100.100.100.200:80", false, false},
		{"tcp6", "[fe80::1%lo]:80", false, false},
		{"tcp6", "[::7f00:1]:80", false, true},
		{"tcp6", "[::ffff:0:7f00:1]:80", false, true},
		{"tcp6", "[2002:a9fe:a9fe::1]:80", false, false},
		{"tcp4", "93.184.215.14:443", true, true},
		{"tcp", "not-an-address", false, false},
	} {
		for _, side := range []struct {
			c    *Client
			want bool
		}{{strict, tc.strict}, {lax, tc.lax}} {
			err := side.c.control(tc.network, tc.address, nil)
			if (err == nil) != side.want {
				t.Errorf("control(%s, %s) with AllowPrivate=%v = %v, want allowed=%v", tc.network, tc.address, side.c.opts.AllowPrivate, err, side.want)
			}
			var de *DeniedError
			if err != nil && (!errors.As(err, &de) || de.Address != tc.address) {
				t.Errorf("control(%s): %v does not name the address", tc.address, err)
			}
		}
	}
}

// TestDeliverDeniedAtDial: with AllowPrivate off a delivery to a loopback server never leaves the
// dialer and is not retried; with it on the same delivery goes through.
func TestDeliverDeniedAtDial(t *testing.T) {
	clk := newFakeClock()
	srv := newServer(t, func(_ *server, _ int64, w http.ResponseWriter, _ *http.Request) {})
	o := testOptions(clk)
	o.AllowPrivate = false
	strict := newTestClient(t, o)
	res, err := strict.Deliver(t.Context(), target(srv.URL), []byte(testBody))
	var de *DeniedError
	if !errors.As(err, &de) || IsRetryable(err) || res.Attempts != 1 || len(clk.Sleeps()) != 0 {
		t.Fatalf("Deliver to loopback with AllowPrivate off = %+v, %v (sleeps %v)", res, err, clk.Sleeps())
	}
	if de.Address != srv.Listener.Addr().String() {
		t.Errorf("denied address %q, want %q", de.Address, srv.Listener.Addr())
	}
	if srv.hits.Load() != 0 || srv.newConn.Load() != 0 {
		t.Errorf("server saw %d requests on %d connections", srv.hits.Load(), srv.newConn.Load())
	}
	// A name that resolves to loopback is caught at dial time too.
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	if _, err := strict.Deliver(t.Context(), target("http://localhost:"+port), nil); !errors.As(err, &de) {
		t.Errorf("Deliver to localhost = %v, want *DeniedError", err)
	}

	o.AllowPrivate = true
	lax := newTestClient(t, o)
	if _, err := lax.Deliver(t.Context(), target(srv.URL), []byte(testBody)); err != nil {
		t.Fatalf("Deliver to loopback with AllowPrivate on: %v", err)
	}
}

func TestIsRetryable(t *testing.T) {
	opErr := func(err error) error {
		return &url.Error{Op: "Post", URL: "http://h/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: err}}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"500", &StatusError{Code: 500}, true},
		{"502", &StatusError{Code: 502}, true},
		{"503", &StatusError{Code: 503}, true},
		{"599", &StatusError{Code: 599}, true},
		{"429", &StatusError{Code: 429}, true},
		{"400", &StatusError{Code: 400}, false},
		{"401", &StatusError{Code: 401}, false},
		{"404", &StatusError{Code: 404}, false},
		{"408", &StatusError{Code: 408}, false},
		{"413", &StatusError{Code: 413}, false},
		{"301", &StatusError{Code: 301}, false},
		{"302", &StatusError{Code: 302}, false},
		{"304", &StatusError{Code: 304}, false},
		{"attempt timeout", &TimeoutError{Err: context.DeadlineExceeded}, true},
		{"caller canceled", context.Canceled, false},
		{"caller deadline", context.DeadlineExceeded, false},
		{"caller canceled in url.Error", &url.Error{Op: "Post", Err: context.Canceled}, false},
		{"denied", &DeniedError{Address: "127.0.0.1:80"}, false},
		{"denied at dial", opErr(&DeniedError{Address: "169.254.169.254:80"}), false},
		{"bad target", &TargetError{Reason: "x"}, false},
		{"refused", opErr(os.NewSyscallError("connect", syscall.ECONNREFUSED)), true},
		{"reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, true},
		{"broken pipe", fmt.Errorf("write: %w", syscall.EPIPE), true},
		{"eof", fmt.Errorf("Post: %w", io.EOF), true},
		{"unexpected eof", io.ErrUnexpectedEOF, true},
		{"dns temporary", opErr(&net.DNSError{Err: "server misbehaving", IsTemporary: true}), true},
		{"dns not found", opErr(&net.DNSError{Err: "no such host", IsNotFound: true}), false},
		{"network timeout", &net.OpError{Op: "dial", Err: timeoutErr{}}, true},
		{"certificate", &url.Error{Op: "Post", Err: x509.UnknownAuthorityError{}}, false},
		{"unsupported scheme", &url.Error{Op: "Post", Err: errors.New(`unsupported protocol scheme "ftp"`)}, false},
		{"plain error", errors.New("something else"), false},
		{"delivery error of a 503", &Error{Err: &StatusError{Code: 503}}, true},
		{"delivery error canceled", &Error{Err: context.Canceled, Last: &StatusError{Code: 503}}, false},
	} {
		if got := IsRetryable(tc.err); got != tc.want {
			t.Errorf("IsRetryable(%s: %v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// deadlineErr is a transport timeout that also matches context.DeadlineExceeded, as net/http's
// "timeout awaiting response headers" does.
type deadlineErr struct{}

func (deadlineErr) Error() string        { return "net/http: timeout awaiting response headers" }
func (deadlineErr) Timeout() bool        { return true }
func (deadlineErr) Temporary() bool      { return true }
func (deadlineErr) Is(target error) bool { return target == context.DeadlineExceeded }

func TestAttemptErrorTimeouts(t *testing.T) {
	c := newTestClient(t, Options{})
	live := t.Context()
	for _, err := range []error{
		&url.Error{Op: "Post", URL: "http://h/?token=secret", Err: deadlineErr{}},
		&url.Error{Op: "Post", URL: "http://h/?token=secret", Err: &net.OpError{Op: "read", Err: timeoutErr{}}},
	} {
		got := c.attemptError(live, live, err)
		var te *TimeoutError
		if !errors.As(got, &te) || !IsRetryable(got) {
			t.Errorf("attemptError(%v) with a live caller = %v, want a retryable *TimeoutError", err, got)
		}
		if strings.Contains(got.Error(), "secret") {
			t.Errorf("attemptError kept the URL: %v", got)
		}
		gone, cancel := context.WithCancel(live)
		cancel()
		// The caller's own end is not the attempt's timeout (Deliver stops on ctx.Err() anyway).
		if got := c.attemptError(gone, gone, err); errors.As(got, &te) {
			t.Errorf("attemptError(%v) after the caller gave up = %v, want no *TimeoutError", err, got)
		}
	}
}

// TestChallengeDeniedEmbeddedIPv4: a webhook URL whose host is an IPv6 literal embedding a
// loopback IPv4 address (http://[::127.0.0.1]/) is refused at the dial when AllowPrivate is off,
// so registration's CRC check cannot be pointed at the server's own loopback services that way.
func TestChallengeDeniedEmbeddedIPv4(t *testing.T) {
	strict := newTestClient(t, Options{})
	for _, u := range []string{
		"http://[::127.0.0.1]:8080/webhook",
		"http://[::ffff:0:127.0.0.1]:8080/webhook",
		"http://[2002:7f00:1::1]:8080/webhook",
	} {
		err := Challenge(t.Context(), strict, u, []byte("secret"))
		var de *DeniedError
		if !errors.As(err, &de) {
			t.Errorf("Challenge(%s) with AllowPrivate off = %v, want a *DeniedError", u, err)
		}
	}
}
