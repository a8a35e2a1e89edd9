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
	Secret    []byte
	CreatedAt time.Time
}

// Webhook is a URL an app registered; replays deliver to it.
type Webhook struct {
	ID    int64
	AppID int64
	URL   string
	// Valid is true once the URL answered the CRC challenge.
	Valid     bool
	CreatedAt time.Time
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
	// CreateWebhook stores a webhook with a fresh id; ErrDuplicate if the app already has the URL,
	// ErrNotFound if the app does not exist.
	CreateWebhook(ctx context.Context, p CreateWebhookParams) (*Webhook, error)
	// GetWebhook returns one webhook, or ErrNotFound.
	GetWebhook(ctx context.Context, p GetWebhookParams) (*Webhook, error)
	// ListWebhooks returns the app's webhooks, ascending id.
	ListWebhooks(ctx context.Context, p ListWebhooksParams) ([]*Webhook, error)
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
