// Package mysqlapp is the production app store: app.Driver on MySQL 8 / MariaDB 10.6+ (InnoDB),
// tables replay_apps and replay_webhooks, migrations recorded in app_schema_migrations.
package mysqlapp

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/mysqldb"
)

// Driver is the MySQL app store. Create it with Open; it is safe for concurrent use.
type Driver struct {
	*mysqldb.Store // DB, Do, Ping, Close
	db             *sql.DB
	opts           Options
}

var _ app.Driver = (*Driver)(nil)

// Open connects to the database named by opts.DSN and, unless opts.SkipMigrations, applies pending
// schema migrations. It does not modify opts.
func Open(ctx context.Context, opts Options) (*Driver, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	st, err := migrations.OpenStore(ctx, opts.conn(), mysqldb.StoreOptions{
		Name: "mysqlapp", Retry: opts.Retry, ErrClosed: app.ErrClosed, ErrUnavailable: app.ErrUnavailable, Bare: nil,
	})
	if err != nil {
		return nil, err
	}
	return &Driver{Store: st, db: st.DB(), opts: opts}, nil
}

// duplicateKey reports whether err is MySQL's duplicate-key error (1062) on index.
func duplicateKey(err error, index string) bool { return mysqldb.IsDuplicateKey(err, index) }

// idAttempts bounds the draws of a fresh id on primary-key collisions.
const idAttempts = 8

const appColumns = "id, name, secret, previous_secret, previous_secret_until, standard_webhooks, created_at"

type scanner interface{ Scan(dest ...any) error }

func (d *Driver) scanApp(s scanner) (*app.App, error) {
	var a app.App
	var until sql.NullTime
	if err := s.Scan(&a.ID, &a.Name, &a.Secret, &a.PreviousSecret, &until, &a.StandardWebhooks, &a.CreatedAt); err != nil {
		return nil, err
	}
	var err error
	if a.Secret, err = d.opts.Secrets.Open(a.ID, a.Secret); err != nil {
		return nil, err
	}
	if a.PreviousSecret, err = d.opts.Secrets.Open(a.ID, a.PreviousSecret); err != nil {
		return nil, err
	}
	if until.Valid {
		a.PreviousSecretUntil = until.Time
	} else {
		a.PreviousSecret = nil
	}
	return &a, nil
}

// CreateApp implements app.Driver.
func (d *Driver) CreateApp(ctx context.Context, p app.CreateAppParams) (*app.CreateAppResult, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var out *app.CreateAppResult
	err := d.Do(ctx, "create app", func(ctx context.Context) error {
		token, secret := app.NewToken(), app.NewSecret()
		for attempt := 1; ; attempt++ {
			id := app.NewID(time.Now())
			_, err := d.db.ExecContext(ctx, `INSERT INTO replay_apps (id, name, secret, token_sha256, standard_webhooks, created_at)
  VALUES (?, ?, ?, ?, ?, NOW(6))`, id, p.Name, d.opts.Secrets.Seal(id, secret), app.HashToken(token), p.StandardWebhooks)
			if duplicateKey(err, "PRIMARY") && attempt < idAttempts {
				continue
			}
			if err != nil {
				return err
			}
			a, err := d.scanApp(d.db.QueryRowContext(ctx, "SELECT "+appColumns+" FROM replay_apps WHERE id = ?", id))
			if err != nil {
				return err
			}
			out = &app.CreateAppResult{App: a, Token: token}
			return nil
		}
	})
	return out, err
}

func (d *Driver) oneApp(ctx context.Context, op, where string, arg any) (*app.App, error) {
	var out *app.App
	err := d.Do(ctx, op, func(ctx context.Context) error {
		a, err := d.scanApp(d.db.QueryRowContext(ctx, "SELECT "+appColumns+" FROM replay_apps WHERE "+where, arg))
		if errors.Is(err, sql.ErrNoRows) {
			return app.ErrNotFound
		}
		out = a
		return err
	})
	return out, err
}

// AppByToken implements app.Driver.
func (d *Driver) AppByToken(ctx context.Context, p app.AppByTokenParams) (*app.App, error) {
	if p.Token == "" {
		return nil, fmt.Errorf("mysqlapp: app by token: %w", app.ErrNotFound)
	}
	return d.oneApp(ctx, "app by token", "token_sha256 = ?", app.HashToken(p.Token))
}

// GetApp implements app.Driver.
func (d *Driver) GetApp(ctx context.Context, p app.GetAppParams) (*app.App, error) {
	return d.oneApp(ctx, fmt.Sprintf("get app %d", p.ID), "id = ?", p.ID)
}

// ListApps implements app.Driver.
func (d *Driver) ListApps(ctx context.Context, _ app.ListAppsParams) ([]*app.App, error) {
	var out []*app.App
	err := d.Do(ctx, "list apps", func(ctx context.Context) error {
		out = nil
		rows, err := d.db.QueryContext(ctx, "SELECT "+appColumns+" FROM replay_apps ORDER BY id")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			a, err := d.scanApp(rows)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// updateApp runs one UPDATE of app id and reads the app back; app.ErrNotFound when there is none.
func (d *Driver) updateApp(ctx context.Context, op, set string, id int64, args ...any) (*app.App, error) {
	var out *app.App
	err := d.Do(ctx, op, func(ctx context.Context) error {
		if _, err := d.db.ExecContext(ctx, "UPDATE replay_apps SET "+set+" WHERE id = ?", append(args, id)...); err != nil {
			return err
		}
		a, err := d.scanApp(d.db.QueryRowContext(ctx, "SELECT "+appColumns+" FROM replay_apps WHERE id = ?", id))
		if errors.Is(err, sql.ErrNoRows) {
			return app.ErrNotFound
		}
		out = a
		return err
	})
	return out, err
}

// RotateSecret implements app.Driver.
func (d *Driver) RotateSecret(ctx context.Context, p app.RotateSecretParams) (*app.App, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	// MySQL assigns left to right: previous_secret takes the old secret before secret changes.
	return d.updateApp(ctx, fmt.Sprintf("rotate the secret of app %d", p.ID), `previous_secret = IF(? > 0, secret, NULL),
  previous_secret_until = IF(? > 0, NOW(6) + INTERVAL ? MICROSECOND, NULL), secret = ?`, p.ID,
		p.Overlap, p.Overlap, p.Overlap.Microseconds(), d.opts.Secrets.Seal(p.ID, app.NewSecret()))
}

// SetStandardWebhooks implements app.Driver.
func (d *Driver) SetStandardWebhooks(ctx context.Context, p app.SetStandardWebhooksParams) (*app.App, error) {
	return d.updateApp(ctx, fmt.Sprintf("set standard webhooks of app %d", p.ID), "standard_webhooks = ?", p.ID, p.Enabled)
}

const webhookColumns = "id, app_id, url, valid, created_at, checked_at"

func scanWebhook(s scanner) (*app.Webhook, error) {
	var w app.Webhook
	if err := s.Scan(&w.ID, &w.AppID, &w.URL, &w.Valid, &w.CreatedAt, &w.CheckedAt); err != nil {
		return nil, err
	}
	return &w, nil
}

// CreateWebhook implements app.Driver.
func (d *Driver) CreateWebhook(ctx context.Context, p app.CreateWebhookParams) (*app.Webhook, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var out *app.Webhook
	err := d.Do(ctx, "create webhook", func(ctx context.Context) error {
		for attempt := 1; ; attempt++ {
			id := app.NewID(time.Now())
			_, err := d.db.ExecContext(ctx, `INSERT INTO replay_webhooks (id, app_id, url, url_sha256, valid, created_at, checked_at)
  VALUES (?, ?, ?, ?, ?, NOW(6), NOW(6))`, id, p.AppID, p.URL, app.HashURL(p.URL), p.Valid)
			switch {
			case duplicateKey(err, "PRIMARY") && attempt < idAttempts:
				continue
			case duplicateKey(err, "uq_replay_webhooks_app_url"):
				return fmt.Errorf("app %d: URL %q: %w", p.AppID, p.URL, app.ErrDuplicate)
			case isForeignKeyError(err):
				return fmt.Errorf("app %d: %w", p.AppID, app.ErrNotFound)
			case err != nil:
				return err
			}
			w, err := scanWebhook(d.db.QueryRowContext(ctx, "SELECT "+webhookColumns+" FROM replay_webhooks WHERE id = ?", id))
			if err != nil {
				return err
			}
			out = w
			return nil
		}
	})
	return out, err
}

// isForeignKeyError: 1452, a child row's parent does not exist.
func isForeignKeyError(err error) bool { return mysqldb.IsForeignKey(err) }

// GetWebhook implements app.Driver.
func (d *Driver) GetWebhook(ctx context.Context, p app.GetWebhookParams) (*app.Webhook, error) {
	var out *app.Webhook
	err := d.Do(ctx, fmt.Sprintf("get webhook %d", p.ID), func(ctx context.Context) error {
		var err error
		out, err = d.getWebhook(ctx, p.ID, p.AppID)
		return err
	})
	return out, err
}

// webhookWhere is the WHERE clause and arguments of webhook id, restricted to appID when not 0.
func webhookWhere(id, appID int64) (string, []any) {
	if appID != 0 {
		return " WHERE id = ? AND app_id = ?", []any{id, appID}
	}
	return " WHERE id = ?", []any{id}
}

// getWebhook reads one webhook; app.ErrNotFound when there is none (of that app).
func (d *Driver) getWebhook(ctx context.Context, id, appID int64) (*app.Webhook, error) {
	where, args := webhookWhere(id, appID)
	w, err := scanWebhook(d.db.QueryRowContext(ctx, "SELECT "+webhookColumns+" FROM replay_webhooks"+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, app.ErrNotFound
	}
	return w, err
}

// ListWebhooks implements app.Driver.
func (d *Driver) ListWebhooks(ctx context.Context, p app.ListWebhooksParams) ([]*app.Webhook, error) {
	var out []*app.Webhook
	err := d.Do(ctx, "list webhooks", func(ctx context.Context) error {
		out = nil
		rows, err := d.db.QueryContext(ctx, "SELECT "+webhookColumns+" FROM replay_webhooks WHERE app_id = ? ORDER BY id", p.AppID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			w, err := scanWebhook(rows)
			if err != nil {
				return err
			}
			out = append(out, w)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetWebhookValid implements app.Driver.
func (d *Driver) SetWebhookValid(ctx context.Context, p app.SetWebhookValidParams) (*app.Webhook, error) {
	var out *app.Webhook
	err := d.Do(ctx, fmt.Sprintf("set webhook %d validity", p.ID), func(ctx context.Context) error {
		where, args := webhookWhere(p.ID, p.AppID)
		if _, err := d.db.ExecContext(ctx, "UPDATE replay_webhooks SET valid = ?, checked_at = NOW(6)"+where, append([]any{p.Valid}, args...)...); err != nil {
			return err
		}
		// RowsAffected is 0 when nothing changed as well as when nothing matched: read it back.
		var err error
		out, err = d.getWebhook(ctx, p.ID, p.AppID)
		return err
	})
	return out, err
}

// DeleteWebhook implements app.Driver.
func (d *Driver) DeleteWebhook(ctx context.Context, p app.DeleteWebhookParams) error {
	if p.AppID <= 0 {
		return fmt.Errorf("mysqlapp: delete webhook: %w: AppID must be positive", app.ErrInvalidParams)
	}
	return d.Do(ctx, fmt.Sprintf("delete webhook %d", p.ID), func(ctx context.Context) error {
		res, err := d.db.ExecContext(ctx, "DELETE FROM replay_webhooks WHERE id = ? AND app_id = ?", p.ID, p.AppID)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return app.ErrNotFound
		}
		return nil
	})
}
