// Package app is the app store's contract: apps (the API's callers, each with a bearer token and a
// signing secret) and the webhooks they register, the narrow Driver interface both stores
// implement (MySQL and embedded), its errors, and the id, token and secret generators they share.
package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// App is a caller of the replay API.
type App struct {
	ID   int64
	Name string
	// Secret is the key of every HMAC-SHA256 the service computes for the app (the CRC challenge's
	// response_token and the x-twitter-webhooks-signature of deliveries). It is the bytes of a
	// printable string, the base64url (unpadded) encoding of 32 random bytes, exactly as shown
	// to the operator by `replayd apps create`: the key is that string's bytes, not the decoded
	// 32 bytes, so a developer verifies signatures with the string as printed.
	Secret []byte
	// PreviousSecret, until PreviousSecretUntil (the store's clock), is the secret a rotation
	// replaced (RotateSecret): deliveries are signed with both, and the CRC challenge accepts
	// either, so webhooks can move to the new one within the overlap. Empty when none.
	PreviousSecret      []byte
	PreviousSecretUntil time.Time
	// StandardWebhooks: deliveries also carry the Standard Webhooks headers (webhook-id,
	// webhook-timestamp, webhook-signature), keyed by the same secret (SigningSecret).
	StandardWebhooks bool
	CreatedAt        time.Time
}

// Secrets are the secrets deliveries to a's webhooks are signed with at now: the current one,
// then the previous one while the rotation's overlap lasts.
func (a *App) Secrets(now time.Time) [][]byte {
	out := [][]byte{a.Secret}
	if len(a.PreviousSecret) > 0 && now.Before(a.PreviousSecretUntil) {
		out = append(out, a.PreviousSecret)
	}
	return out
}

// SigningSecretPrefix starts a Standard Webhooks secret.
const SigningSecretPrefix = "whsec_"

// SigningSecret is secret in the Standard Webhooks form: "whsec_" and the standard base64
// (padded) of the key's bytes. The key is the same as the Twitter signature's: the bytes of the
// app's secret string, so one secret serves both.
func SigningSecret(secret []byte) string {
	return SigningSecretPrefix + base64.StdEncoding.EncodeToString(secret)
}

// ParseSigningSecret reads a "whsec_…" secret back into its key's bytes.
func ParseSigningSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, SigningSecretPrefix)
	if !ok {
		return nil, fmt.Errorf("a Standard Webhooks secret starts with %q", SigningSecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) == 0 {
		return nil, fmt.Errorf("a Standard Webhooks secret is %q and standard base64 of the key: %v", SigningSecretPrefix, err)
	}
	return key, nil
}

// Webhook is a URL an app registered; replays deliver to it.
type Webhook struct {
	ID    int64
	AppID int64
	URL   string
	// Valid is true while the URL answers the CRC challenge: set by registration and by every
	// later check (on demand or scheduled). Replays of an invalid webhook are refused and its
	// deliveries stop until a check passes.
	Valid     bool
	CreatedAt time.Time
	// CheckedAt is when the CRC challenge last ran (registration included), by the store's clock.
	CheckedAt time.Time
}

// Errors. Drivers wrap them with detail; test with errors.Is.
var (
	// ErrNotFound: no such app or webhook (or the webhook belongs to another app).
	ErrNotFound = errors.New("app: not found")
	// ErrDuplicate: the app already registered that URL.
	ErrDuplicate = errors.New("app: duplicate")
	// ErrInvalidParams: a params struct failed validation.
	ErrInvalidParams = errors.New("app: invalid parameters")
	// ErrClosed: the driver was closed.
	ErrClosed = errors.New("app: driver closed")
	// ErrUnavailable: the store could not answer (its database is down, unreachable, busy or
	// timed out). Drivers wrap their own error with it; the API answers 503/67.
	ErrUnavailable = errors.New("app: store unavailable")
)

// MaxNameLen and MaxURLLen bound the stored strings.
const (
	MaxNameLen = 255
	MaxURLLen  = 2048
)

// CreateAppParams are the arguments of Driver.CreateApp.
type CreateAppParams struct {
	Name string
	// StandardWebhooks turns the Standard Webhooks headers on for the app's deliveries.
	StandardWebhooks bool
}

// Validate checks the params.
func (p CreateAppParams) Validate() error {
	var errs []string
	if strings.TrimSpace(p.Name) == "" {
		errs = append(errs, "Name must be set")
	}
	if len(p.Name) > MaxNameLen {
		errs = append(errs, fmt.Sprintf("Name must be at most %d bytes", MaxNameLen))
	}
	return paramsError(errs)
}

// CreateAppResult is what Driver.CreateApp returns: the app and its bearer token, in plaintext
// this once (the store keeps only its SHA-256).
type CreateAppResult struct {
	App   *App
	Token string
}

// AppByTokenParams are the arguments of Driver.AppByToken.
type AppByTokenParams struct {
	Token string
}

// GetAppParams are the arguments of Driver.GetApp.
type GetAppParams struct {
	ID int64
}

// ListAppsParams are the arguments of Driver.ListApps (all apps, by ascending id).
type ListAppsParams struct{}

// RotateSecretParams are the arguments of Driver.RotateSecret.
type RotateSecretParams struct {
	ID int64
	// Overlap is how long the replaced secret still signs deliveries (beside the new one) and
	// answers the CRC challenge; 0 drops it at once.
	Overlap time.Duration
}

// Validate checks the params.
func (p RotateSecretParams) Validate() error {
	var errs []string
	if p.ID <= 0 {
		errs = append(errs, "ID must be positive")
	}
	if p.Overlap < 0 {
		errs = append(errs, fmt.Sprintf("Overlap is %v, want 0 or more", p.Overlap))
	}
	if p.Overlap > MaxOverlap {
		errs = append(errs, fmt.Sprintf("Overlap is %v, want at most %v", p.Overlap, MaxOverlap))
	}
	return paramsError(errs)
}

// MaxOverlap bounds RotateSecretParams.Overlap.
const MaxOverlap = 30 * 24 * time.Hour

// SetStandardWebhooksParams are the arguments of Driver.SetStandardWebhooks.
type SetStandardWebhooksParams struct {
	ID      int64
	Enabled bool
}

// CreateWebhookParams are the arguments of Driver.CreateWebhook.
type CreateWebhookParams struct {
	AppID int64
	URL   string
	// Valid records whether the URL passed the CRC challenge.
	Valid bool
}

// Validate checks the params.
func (p CreateWebhookParams) Validate() error {
	var errs []string
	if p.AppID <= 0 {
		errs = append(errs, "AppID must be positive")
	}
	if err := ValidateURL(p.URL); err != nil {
		errs = append(errs, err.Error())
	}
	return paramsError(errs)
}

// ValidateURL checks that s is an absolute http or https URL with a host, no fragment, no user
// info, at most MaxURLLen bytes.
func ValidateURL(s string) error {
	if s == "" {
		return errors.New("URL must be set")
	}
	if len(s) > MaxURLLen {
		return fmt.Errorf("URL must be at most %d bytes", MaxURLLen)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("URL: %v", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("URL must be http or https")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("URL must have a host")
	}
	if u.User != nil || u.Fragment != "" {
		return errors.New("URL must not have user info or a fragment")
	}
	return nil
}

// NormalizeURL validates s (ValidateURL) and returns its normal form, so that URLs that name the
// same resource are one webhook: scheme and host in lower case, the scheme's default port
// dropped, an empty path as "/", percent-encodings of unreserved characters decoded and the
// others in upper-case hex, and a bare "?" with no query dropped (RFC 3986, section 6.2.2 and
// 6.2.3).
func NormalizeURL(s string) (string, error) {
	if err := ValidateURL(s); err != nil {
		return "", err
	}
	u, _ := url.Parse(s) // ValidateURL parsed it
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port := u.Port(); port != "" && !(scheme == "http" && port == "80") && !(scheme == "https" && port == "443") {
		host += ":" + port
	}
	path := normalizePercent(u.EscapedPath())
	if path == "" {
		path = "/"
	}
	out := scheme + "://" + host + path
	if u.RawQuery != "" {
		out += "?" + normalizePercent(u.RawQuery)
	}
	return out, nil
}

// normalizePercent decodes the percent-encodings of unreserved characters (ALPHA, DIGIT, "-",
// ".", "_", "~") and writes the others' hex digits in upper case.
func normalizePercent(s string) string {
	const hexDigits = "0123456789ABCDEF"
	unhex := func(c byte) (byte, bool) {
		switch {
		case '0' <= c && c <= '9':
			return c - '0', true
		case 'a' <= c && c <= 'f':
			return c - 'a' + 10, true
		case 'A' <= c && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				c := hi<<4 | lo
				if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
					b.WriteByte(c)
				} else {
					b.WriteByte('%')
					b.WriteByte(hexDigits[hi])
					b.WriteByte(hexDigits[lo])
				}
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// GetWebhookParams are the arguments of Driver.GetWebhook.
type GetWebhookParams struct {
	ID int64
	// AppID, when non-zero, restricts the lookup to that app's webhooks (others are ErrNotFound).
	AppID int64
}

// ListWebhooksParams are the arguments of Driver.ListWebhooks (the app's webhooks, ascending id).
type ListWebhooksParams struct {
	AppID int64
}

// DeleteWebhookParams are the arguments of Driver.DeleteWebhook.
type DeleteWebhookParams struct {
	AppID int64
	ID    int64
}

// SetWebhookValidParams are the arguments of Driver.SetWebhookValid: the outcome of a CRC check.
type SetWebhookValidParams struct {
	ID int64
	// AppID, when non-zero, restricts the update to that app's webhooks (others are ErrNotFound).
	AppID int64
	Valid bool
}

// Driver is the app store. Implementations: mysqlapp (production) and embeddedapp (single
// process). Every method honours its context and is safe for concurrent use.
type Driver interface {
	// CreateApp stores a new app with a fresh id, secret and bearer token.
	CreateApp(ctx context.Context, p CreateAppParams) (*CreateAppResult, error)
	// AppByToken returns the app whose bearer token is p.Token, or ErrNotFound.
	AppByToken(ctx context.Context, p AppByTokenParams) (*App, error)
	// GetApp returns one app, or ErrNotFound.
	GetApp(ctx context.Context, p GetAppParams) (*App, error)
	// ListApps returns every app, ascending id.
	ListApps(ctx context.Context, p ListAppsParams) ([]*App, error)
	// RotateSecret gives the app a fresh secret; the old one becomes PreviousSecret until now +
	// p.Overlap (the store's clock; with no overlap it is dropped). It returns the app with its new
	// secret; ErrNotFound if there is no such app.
	RotateSecret(ctx context.Context, p RotateSecretParams) (*App, error)
	// SetStandardWebhooks turns the Standard Webhooks headers on or off for the app's
	// deliveries and returns the app; ErrNotFound if there is no such app.
	SetStandardWebhooks(ctx context.Context, p SetStandardWebhooksParams) (*App, error)
	// CreateWebhook stores a webhook with a fresh id; ErrDuplicate if the app already has the URL,
	// ErrNotFound if the app does not exist.
	CreateWebhook(ctx context.Context, p CreateWebhookParams) (*Webhook, error)
	// GetWebhook returns one webhook, or ErrNotFound.
	GetWebhook(ctx context.Context, p GetWebhookParams) (*Webhook, error)
	// ListWebhooks returns the app's webhooks, ascending id.
	ListWebhooks(ctx context.Context, p ListWebhooksParams) ([]*Webhook, error)
	// SetWebhookValid records a CRC check's outcome (Valid, and CheckedAt = now) and returns the
	// webhook; ErrNotFound if there is no such webhook (of that app).
	SetWebhookValid(ctx context.Context, p SetWebhookValidParams) (*Webhook, error)
	// DeleteWebhook removes the app's webhook; another app's is ErrNotFound.
	DeleteWebhook(ctx context.Context, p DeleteWebhookParams) error
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
	// Close releases the driver's resources. It is idempotent; other calls afterwards fail with
	// ErrClosed.
	Close() error
}

func paramsError(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidParams, strings.Join(errs, "; "))
}

// snowflakeEpoch is Twitter's snowflake epoch (2010-11-04T01:42:54.657Z), so ids have the shape
// and order of the platform's ids ("1095098195724595200").
const snowflakeEpoch = 1288834974657

// NewID returns a new positive 63-bit id, snowflake-like: milliseconds since the snowflake epoch in
// the high 41 bits, 22 random bits below. Ids are roughly time-ordered and unguessable within a
// millisecond; they are not guaranteed unique, so stores insert them with a uniqueness check and
// draw another on a collision (1 in 4M for two ids made in the same millisecond).
func NewID(now time.Time) int64 {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	r := (int64(b[0])<<16 | int64(b[1])<<8 | int64(b[2])) & (1<<22 - 1)
	ms := now.UnixMilli() - snowflakeEpoch
	if ms < 1 {
		ms = 1
	}
	return (ms&(1<<41-1))<<22 | r
}

// NewToken returns a new bearer token (base64url, unpadded, of 32 random bytes: 43 characters).
func NewToken() string { return randomString() }

// NewSecret returns a new app secret: the bytes of a base64url string (unpadded) of 32 random
// bytes. See App.Secret.
func NewSecret() []byte { return []byte(randomString()) }

func randomString() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// HashToken is what stores keep of a bearer token: its SHA-256.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// HashURL is the key under which stores check a webhook URL's uniqueness per app.
func HashURL(u string) []byte {
	h := sha256.Sum256([]byte(u))
	return h[:]
}
