package delivery

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// Client delivers events. It is safe for concurrent use; build one per process with New and share
// it, so that keep-alive connections and each webhook's rate limiter are shared by all jobs.
type Client struct {
	opts Options
	http *http.Client // the CRC challenge's
	// Deliveries go on connections of the Client's own (conn.go says why), dialed by dialer.
	dialer *net.Dialer
	conns  conns
	// unlimited: RateLimit is +Inf, no limiter is kept or waited on.
	unlimited bool

	endpoints endpoints
	signers   signers

	mu        sync.Mutex
	limiters  map[string]*limiterEntry
	lastSweep time.Time
}

type limiterEntry struct {
	lim      *rate.Limiter
	lastUsed time.Time
}

// New returns a Client for opts (defaults filled in, then validated).
func New(opts Options) (*Client, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	c := &Client{opts: opts, limiters: make(map[string]*limiterEntry),
		unlimited: math.IsInf(opts.RateLimit, 1)}
	c.dialer = &net.Dialer{
		Timeout:   opts.Timeout,
		KeepAlive: 30 * time.Second,
		Control:   c.control,
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true) // HTTP/1.1 keep-alive only, including over TLS
	tr := &http.Transport{
		Proxy:                 nil, // never from the environment: a proxy would dial for us, past the guard
		DialContext:           c.dialer.DialContext,
		Protocols:             &protocols,
		TLSClientConfig:       opts.TLSConfig,
		MaxIdleConns:          0, // no global cap; the per-host cap below applies
		MaxIdleConnsPerHost:   opts.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   opts.Timeout,
		ExpectContinueTimeout: 0,
		DisableCompression:    true,
		// No ResponseHeaderTimeout: the per-attempt context bounds the whole exchange.
	}
	c.http = &http.Client{
		Transport: tr,
		// A redirect is the webhook's answer, not somewhere to go: a 3xx fails the delivery.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Close closes idle connections. The Client stays usable.
func (c *Client) Close() {
	c.conns.closeIdle()
	c.http.CloseIdleConnections()
}

// Options returns the Client's options, defaults filled in.
func (c *Client) Options() Options { return c.opts }

// limiter returns the rate limiter of webhookID, creating it on first use. Limiters idle long
// enough to be full again are dropped: a fresh one behaves the same.
func (c *Client) limiter(webhookID string, now time.Time) *rate.Limiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	idle := limiterIdle(c.opts.RateLimit, c.opts.RateBurst)
	if now.Sub(c.lastSweep) > idle {
		for id, e := range c.limiters {
			if now.Sub(e.lastUsed) > idle {
				delete(c.limiters, id)
			}
		}
		c.lastSweep = now
	}
	e := c.limiters[webhookID]
	if e == nil {
		e = &limiterEntry{lim: rate.NewLimiter(rate.Limit(c.opts.RateLimit), c.opts.RateBurst)}
		c.limiters[webhookID] = e
	}
	e.lastUsed = now
	return e.lim
}

// limiterIdle is how long a limiter must go unused before it is certainly full again, plus margin.
func limiterIdle(perSec float64, burst int) time.Duration {
	refill := time.Duration(float64(burst) / perSec * float64(time.Second))
	return max(refill, 0) + 10*time.Minute
}

// waitRate takes one token of lim, sleeping (through the Sleep seam) until it is available.
func (c *Client) waitRate(ctx context.Context, lim *rate.Limiter) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := c.opts.Now()
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return fmt.Errorf("delivery: rate limiter refused a single event (burst %d)", lim.Burst())
	}
	if d := r.DelayFrom(now); d > 0 {
		if err := c.opts.Sleep(ctx, d); err != nil {
			r.CancelAt(c.opts.Now())
			return err
		}
	}
	return nil
}

// control is the net.Dialer's Control: it runs after the name was resolved, for each address the
// dialer is about to connect to, so the check sees the real destination (no DNS rebinding gap).
func (c *Client) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &DeniedError{Address: address, Reason: "unparsable address"}
	}
	if err := CheckDestination(ap.Addr(), c.opts.AllowPrivate); err != nil {
		err.(*DeniedError).Address = address
		return err
	}
	return nil
}

// writeBoundConn refuses to write at or after its write-by time, which it compares with the clock
// itself at every write. A net.Conn's own write deadline is enforced by a runtime timer: a process
// stopped (SIGSTOP) past the deadline can run its writer before that timer fires, and the bytes
// would leave late. exchangeOn sets the time for each request.
type writeBoundConn struct {
	net.Conn
	by atomic.Pointer[time.Time] // nil: no bound
}

func (c *writeBoundConn) Write(b []byte) (int, error) {
	if by := c.by.Load(); by != nil && !time.Now().Before(*by) {
		return 0, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
	}
	return c.Conn.Write(b)
}

// setWriteBy bounds the connection's writes at dl, or lifts the bound for a zero dl.
func (c *writeBoundConn) setWriteBy(dl time.Time) {
	if dl.IsZero() {
		c.by.Store(nil)
		return
	}
	c.by.Store(&dl)
}
