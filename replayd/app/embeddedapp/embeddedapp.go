// Package embeddedapp is the single-process app store: app.Driver on an embedded Pebble database
// in a directory (`<data>/apps`), every write synced, nothing to install.
package embeddedapp

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/replay/replay/replayd/localdb"

	"github.com/cockroachdb/pebble/v2"

	"github.com/replay/replay/replayd/app"
)

// Key layout (integers 8-byte big-endian, so byte order is numeric order):
//
//	a/<app id>                   -> app record (JSON)
//	t/<sha256(token)>            -> app id
//	h/<webhook id>               -> webhook record (JSON)
//	u/<app id><sha256(url)>      -> webhook id (one URL per app)
//	x/<app id><webhook id>       -> "" (the app's webhooks, by id)
var (
	prefixApp      = []byte("a/")
	prefixToken    = []byte("t/")
	prefixWebhook  = []byte("h/")
	prefixURL      = []byte("u/")
	prefixAppHooks = []byte("x/")
)

func key(prefix []byte, id int64, suffix ...[]byte) []byte {
	k := binary.BigEndian.AppendUint64(bytes.Clone(prefix), uint64(id))
	for _, s := range suffix {
		k = append(k, s...)
	}
	return k
}

type appRecord struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	Secret      string    `json:"secret"`
	TokenSHA256 []byte    `json:"token_sha256"`
	CreatedAt   time.Time `json:"created_at"`
	// Absent in records written before signing options existed: none, off.
	PreviousSecret      string    `json:"previous_secret,omitempty"`
	PreviousSecretUntil time.Time `json:"previous_secret_until,omitzero"`
	StandardWebhooks    bool      `json:"standard_webhooks,omitempty"`
}

// app is the record as an App, its secrets opened (Options.Secrets).
func (d *Driver) app(r *appRecord) (*app.App, error) {
	secret, err := d.opts.Secrets.Open(r.ID, []byte(r.Secret))
	if err != nil {
		return nil, err
	}
	a := &app.App{ID: r.ID, Name: r.Name, Secret: secret, CreatedAt: r.CreatedAt, StandardWebhooks: r.StandardWebhooks}
	if r.PreviousSecret != "" {
		if a.PreviousSecret, err = d.opts.Secrets.Open(r.ID, []byte(r.PreviousSecret)); err != nil {
			return nil, err
		}
		a.PreviousSecretUntil = r.PreviousSecretUntil
	}
	return a, nil
}

type webhookRecord struct {
	ID        int64     `json:"id"`
	AppID     int64     `json:"app_id"`
	URL       string    `json:"url"`
	Valid     bool      `json:"valid"`
	CreatedAt time.Time `json:"created_at"`
	// CheckedAt is absent in records written before CRC re-checks existed: CreatedAt then.
	CheckedAt time.Time `json:"checked_at,omitzero"`
}

func (r *webhookRecord) webhook() *app.Webhook {
	checked := r.CheckedAt
	if checked.IsZero() {
		checked = r.CreatedAt
	}
	return &app.Webhook{ID: r.ID, AppID: r.AppID, URL: r.URL, Valid: r.Valid, CreatedAt: r.CreatedAt, CheckedAt: checked}
}

// Driver is the embedded app store. Operations are serialized (one at a time, each write committed
// with fsync before it returns); create it with Open.
type Driver struct {
	opts  Options
	local *localdb.DB // serializes operations
	wo    *pebble.WriteOptions
}

var _ app.Driver = (*Driver)(nil)

// Open opens (creating if needed) the store in opts.Dir. It does not modify opts.
func Open(opts Options) (*Driver, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	local, err := localdb.Open(localdb.Options{Dir: opts.Dir, Store: "embeddedapp", ErrClosed: app.ErrClosed, ErrUnavailable: app.ErrUnavailable, Bare: nil, NoSync: opts.NoSync, FS: opts.FS, DiskReserve: opts.DiskReserve, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	return &Driver{local: local, opts: opts, wo: local.WriteOptions}, nil
}

// Close closes the database once the operation in progress ends. It is idempotent.
func (d *Driver) Close() error { return d.local.Close() }

// run serializes fn, honouring ctx while waiting.
func (d *Driver) run(ctx context.Context, op string, fn func() error) error {
	return d.local.Run(ctx, op, fn)
}

// write serializes fn, which writes, refusing it below the disk reserve (localdb.DB.Write).
func (d *Driver) write(ctx context.Context, op string, fn func() error) error {
	return d.local.Write(ctx, op, fn)
}

func (d *Driver) now() time.Time { return d.opts.Now().UTC().Truncate(time.Microsecond) }

// get decodes the value at k into v; found is false when k is absent.
func (d *Driver) get(k []byte, v any) (found bool, err error) {
	b, closer, err := d.local.Pebble.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer closer.Close()
	if v == nil {
		return true, nil
	}
	if p, ok := v.(*int64); ok {
		if len(b) != 8 {
			return false, fmt.Errorf("key %q: malformed id", k)
		}
		*p = int64(binary.BigEndian.Uint64(b))
		return true, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("key %q: decoding: %w", k, err)
	}
	return true, nil
}

// freshID draws ids until one is not yet used under prefix.
func (d *Driver) freshID(prefix []byte) (int64, error) {
	for {
		id := app.NewID(d.opts.Now())
		found, err := d.get(key(prefix, id), nil)
		if err != nil || !found {
			return id, err
		}
	}
}

func setJSON(b *pebble.Batch, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Set(k, data, nil)
}

func idValue(id int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

// CreateApp implements app.Driver.
func (d *Driver) CreateApp(ctx context.Context, p app.CreateAppParams) (*app.CreateAppResult, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var out *app.CreateAppResult
	err := d.write(ctx, "create app", func() error {
		id, err := d.freshID(prefixApp)
		if err != nil {
			return err
		}
		token := app.NewToken()
		r := &appRecord{ID: id, Name: p.Name, Secret: string(d.opts.Secrets.Seal(id, app.NewSecret())), TokenSHA256: app.HashToken(token), CreatedAt: d.now(), StandardWebhooks: p.StandardWebhooks}
		b := d.local.Pebble.NewBatch()
		defer b.Close()
		if err := setJSON(b, key(prefixApp, id), r); err != nil {
			return err
		}
		if err := b.Set(append(bytes.Clone(prefixToken), r.TokenSHA256...), idValue(id), nil); err != nil {
			return err
		}
		if err := b.Commit(d.wo); err != nil {
			return err
		}
		a, err := d.app(r)
		if err != nil {
			return err
		}
		out = &app.CreateAppResult{App: a, Token: token}
		return nil
	})
	return out, err
}

func (d *Driver) loadApp(id int64) (*appRecord, error) {
	var r appRecord
	found, err := d.get(key(prefixApp, id), &r)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("app %d: %w", id, app.ErrNotFound)
	}
	return &r, nil
}

// AppByToken implements app.Driver.
func (d *Driver) AppByToken(ctx context.Context, p app.AppByTokenParams) (*app.App, error) {
	var out *app.App
	err := d.run(ctx, "app by token", func() error {
		if p.Token == "" {
			return fmt.Errorf("token: %w", app.ErrNotFound)
		}
		var id int64
		found, err := d.get(append(bytes.Clone(prefixToken), app.HashToken(p.Token)...), &id)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("token: %w", app.ErrNotFound)
		}
		r, err := d.loadApp(id)
		if err != nil {
			return err
		}
		out, err = d.app(r)
		return err
	})
	return out, err
}

// GetApp implements app.Driver.
func (d *Driver) GetApp(ctx context.Context, p app.GetAppParams) (*app.App, error) {
	var out *app.App
	err := d.run(ctx, "get app", func() error {
		r, err := d.loadApp(p.ID)
		if err != nil {
			return err
		}
		out, err = d.app(r)
		return err
	})
	return out, err
}

// ListApps implements app.Driver.
func (d *Driver) ListApps(ctx context.Context, _ app.ListAppsParams) ([]*app.App, error) {
	var out []*app.App
	err := d.run(ctx, "list apps", func() error {
		it, err := d.local.Pebble.NewIter(&pebble.IterOptions{LowerBound: prefixApp, UpperBound: []byte("a0")})
		if err != nil {
			return err
		}
		defer it.Close()
		for valid := it.First(); valid; valid = it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var r appRecord
			if err := json.Unmarshal(it.Value(), &r); err != nil {
				return fmt.Errorf("key %q: decoding: %w", it.Key(), err)
			}
			a, err := d.app(&r)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return it.Error()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// updateApp changes app id's record with fn and stores it.
func (d *Driver) updateApp(ctx context.Context, op string, id int64, fn func(r *appRecord)) (*app.App, error) {
	var out *app.App
	err := d.write(ctx, op, func() error {
		r, err := d.loadApp(id)
		if err != nil {
			return err
		}
		fn(r)
		b := d.local.Pebble.NewBatch()
		defer b.Close()
		if err := setJSON(b, key(prefixApp, id), r); err != nil {
			return err
		}
		if err := b.Commit(d.wo); err != nil {
			return err
		}
		out, err = d.app(r)
		return err
	})
	return out, err
}

// RotateSecret implements app.Driver.
func (d *Driver) RotateSecret(ctx context.Context, p app.RotateSecretParams) (*app.App, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return d.updateApp(ctx, "rotate secret", p.ID, func(r *appRecord) {
		r.PreviousSecret, r.PreviousSecretUntil = "", time.Time{}
		if p.Overlap > 0 {
			r.PreviousSecret, r.PreviousSecretUntil = r.Secret, d.now().Add(p.Overlap)
		}
		r.Secret = string(d.opts.Secrets.Seal(r.ID, app.NewSecret()))
	})
}

// SetStandardWebhooks implements app.Driver.
func (d *Driver) SetStandardWebhooks(ctx context.Context, p app.SetStandardWebhooksParams) (*app.App, error) {
	return d.updateApp(ctx, "set standard webhooks", p.ID, func(r *appRecord) { r.StandardWebhooks = p.Enabled })
}

// CreateWebhook implements app.Driver.
func (d *Driver) CreateWebhook(ctx context.Context, p app.CreateWebhookParams) (*app.Webhook, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var out *app.Webhook
	err := d.write(ctx, "create webhook", func() error {
		if _, err := d.loadApp(p.AppID); err != nil {
			return err
		}
		urlKey := key(prefixURL, p.AppID, app.HashURL(p.URL))
		var other int64
		found, err := d.get(urlKey, &other)
		if err != nil {
			return err
		}
		if found {
			return fmt.Errorf("app %d: URL %q: %w (webhook %d)", p.AppID, p.URL, app.ErrDuplicate, other)
		}
		id, err := d.freshID(prefixWebhook)
		if err != nil {
			return err
		}
		now := d.now()
		r := &webhookRecord{ID: id, AppID: p.AppID, URL: p.URL, Valid: p.Valid, CreatedAt: now, CheckedAt: now}
		b := d.local.Pebble.NewBatch()
		defer b.Close()
		if err := setJSON(b, key(prefixWebhook, id), r); err != nil {
			return err
		}
		if err := b.Set(urlKey, idValue(id), nil); err != nil {
			return err
		}
		if err := b.Set(key(prefixAppHooks, p.AppID, idValue(id)), nil, nil); err != nil {
			return err
		}
		if err := b.Commit(d.wo); err != nil {
			return err
		}
		out = r.webhook()
		return nil
	})
	return out, err
}

func (d *Driver) loadWebhook(id, appID int64) (*webhookRecord, error) {
	var r webhookRecord
	found, err := d.get(key(prefixWebhook, id), &r)
	if err != nil {
		return nil, err
	}
	if !found || (appID != 0 && r.AppID != appID) {
		return nil, fmt.Errorf("webhook %d: %w", id, app.ErrNotFound)
	}
	return &r, nil
}

// GetWebhook implements app.Driver.
func (d *Driver) GetWebhook(ctx context.Context, p app.GetWebhookParams) (*app.Webhook, error) {
	var out *app.Webhook
	err := d.run(ctx, "get webhook", func() error {
		r, err := d.loadWebhook(p.ID, p.AppID)
		if err != nil {
			return err
		}
		out = r.webhook()
		return nil
	})
	return out, err
}

// ListWebhooks implements app.Driver.
func (d *Driver) ListWebhooks(ctx context.Context, p app.ListWebhooksParams) ([]*app.Webhook, error) {
	var out []*app.Webhook
	err := d.run(ctx, "list webhooks", func() error {
		prefix := key(prefixAppHooks, p.AppID)
		it, err := d.local.Pebble.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: key(prefixAppHooks, p.AppID+1)})
		if err != nil {
			return err
		}
		defer it.Close()
		for valid := it.First(); valid; valid = it.Next() {
			k := it.Key()
			id := int64(binary.BigEndian.Uint64(k[len(k)-8:]))
			r, err := d.loadWebhook(id, p.AppID)
			if err != nil {
				return err
			}
			out = append(out, r.webhook())
		}
		return it.Error()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetWebhookValid implements app.Driver.
func (d *Driver) SetWebhookValid(ctx context.Context, p app.SetWebhookValidParams) (*app.Webhook, error) {
	var out *app.Webhook
	err := d.write(ctx, "set webhook validity", func() error {
		r, err := d.loadWebhook(p.ID, p.AppID)
		if err != nil {
			return err
		}
		r.Valid, r.CheckedAt = p.Valid, d.now()
		b := d.local.Pebble.NewBatch()
		defer b.Close()
		if err := setJSON(b, key(prefixWebhook, r.ID), r); err != nil {
			return err
		}
		if err := b.Commit(d.wo); err != nil {
			return err
		}
		out = r.webhook()
		return nil
	})
	return out, err
}

// DeleteWebhook implements app.Driver.
func (d *Driver) DeleteWebhook(ctx context.Context, p app.DeleteWebhookParams) error {
	return d.write(ctx, "delete webhook", func() error {
		if p.AppID <= 0 {
			return fmt.Errorf("%w: AppID must be positive", app.ErrInvalidParams)
		}
		r, err := d.loadWebhook(p.ID, p.AppID)
		if err != nil {
			return err
		}
		b := d.local.Pebble.NewBatch()
		defer b.Close()
		for _, k := range [][]byte{
			key(prefixWebhook, r.ID),
			key(prefixURL, r.AppID, app.HashURL(r.URL)),
			key(prefixAppHooks, r.AppID, idValue(r.ID)),
		} {
			if err := b.Delete(k, nil); err != nil {
				return err
			}
		}
		return b.Commit(d.wo)
	})
}

// Ping implements app.Driver.
func (d *Driver) Ping(ctx context.Context) error {
	return d.run(ctx, "ping", func() error { return nil })
}
