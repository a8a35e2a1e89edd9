package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
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
	if closedByPeer(err) || errors.Is(err, syscall.ECONNREFUSED) {
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
	sig := signer{twitter: c.signers.sign(t.Secret, body)}
	if len(t.PreviousSecret) > 0 {
		sig.previous = c.signers.sign(t.PreviousSecret, body)
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
// Transport errors come back as a *url.Error (op "Post", the URL redacted) before attemptError
// classifies them, as http.Client returned them.
func (c *Client) attempt(ctx context.Context, ep *endpoint, sig signer, body []byte, res *Result) error {
	if ep.reqErr != nil {
		return ep.reqErr
	}
	actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	res.Status = 0
	// The caller's context is asked once more right before the request leaves (exchangeOn asks
	// again at the write): a worker's lease context reads its clock in Err, so no attempt starts
	// after the lease ran out, even when the process was stopped (SIGSTOP) between the rate-limit
	// wait and here.
	if err := ctx.Err(); err != nil {
		return err
	}
	sent := c.opts.Now()
	req := request{ep: ep, userAgent: c.opts.UserAgent, sig: sig, now: sent, body: body}
	a, err := c.exchange(actx, ep, &req)
	res.Latency = c.opts.Now().Sub(sent)
	if err != nil {
		return c.attemptError(ctx, actx, &url.Error{Op: "Post", URL: ep.u.Redacted(), Err: err})
	}
	res.Status = a.code
	if a.code >= 200 && a.code <= 299 {
		// The webhook accepted the event; a body cut short afterwards does not change that.
		return nil
	}
	se := &StatusError{Code: a.code, Status: a.status, Body: string(bytes.ToValidUTF8(a.head, []byte("?")))}
	if a.code == http.StatusTooManyRequests || a.code == http.StatusServiceUnavailable {
		if d, ok := parseRetryAfter(a.retryAfter, c.opts.Now()); ok {
			se.RetryAfter = min(d, c.opts.MaxRetryAfter)
		}
	}
	return se
}

// request is one attempt's POST, written whole (head and body) into the connection's buffer.
type request struct {
	ep        *endpoint
	userAgent string
	sig       signer
	now       time.Time // the attempt's time: the Standard Webhooks timestamp
	body      []byte
}

// appendTo appends the request's bytes to b. Every value written was made by the Client (the
// URL's parts as url.Parse escaped them, signatures, the checked User-Agent), so none can carry
// a line break.
func (r *request) appendTo(b []byte) []byte {
	b = append(b, "POST "...)
	b = append(b, r.ep.requestURI...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.ep.host...)
	b = appendHeader(b, "User-Agent", r.userAgent)
	b = appendHeader(b, "Content-Type", "application/json")
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(r.body)), 10)
	b = r.sig.appendHeaders(b, r.now, r.body)
	if r.ep.auth != "" {
		b = appendHeader(b, "Authorization", r.ep.auth)
	}
	b = append(b, "\r\n\r\n"...)
	return append(b, r.body...)
}

// appendHeader appends a header line, after the previous line's end.
func appendHeader(b []byte, name, value string) []byte {
	b = append(b, "\r\n"...)
	b = append(b, name...)
	b = append(b, ": "...)
	return append(b, value...)
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
