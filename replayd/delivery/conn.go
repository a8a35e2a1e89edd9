package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// A delivery's HTTP/1.1 exchange runs on connections of the Client's own, on the caller's
// goroutine: the request is written in one write, the answer read and parsed by net/http's own
// parser (http.ReadResponse), and the connection goes back to an idle list for the next event.
//
// Why not http.Transport: for a webhook delivery (one small POST, one small answer, on a
// keep-alive connection) the Transport's machinery was most of the client's CPU. It hands every
// request to two goroutines of the connection (its write and read loops) and back through
// channels, watches the context from another, and builds a header map and a response for each
// request. Measured with 512 requests in flight to a webhook 20 ms away: 26 µs of client CPU per
// request through the Transport, 16 µs this way (ARCHITECTURE.md, "Delivery").
//
// What the Transport did that matters here is done here too: the dial-time guard (the dialer's
// Control), TLS with the host's name, keep-alive with a cap of idle connections per host and an
// idle timeout, one resend on a fresh connection when a reused one turns out to have been closed
// by the webhook before it answered anything, 1xx answers skipped, a bound on how much of an
// answer is read. Proxies are never used (a proxy would dial for us, past the guard).

// idleTimeout is how long an idle keep-alive connection is kept; a webhook's server commonly
// closes them sooner, which the resend on a fresh connection covers.
const idleTimeout = 90 * time.Second

// maxAnswer bounds the bytes read from the connection for one answer, head and body: a webhook
// cannot make a delivery read forever (headers without end) or buffer without bound.
const maxAnswer = 1 << 20

// connKey names the connections that can carry a request: same scheme, same address.
type connKey struct {
	tls  bool
	addr string // host:port, the host in ASCII (punycode)
}

// conn is one keep-alive connection to a webhook.
type conn struct {
	key    connKey
	nc     net.Conn        // raw, or TLS over raw
	raw    *writeBoundConn // the TCP connection, whose writes are bounded in time
	budget budgetReader    // what br reads from: nc, within this answer's budget
	br     *bufio.Reader
	wbuf   []byte    // the request being written, reused from one request to the next
	idleAt time.Time // when it was put back
	used   bool      // it carried an exchange before the current one
}

// conns are a Client's idle keep-alive connections, by destination.
type conns struct {
	mu        sync.Mutex
	idle      map[connKey][]*conn
	lastSweep time.Time
}

// get returns the most recently idled connection to key still within the idle timeout, or nil.
func (p *conns) get(key connKey, now time.Time) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	for len(list) > 0 {
		c := list[len(list)-1]
		list = list[:len(list)-1]
		if now.Sub(c.idleAt) < idleTimeout {
			p.idle[key] = list
			return c
		}
		c.nc.Close()
	}
	delete(p.idle, key)
	return nil
}

// put makes c idle, or closes it when key already has maxIdle idle connections. Now and then it
// closes the connections idle past the timeout, of every destination.
func (p *conns) put(c *conn, maxIdle int, now time.Time) {
	c.idleAt, c.used = now, true
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.lastSweep) > idleTimeout/2 {
		for k, list := range p.idle {
			kept := list[:0]
			for _, ic := range list {
				if now.Sub(ic.idleAt) < idleTimeout {
					kept = append(kept, ic)
				} else {
					ic.nc.Close()
				}
			}
			if len(kept) == 0 {
				delete(p.idle, k)
			} else {
				p.idle[k] = kept
			}
		}
		p.lastSweep = now
	}
	if p.idle == nil {
		p.idle = make(map[connKey][]*conn)
	}
	if len(p.idle[c.key]) >= maxIdle {
		c.nc.Close()
		return
	}
	p.idle[c.key] = append(p.idle[c.key], c)
}

// closeIdle closes every idle connection.
func (p *conns) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, list := range p.idle {
		for _, c := range list {
			c.nc.Close()
		}
	}
	p.idle = nil
}

// budgetReader reads from r until n bytes were read for the current answer.
type budgetReader struct {
	r io.Reader
	n int64
}

// errAnswerTooLong is an answer that went past maxAnswer bytes before its end was read.
var errAnswerTooLong = fmt.Errorf("the answer is longer than %d bytes", maxAnswer)

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errAnswerTooLong
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	return n, err
}

// dial opens a connection to ep: TCP through the guarded dialer, then TLS for https.
func (c *Client) dial(ctx context.Context, ep *endpoint) (*conn, error) {
	nc, err := c.dialer.DialContext(ctx, "tcp", ep.key.addr)
	if err != nil {
		return nil, err
	}
	raw := &writeBoundConn{Conn: nc}
	cn := &conn{key: ep.key, nc: raw, raw: raw}
	if ep.key.tls {
		cfg := c.tlsConfig(ep.serverName)
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			var rh tls.RecordHeaderError
			if errors.As(err, &rh) && string(rh.RecordHeader[:]) == "HTTP/" {
				return nil, http.ErrSchemeMismatch // an HTTP server answered the TLS hello
			}
			return nil, err
		}
		cn.nc = tc
	}
	cn.budget.r = cn.nc
	cn.br = bufio.NewReaderSize(&cn.budget, 4<<10)
	return cn, nil
}

// tlsConfig is the TLS configuration of a connection to serverName.
func (c *Client) tlsConfig(serverName string) *tls.Config {
	var cfg *tls.Config
	if c.opts.TLSConfig != nil {
		cfg = c.opts.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = serverName
	}
	cfg.NextProtos = []string{"http/1.1"}
	return cfg
}

// answer is what an exchange read: the status and what attempt needs of the rest.
type answer struct {
	code       int
	status     string // "503 Service Unavailable"
	retryAfter string // the Retry-After header
	head       []byte // the first bytes of a non-2xx answer's body
}

// errLostBeforeAnswer is a reused connection that failed before a byte of the answer came back:
// the webhook closed it while it was idle. The request is sent again on a fresh connection.
type errLostBeforeAnswer struct{ err error }

func (e errLostBeforeAnswer) Error() string { return e.err.Error() }
func (e errLostBeforeAnswer) Unwrap() error { return e.err }

// exchange sends req to ep and reads the answer, within ctx
// (the attempt's context: its deadline bounds the dial, every write and every read). A reused
// connection the webhook had closed is replaced by a fresh one, once. The connection goes back to
// the idle list only when the answer was read whole and the webhook keeps it open.
func (c *Client) exchange(ctx context.Context, ep *endpoint, req *request) (answer, error) {
	for fresh := false; ; fresh = true {
		var cn *conn
		if !fresh {
			cn = c.conns.get(ep.key, time.Now())
		}
		if cn == nil {
			var err error
			if cn, err = c.dial(ctx, ep); err != nil {
				return answer{}, err
			}
		}
		a, err := c.exchangeOn(ctx, cn, req)
		var lost errLostBeforeAnswer
		if errors.As(err, &lost) {
			if cn.used && !fresh && closedByPeer(lost.err) && ctx.Err() == nil {
				continue
			}
			err = lost.err
		}
		return a, err
	}
}

// closedByPeer says whether err is the other end having closed the connection: what IsRetryable
// retries as a connection failure, less a refused dial (never a timeout: a webhook too slow to
// answer is not sent the event again at once).
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

// exchangeOn is one exchange on cn, which it puts back or closes.
func (c *Client) exchangeOn(ctx context.Context, cn *conn, req *request) (a answer, err error) {
	reusable := false
	defer func() {
		if reusable {
			c.conns.put(cn, c.opts.MaxIdleConnsPerHost, time.Now())
		} else {
			cn.nc.Close()
		}
	}()
	dl, _ := ctx.Deadline()
	// The writes are bounded by the deadline twice: by the connection's deadline (the runtime's
	// timer) and by writeBoundConn, which reads the clock at each write, so that a process stopped
	// past the deadline (a worker whose lease ended there) cannot write after it.
	cn.nc.SetDeadline(dl) //nolint:errcheck // a closed connection fails the write anyway
	cn.raw.setWriteBy(dl)
	// The context's cancellation (not only its deadline) ends a write or read under way.
	stop := context.AfterFunc(ctx, func() { cn.nc.SetDeadline(time.Unix(1, 0)) }) //nolint:errcheck
	defer func() {
		if !stop() {
			reusable = false // its deadline was moved to the past
		}
	}()
	// The caller's context is asked once more right before the request leaves: a worker's lease
	// context reads its clock in Err.
	if err := ctx.Err(); err != nil {
		return a, err
	}
	cn.wbuf = req.appendTo(cn.wbuf[:0])
	if _, err := cn.nc.Write(cn.wbuf); err != nil {
		return a, errLostBeforeAnswer{err}
	}
	cn.budget.n = maxAnswer
	if _, err := cn.br.Peek(1); err != nil {
		return a, errLostBeforeAnswer{err}
	}
	var resp *http.Response
	for {
		if resp, err = http.ReadResponse(cn.br, nil); err != nil {
			return a, err
		}
		// 1xx answers (100 Continue, 103 Early Hints) precede the answer; 101 would switch
		// protocols, which a webhook has no reason to, and is taken as the (failed) answer.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	a = answer{code: resp.StatusCode, status: resp.Status}
	if a.code < 200 || a.code > 299 {
		a.head, _ = io.ReadAll(io.LimitReader(resp.Body, 256))
		a.retryAfter = resp.Header.Get("Retry-After")
	}
	// The rest of the body is read so the connection can carry the next request; a longer body
	// costs the connection instead. A body cut short does not change the answer.
	n, derr := io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain+1))
	resp.Body.Close()
	reusable = derr == nil && n <= maxDrain && !resp.Close && a.code != http.StatusSwitchingProtocols
	return a, nil
}
