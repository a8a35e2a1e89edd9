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
	"net/url"
	"strings"
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
//
// A failure is a *ChallengeError; its PublicReason is coarse (timeout, unreachable, not allowed,
// bad answer, wrong token), its Error the detail.
func Challenge(ctx context.Context, c *Client, rawURL string, secret []byte) error {
	failure, err := challenge(ctx, c, rawURL, secret)
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
func challenge(ctx context.Context, c *Client, rawURL string, secret []byte) (ChallengeFailure, error) {
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
	req, err := http.NewRequestWithContext(boundWrites(actx), http.MethodGet, u.String(), nil)
	if err != nil {
		return ChallengeBadURL, fmt.Errorf("crc challenge: %w", err)
	}
	req.Header.Set("User-Agent", c.opts.UserAgent)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("crc challenge of %s: %w", u.Host, c.attemptError(ctx, actx, err))
	}
	defer drainClose(resp.Body)
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
	want := CRCResponse(secret, token)
	if !hmac.Equal([]byte(*answer.ResponseToken), []byte(want)) {
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
