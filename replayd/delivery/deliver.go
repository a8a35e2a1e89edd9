package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

// Target is where one webhook's events go.
type Target struct {
	WebhookID string // rate limits are per WebhookID
	URL       string // http or https
	Secret    []byte // the app's consumer secret, the HMAC key of the signature
	// PreviousSecret, when set (a rotation's overlap), signs every POST too: the Twitter
	// signature in PreviousSignatureHeader, and a second Standard Webhooks signature.
	PreviousSecret []byte
	// StandardWebhooks adds the Standard Webhooks headers (webhook-id, webhook-timestamp,
	// webhook-signature) to every POST.
	StandardWebhooks bool
	// MessageID is the webhook-id of the message: the same for every attempt and every
	// redelivery of it (a receiver's idempotency key). Empty: derived from the body's SHA-256.
	MessageID string
}

// Result describes a delivery, successful or not.
type Result struct {
	Attempts int           // attempts made (requests sent or tried), at most MaxAttempts
	Status   int           // HTTP status of the last answer; 0 if the last attempt got none
	Latency  time.Duration // round trip of the last attempt
	Elapsed  time.Duration // from the call to the return, rate-limit waits and backoffs included
}

// StatusError is a non-2xx answer from the webhook.
type StatusError struct {
	Code       int
	Status     string        // e.g. "503 Service Unavailable"
	RetryAfter time.Duration // the honoured Retry-After (capped), on 429 and 503; 0 if absent
	Body       string        // the first bytes of the answer's body, for diagnosis
}

func (e *StatusError) Error() string {
	s := "webhook answered " + e.Status
	if e.Code >= 300 && e.Code < 400 {
		s += " (redirects are not followed)"
	}
	if e.Body != "" {
		s += fmt.Sprintf(": %q", e.Body)
	}
	return s
}

// DeniedError is a destination refused by the dial-time guard (see CheckDestination). It is never
// retried.
type DeniedError struct {
	Address string // the resolved address, "ip:port" when it comes from a dial
	Reason  string
}

func (e *DeniedError) Error() string {
	return "destination " + e.Address + " denied: " + e.Reason
}

// TargetError is a webhook URL that cannot be delivered to at all. It is never retried.
type TargetError struct {
	URL    string
	Reason string
}

func (e *TargetError) Error() string {
	if e.URL == "" {
		return "bad webhook URL: " + e.Reason
	}
	return fmt.Sprintf("bad webhook URL %q: %s", e.URL, e.Reason)
}

// TimeoutError is an attempt that did not complete within Options.Timeout while the caller's
// context was still live. It is retried.
type TimeoutError struct {
	Timeout time.Duration
	Err     error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("no complete answer within %v: %v", e.Timeout, e.Err)
}

func (e *TimeoutError) Unwrap() error { return e.Err }

// Error is what Deliver returns when an event was not delivered.
type Error struct {
	WebhookID string
	Host      string
	Attempts  int
	// Err is why the delivery stopped: the last attempt's error when it was not retryable or the
	// attempts ran out, or the context's error when the caller gave up.
	Err error
	// Last is the last attempt's error when Err is the context's, else nil.
	Last error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("delivery to webhook %s (%s) failed after %d attempt(s): ", e.WebhookID, e.Host, e.Attempts)
	switch {
	case e.Last != nil:
		s += fmt.Sprintf("%v (last attempt: %v)", e.Err, e.Last)
	case IsRetryable(e.Err):
		s += fmt.Sprintf("attempts exhausted, last: %v", e.Err)
	default:
		s += fmt.Sprintf("not retryable: %v", e.Err)
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// IsRetryable is the one rule that decides whether a failed attempt is tried again.
//
// Retried: a 429 or 5xx answer (*StatusError), an attempt that ran out of Options.Timeout
// (*TimeoutError), and connection-level failures: refused, reset, broken pipe, EOF before a whole
// answer, network timeouts, temporary DNS failures (any net.Error that is none of the below).
//
// Not retried: nil; any other status (3xx, since redirects are not followed, and 4xx other than
// 429); a destination refused by the guard (*DeniedError); a bad URL (*TargetError); the caller's
// context being canceled or past its deadline; a host name that does not exist; and errors that are
// not network errors at all (TLS certificate problems, malformed answers, unsupported schemes).
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	var de *DeniedError
	var te *TargetError
	if errors.As(err, &de) || errors.As(err, &te) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code == http.StatusTooManyRequests || (se.Code >= 500 && se.Code <= 599)
	}
	var to *TimeoutError
	if errors.As(err, &to) {
		return true
	}
	// After the attempt timeout: a context error here is the caller's.
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return !dns.IsNotFound
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	// *url.Error is itself a net.Error whatever it wraps; judge what it wraps.
	for {
		var ue *url.Error
		if !errors.As(err, &ue) {
			break
		}
		err = ue.Err
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// maxDrain is how much of an answer's body is read so its connection can be reused; a longer body
// costs the connection instead.
const maxDrain = 256 << 10

// Deliver POSTs body to t.URL, signed with t.Secret, and retries as IsRetryable says: before each
// attempt it takes a token of t.WebhookID's rate limiter; after a retryable failure it waits the
// Retry-After of a 429/503 (at most MaxRetryAfter) or else a fully jittered exponential backoff;
// it stops after MaxAttempts attempts or when ctx is done. A 2xx is success. On failure the error
// is an *Error saying why; the Result is filled in either way.
func (c *Client) Deliver(ctx context.Context, t Target, body []byte) (Result, error) {
	start := c.opts.Now()
	var res Result
	ep := c.endpoints.get(t.URL)
	if ep.err != nil {
		return res, &Error{WebhookID: t.WebhookID, Host: "?", Err: ep.err}
	}
	fail := func(err, last error) (Result, error) {
		res.Elapsed = c.opts.Now().Sub(start)
		return res, &Error{WebhookID: t.WebhookID, Host: ep.u.Host, Attempts: res.Attempts, Err: err, Last: last}
	}
	sig := signer{twitter: []string{c.signers.sign(t.Secret, body)}}
	if len(t.PreviousSecret) > 0 {
		sig.previous = []string{c.signers.sign(t.PreviousSecret, body)}
	}
	if t.StandardWebhooks {
		sig.standard = &t
		if sig.id = t.MessageID; sig.id == "" {
			sig.id = DerivedMessageID(body)
		}
	}
	var last error
	for attempt := 1; ; attempt++ {
		if c.unlimited {
			// No limiter to wait on (RateLimit is +Inf: it would grant every token at once),
			// only the caller's context, as waitRate asks it.
			if err := ctx.Err(); err != nil {
				return fail(err, last)
			}
		} else if err := c.waitRate(ctx, c.limiter(t.WebhookID, c.opts.Now())); err != nil {
			return fail(err, last)
		}
		res.Attempts = attempt
		err := c.attempt(ctx, ep, sig, body, &res)
		if err == nil {
			res.Elapsed = c.opts.Now().Sub(start)
			return res, nil
		}
		last = err
		if ctx.Err() != nil {
			return fail(ctx.Err(), last)
		}
		if !IsRetryable(err) || attempt >= c.opts.MaxAttempts {
			return fail(err, nil)
		}
		wait := c.backoff(attempt)
		var se *StatusError
		if errors.As(err, &se) && se.RetryAfter > 0 {
			wait = se.RetryAfter
		}
		if err := c.opts.Sleep(ctx, wait); err != nil {
			return fail(err, last)
		}
	}
}

// backoff is the wait after the n-th failed attempt: full jitter over a capped exponential.
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.BackoffMax
	if n-1 < 32 {
		if e := c.opts.BackoffBase << (n - 1); e > 0 && e < d {
			d = e
		}
	}
	return c.opts.Jitter(d)
}

// attempt makes one request. It records status and latency in res and returns nil for a 2xx.
//
// The request goes to the Transport itself, not through an http.Client: the Client would clone
// its headers for redirects we never follow (a 3xx is the webhook's answer, as the Client's
// CheckRedirect says for the CRC challenge) and re-parse the URL at every attempt. What the
// Client does for a request like ours is done here: the Authorization of a URL's userinfo
// (endpoint.auth), a *url.Error around a transport error, ErrSchemeMismatch for an HTTP answer
// to HTTPS.
func (c *Client) attempt(ctx context.Context, ep *endpoint, sig signer, body []byte, res *Result) error {
	if ep.reqErr != nil {
		return ep.reqErr
	}
	actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	h := make(http.Header, 8)
	h[headerContentType] = contentTypeJSON
	sig.set(h, c.opts.Now(), body)
	h[headerUserAgent] = c.userAgent
	if ep.auth != nil {
		h[headerAuthorization] = ep.auth
	}
	// Present but nil: not sent, but it lets the transport resend on a keep-alive connection the
	// server closed under us, as it does for idempotent requests. Webhooks get events at least
	// once anyway, and we would resend on a connection error ourselves.
	h[headerIdempotencyKey] = nil
	req := newPost(boundWrites(actx), ep, h, body)

	res.Status = 0
	// The caller's context is asked once more right before the request leaves: a worker's lease
	// context reads its clock in Err, so no attempt starts after the lease ran out, even when the
	// process was stopped (SIGSTOP) between the rate-limit wait and here.
	if err := ctx.Err(); err != nil {
		return err
	}
	sent := c.opts.Now()
	resp, err := c.transport.RoundTrip(req)
	if err != nil {
		res.Latency = c.opts.Now().Sub(sent)
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && string(rh.RecordHeader[:]) == "HTTP/" {
			err = http.ErrSchemeMismatch
		}
		return c.attemptError(ctx, actx, &url.Error{Op: "Post", URL: ep.u.Redacted(), Err: err})
	}
	res.Status = resp.StatusCode
	var head []byte
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		head, _ = io.ReadAll(io.LimitReader(resp.Body, 256))
	}
	drainClose(resp)
	res.Latency = c.opts.Now().Sub(sent)
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		// The webhook accepted the event; a body cut short afterwards does not change that.
		return nil
	}
	se := &StatusError{Code: resp.StatusCode, Status: resp.Status, Body: string(bytes.ToValidUTF8(head, []byte("?")))}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), c.opts.Now()); ok {
			se.RetryAfter = min(d, c.opts.MaxRetryAfter)
		}
	}
	return se
}

// The canonical names of the headers attempt sets (what http.Header.Set would make of them).
var (
	headerContentType       = textproto.CanonicalMIMEHeaderKey("Content-Type")
	headerUserAgent         = textproto.CanonicalMIMEHeaderKey("User-Agent")
	headerAuthorization     = textproto.CanonicalMIMEHeaderKey("Authorization")
	headerIdempotencyKey    = textproto.CanonicalMIMEHeaderKey("Idempotency-Key")
	headerSignature         = textproto.CanonicalMIMEHeaderKey(SignatureHeader)
	headerPreviousSignature = textproto.CanonicalMIMEHeaderKey(PreviousSignatureHeader)
	headerStandardID        = textproto.CanonicalMIMEHeaderKey(StandardIDHeader)
	headerStandardTimestamp = textproto.CanonicalMIMEHeaderKey(StandardTimestampHeader)
	headerStandardSignature = textproto.CanonicalMIMEHeaderKey(StandardSignatureHeader)

	// contentTypeJSON is every request's Content-Type. Header values are shared between requests:
	// neither attempt nor the Transport modifies them.
	contentTypeJSON = []string{"application/json"}
)

// post is one attempt's request with its body, allocated together.
type post struct {
	req  http.Request
	body bytes.Reader
	b    []byte
}

// again is the request's GetBody: a fresh reader over the body, for the Transport's resend on a
// keep-alive connection the server closed, as http.NewRequest makes it for a *bytes.Reader.
func (p *post) again() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(p.b)), nil }

// newPost is the POST of body to ep with headers h, as http.NewRequestWithContext(ctx, "POST",
// ep's URL, bytes.NewReader(body)) makes it, without parsing the URL again. The body must be an
// io.NopCloser around a *bytes.Reader, as there: the Transport writes the headers and a body it
// knows to be in memory in one write, but flushes the headers by themselves before any other
// body (two write syscalls per request, and two reads for the webhook).
func newPost(ctx context.Context, ep *endpoint, h http.Header, body []byte) *http.Request {
	p := &post{req: http.Request{
		Method: http.MethodPost, URL: ep.u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Host: ep.host, ContentLength: int64(len(body)),
	}}
	if len(body) == 0 {
		p.req.Body = http.NoBody
		p.req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
	} else {
		p.b = body
		p.body.Reset(body)
		p.req.Body = io.NopCloser(&p.body)
		p.req.GetBody = p.again
	}
	return p.req.WithContext(ctx)
}

// boundWrites makes the connection a request goes out on refuse to write after ctx's deadline:
// its write deadline is set to it as soon as the transport hands the request a connection. The
// context's own cancellation is asynchronous (a timer, then the transport notices), so without this
// a request checked just before its deadline could still leave after it: for a worker whose lease
// ends there, a delivery after another instance may hold the job. A deadline in the past makes the
// write fail at once, checked by the runtime as it writes. Without a deadline the connection's is
// cleared (it may be reused from a request that had one).
func boundWrites(ctx context.Context) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
		dl, _ := ctx.Deadline()
		ci.Conn.SetWriteDeadline(dl) //nolint:errcheck // a closed connection fails the write anyway
		setWriteBy(ci.Conn, dl)      // and the clock is read at each write, see writeBoundConn
	}})
}

// attemptError classifies a transport error: any timeout while the caller's context is live (the
// attempt's deadline, or one of the transport's own timeouts, some of which also match
// context.DeadlineExceeded) becomes a *TimeoutError; a *url.Error is unwrapped, as it repeats the
// URL (which may carry tokens) into logs.
func (c *Client) attemptError(ctx, actx context.Context, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	if ctx.Err() != nil {
		return err
	}
	var ne net.Error
	if errors.Is(actx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return &TimeoutError{Timeout: c.opts.Timeout, Err: err}
	}
	return err
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP-date (relative to now).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// drainClose reads what is left of an answer's body (up to maxDrain) and closes it, so its
// connection can be reused.
func drainClose(resp *http.Response) {
	if resp.ContentLength >= 0 && resp.ContentLength <= maxDrain {
		// A known length within the bound: the Transport stops the body there itself.
		_, _ = io.Copy(io.Discard, resp.Body)
	} else {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	}
	resp.Body.Close()
}
