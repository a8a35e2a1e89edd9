package delivery

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader is the request header that carries Sign(secret, body) on every POST.
const SignatureHeader = "x-twitter-webhooks-signature"

// Sign returns the value of the x-twitter-webhooks-signature header for body:
// "sha256=" + base64(HMAC-SHA256(secret, body)), with standard base64 (padded).
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// PreviousSignatureHeader carries Sign(previous secret, body) during a secret rotation's
// overlap, beside SignatureHeader (signed with the new secret): a receiver that still holds the
// previous secret verifies this one, so it may move to the new secret at any time within the
// overlap. A receiver that reads only SignatureHeader must take the new secret when it is
// rotated, as with Twitter's own secret regeneration.
const PreviousSignatureHeader = "x-twitter-webhooks-signature-previous"

// The Standard Webhooks headers (https://www.standardwebhooks.com, v1 symmetric signatures).
const (
	StandardIDHeader        = "webhook-id"
	StandardTimestampHeader = "webhook-timestamp"
	StandardSignatureHeader = "webhook-signature"
)

// DefaultTolerance is how far a webhook-timestamp may be from the receiver's clock, either
// way, before the request is refused as stale (the spec's recommended 5 minutes).
const DefaultTolerance = 5 * time.Minute

// SignStandard is one Standard Webhooks signature: "v1," + base64(HMAC-SHA256(key,
// id + "." + timestamp + "." + body)), timestamp in decimal Unix seconds, key the app's secret
// bytes (app.SigningSecret writes it as whsec_…).
func SignStandard(key []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, timestamp, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// DerivedMessageID is the webhook-id of a body sent without one: "msg_" and the first 16 bytes
// of its SHA-256 in hex, the same for every attempt.
func DerivedMessageID(body []byte) string {
	h := sha256.Sum256(body)
	return "msg_" + hex.EncodeToString(h[:16])
}

// signer sets the signature headers of one message's attempts. The Twitter signatures are the
// same at every attempt (the header values, made once).
type signer struct {
	twitter, previous string  // previous "": no rotation
	standard          *Target // nil: no Standard Webhooks headers
	id                string
}

// appendHeaders appends the signature header lines of an attempt at now: the Standard Webhooks
// timestamp is the attempt's, so its signature is made anew each time.
func (s signer) appendHeaders(b []byte, now time.Time, body []byte) []byte {
	b = appendHeader(b, canonicalSignature, s.twitter)
	if s.previous != "" {
		b = appendHeader(b, canonicalPreviousSignature, s.previous)
	}
	if s.standard == nil {
		return b
	}
	ts := now.Unix()
	b = appendHeader(b, canonicalStandardID, s.id)
	b = append(b, "\r\n"+canonicalStandardTimestamp+": "...)
	b = strconv.AppendInt(b, ts, 10)
	b = appendHeader(b, canonicalStandardSignature, SignStandard(s.standard.Secret, s.id, ts, body))
	if len(s.standard.PreviousSecret) > 0 {
		b = append(b, ' ')
		b = append(b, SignStandard(s.standard.PreviousSecret, s.id, ts, body)...)
	}
	return b
}

// The signature headers' names as requests carry them: canonical, as net/http wrote them.
var (
	canonicalSignature         = textproto.CanonicalMIMEHeaderKey(SignatureHeader)
	canonicalPreviousSignature = textproto.CanonicalMIMEHeaderKey(PreviousSignatureHeader)
	canonicalStandardID        = textproto.CanonicalMIMEHeaderKey(StandardIDHeader)
	canonicalStandardTimestamp = textproto.CanonicalMIMEHeaderKey(StandardTimestampHeader)
	canonicalStandardSignature = textproto.CanonicalMIMEHeaderKey(StandardSignatureHeader)
)

// StandardError is why VerifyStandard refused a request.
type StandardError struct{ Reason string }

func (e *StandardError) Error() string { return "standard webhooks: " + e.Reason }

// VerifyStandard checks a request's Standard Webhooks headers against key, as a receiver does:
// a webhook-id, a webhook-timestamp within tolerance of now (either way: a replayed or stale
// request is refused), and among the space-separated webhook-signature values a v1 signature
// of id.timestamp.body with key. The error says which check failed.
func VerifyStandard(key []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, tsText, sigs := h.Get(StandardIDHeader), h.Get(StandardTimestampHeader), h.Get(StandardSignatureHeader)
	switch {
	case id == "":
		return &StandardError{"no " + StandardIDHeader + " header"}
	case tsText == "":
		return &StandardError{"no " + StandardTimestampHeader + " header"}
	case sigs == "":
		return &StandardError{"no " + StandardSignatureHeader + " header"}
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return &StandardError{fmt.Sprintf("%s %q is not Unix seconds", StandardTimestampHeader, tsText)}
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return &StandardError{fmt.Sprintf("%s %d is %v from now, more than the tolerance of %v: a stale or replayed request", StandardTimestampHeader, ts, d.Round(time.Second), tolerance)}
	}
	want := SignStandard(key, id, ts, body)
	for _, sig := range strings.Fields(sigs) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return &StandardError{"no " + StandardSignatureHeader + " value is the v1 signature of id.timestamp.body with this secret"}
}

// CRCResponse returns the response_token a webhook must answer a CRC challenge for token with:
// the same construction as Sign, over the token's bytes.
func CRCResponse(secret []byte, token string) string {
	return Sign(secret, []byte(token))
}

// maxCRCBody bounds how much of a CRC answer is read.
const maxCRCBody = 64 << 10

// ChallengeFailure is the coarse kind of a failed CRC challenge: what the app registering a
// webhook may be told. The detail (addresses, status lines, response bytes) stays in the error
// for the server's log: a webhook URL can point at the server's own network, and the answer of an
// internal service must not travel back to whoever named it.
type ChallengeFailure string

// The kinds of ChallengeFailure.
const (
	ChallengeBadURL      ChallengeFailure = "the URL cannot be used"
	ChallengeDenied      ChallengeFailure = "the URL's address is not allowed (private, loopback or reserved)"
	ChallengeTimeout     ChallengeFailure = "the webhook did not answer in time"
	ChallengeUnreachable ChallengeFailure = "the webhook could not be reached"
	ChallengeBadAnswer   ChallengeFailure = "the webhook's answer is not a CRC response (want 200 and JSON with response_token)"
	ChallengeWrongToken  ChallengeFailure = "the webhook's response_token is wrong (want sha256=base64(HMAC-SHA256(app secret, crc_token)))"
)

// ChallengeError is a failed CRC challenge: Failure for the caller, Err with the detail.
type ChallengeError struct {
	Failure ChallengeFailure
	Err     error
}

func (e *ChallengeError) Error() string { return e.Err.Error() }
func (e *ChallengeError) Unwrap() error { return e.Err }

// PublicReason is what may be shown to the app that registered the URL.
func (e *ChallengeError) PublicReason() string { return string(e.Failure) }

// Challenge runs a CRC challenge against a webhook URL, as done when a webhook is registered: it
// sends GET rawURL?crc_token=<random> (appended with & when rawURL already has a query) through
// c, so the destination guard, the User-Agent and the per-attempt Timeout apply, and requires a
// 200 whose JSON body has "response_token" equal to CRCResponse(secret, token). There is exactly
// one attempt. The error says what was wrong: the destination, the status, the body or the token.
// With several secrets (a rotation's overlap: the new one, then the previous), an answer made
// with any of them passes.
//
// A failure is a *ChallengeError; its PublicReason is coarse (timeout, unreachable, not allowed,
// bad answer, wrong token), its Error the detail.
func Challenge(ctx context.Context, c *Client, rawURL string, secrets ...[]byte) error {
	failure, err := challenge(ctx, c, rawURL, secrets)
	if err == nil {
		return nil
	}
	var (
		de *DeniedError
		te *TargetError
		to *TimeoutError
	)
	switch {
	case errors.As(err, &de):
		failure = ChallengeDenied
	case errors.As(err, &te):
		failure = ChallengeBadURL
	case errors.As(err, &to):
		failure = ChallengeTimeout
	case failure == "":
		failure = ChallengeUnreachable
	}
	return &ChallengeError{Failure: failure, Err: err}
}

// challenge runs Challenge and says what kind of failure an answer was; a transport failure is
// left to Challenge to classify ("").
func challenge(ctx context.Context, c *Client, rawURL string, secrets [][]byte) (ChallengeFailure, error) {
	if len(secrets) == 0 {
		return ChallengeBadURL, errors.New("crc challenge: no secret")
	}
	if c == nil {
		return ChallengeBadURL, errors.New("crc challenge: nil client")
	}
	u, err := parseTarget(rawURL)
	if err != nil {
		return ChallengeBadURL, fmt.Errorf("crc challenge: %w", err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return ChallengeUnreachable, fmt.Errorf("crc challenge: random token: %w", err)
	}
	token := hex.EncodeToString(raw[:])
	if u.RawQuery == "" {
		u.RawQuery = "crc_token=" + token
	} else {
		u.RawQuery += "&crc_token=" + token
	}
	u.Fragment, u.RawFragment = "", ""

	actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
	if err != nil {
		return ChallengeBadURL, fmt.Errorf("crc challenge: %w", err)
	}
	req.Header.Set("User-Agent", c.opts.UserAgent)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("crc challenge of %s: %w", u.Host, c.attemptError(ctx, actx, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ChallengeBadAnswer, fmt.Errorf("crc challenge of %s: webhook answered %s, want 200 OK", u.Host, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCRCBody+1))
	if err != nil {
		return "", fmt.Errorf("crc challenge of %s: reading the answer: %w", u.Host, c.attemptError(ctx, actx, err))
	}
	if len(data) > maxCRCBody {
		return ChallengeBadAnswer, fmt.Errorf("crc challenge of %s: answer is larger than %d bytes", u.Host, maxCRCBody)
	}
	var answer struct {
		ResponseToken *string `json:"response_token"`
	}
	if err := json.Unmarshal(data, &answer); err != nil {
		return ChallengeBadAnswer, fmt.Errorf("crc challenge of %s: answer is not a JSON object (%v): %q", u.Host, err, snippet(data))
	}
	if answer.ResponseToken == nil {
		return ChallengeBadAnswer, fmt.Errorf("crc challenge of %s: answer has no response_token: %q", u.Host, snippet(data))
	}
	matched := false
	for _, secret := range secrets {
		matched = matched || hmac.Equal([]byte(*answer.ResponseToken), []byte(CRCResponse(secret, token)))
	}
	if !matched {
		got := *answer.ResponseToken
		if !strings.HasPrefix(got, "sha256=") {
			return ChallengeWrongToken, fmt.Errorf("crc challenge of %s: response_token %q does not start with sha256=", u.Host, snippet([]byte(got)))
		}
		return ChallengeWrongToken, fmt.Errorf("crc challenge of %s: response_token %q is not sha256=base64(HMAC-SHA256(app secret, crc_token)): wrong secret or wrong construction", u.Host, snippet([]byte(got)))
	}
	return "", nil
}

// parseTarget parses and checks a webhook URL: absolute, http or https, with a host.
func parseTarget(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, &TargetError{Reason: err.Error()}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, &TargetError{URL: u.Redacted(), Reason: "scheme must be http or https"}
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, &TargetError{URL: u.Redacted(), Reason: "no host"}
	}
	return u, nil
}

// snippet returns at most 128 bytes of b for error messages.
func snippet(b []byte) string {
	const max = 128
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
