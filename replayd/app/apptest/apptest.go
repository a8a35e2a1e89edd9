// Package apptest is the conformance suite every app.Driver must pass: apps and tokens, webhooks
// and their per-app uniqueness and ownership, validation, contexts, Close.
package apptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/replay/replay/replayd/app"
)

// NewDriver returns a driver on a fresh, empty store; the suite closes it (drivers' Close is
// idempotent, so the constructor may also register its own cleanup).
type NewDriver func(t *testing.T) app.Driver

// Exercise runs the conformance suite against the driver newDriver makes. Every subtest gets its
// own store and runs in parallel with the others.
func Exercise(t *testing.T, newDriver NewDriver) {
	tests := []struct {
		name string
		fn   func(t *testing.T, d app.Driver)
	}{
		{"CreateAppAndToken", testCreateApp},
		{"ListApps", testListApps},
		{"InvalidParams", testInvalidParams},
		{"Webhooks", testWebhooks},
		{"WebhookOwnership", testWebhookOwnership},
		{"WebhookValidity", testWebhookValidity},
		{"RotateSecret", testRotateSecret},
		{"StandardWebhooks", testStandardWebhooks},
		{"DuplicateURL", testDuplicateURL},
		{"WebhookForUnknownApp", testWebhookUnknownApp},
		{"ConcurrentCreates", testConcurrentCreates},
		{"ContextCanceled", testContextCanceled},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDriver(t)
			t.Cleanup(func() { d.Close() })
			tc.fn(t, d)
		})
	}
}

var ctx = context.Background()

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func createApp(t *testing.T, d app.Driver, name string) *app.CreateAppResult {
	t.Helper()
	r, err := d.CreateApp(ctx, app.CreateAppParams{Name: name})
	if err != nil {
		t.Fatalf("CreateApp(%q): %v", name, err)
	}
	return r
}

func createWebhook(t *testing.T, d app.Driver, appID int64, url string) *app.Webhook {
	t.Helper()
	w, err := d.CreateWebhook(ctx, app.CreateWebhookParams{AppID: appID, URL: url, Valid: true})
	if err != nil {
		t.Fatalf("CreateWebhook(%d, %q): %v", appID, url, err)
	}
	return w
}

// checkID: a snowflake-like id, positive and far from small sequential numbers.
func checkID(t *testing.T, what string, id int64) {
	t.Helper()
	if id < 1<<40 {
		t.Fatalf("%s id %d: want a large snowflake-like id", what, id)
	}
}

func recent(t *testing.T, what string, tm time.Time) {
	t.Helper()
	if tm.IsZero() || tm.Location() != time.UTC || time.Since(tm) > time.Hour || time.Until(tm) > time.Hour {
		t.Fatalf("%s = %v, want a recent UTC time", what, tm)
	}
}

func testCreateApp(t *testing.T, d app.Driver) {
	a := createApp(t, d, "first app")
	b := createApp(t, d, "second app")
	checkID(t, "app", a.App.ID)
	if a.App.ID == b.App.ID || a.Token == b.Token || string(a.App.Secret) == string(b.App.Secret) {
		t.Fatalf("two apps share an id, token or secret: %+v %+v", a, b)
	}
	if a.App.Name != "first app" || len(a.Token) < 43 || len(a.App.Secret) < 43 {
		t.Fatalf("app %+v token %q: want the name, a 43+ character token and secret", a.App, a.Token)
	}
	recent(t, "CreatedAt", a.App.CreatedAt)
	for _, r := range []*app.CreateAppResult{a, b} {
		got, err := d.AppByToken(ctx, app.AppByTokenParams{Token: r.Token})
		if err != nil || got.ID != r.App.ID || string(got.Secret) != string(r.App.Secret) || got.Name != r.App.Name || !got.CreatedAt.Equal(r.App.CreatedAt) {
			t.Fatalf("AppByToken = %+v, %v; want %+v", got, err, r.App)
		}
		got, err = d.GetApp(ctx, app.GetAppParams{ID: r.App.ID})
		if err != nil || got.ID != r.App.ID || string(got.Secret) != string(r.App.Secret) {
			t.Fatalf("GetApp = %+v, %v; want %+v", got, err, r.App)
		}
	}
	for _, bad := range []string{"", "x", a.Token + "x", a.Token[:len(a.Token)-1], string(a.App.Secret)} {
		_, err := d.AppByToken(ctx, app.AppByTokenParams{Token: bad})
		wantErr(t, fmt.Sprintf("AppByToken(%q)", bad), err, app.ErrNotFound)
	}
	_, err := d.GetApp(ctx, app.GetAppParams{ID: a.App.ID + 1})
	wantErr(t, "GetApp(unknown)", err, app.ErrNotFound)
}

func testListApps(t *testing.T, d app.Driver) {
	apps, err := d.ListApps(ctx, app.ListAppsParams{})
	if err != nil || len(apps) != 0 {
		t.Fatalf("ListApps on an empty store = %v, %v", apps, err)
	}
	var ids []int64
	for i := range 3 {
		ids = append(ids, createApp(t, d, fmt.Sprint("app ", i)).App.ID)
	}
	slices.Sort(ids)
	apps, err = d.ListApps(ctx, app.ListAppsParams{})
	if err != nil || len(apps) != 3 {
		t.Fatalf("ListApps = %v, %v", apps, err)
	}
	for i, a := range apps {
		if a.ID != ids[i] || len(a.Secret) == 0 {
			t.Fatalf("ListApps[%d] = %+v, want id %d (ascending ids)", i, a, ids[i])
		}
	}
}

func testInvalidParams(t *testing.T, d app.Driver) {
	_, err := d.CreateApp(ctx, app.CreateAppParams{Name: " "})
	wantErr(t, "CreateApp without a name", err, app.ErrInvalidParams)
	a := createApp(t, d, "a")
	for _, u := range []string{"", "not a url", "ftp://example.com/x", "https://", "/relative", "https://u:p@example.com/", "https://example.com/#frag"} {
		_, err := d.CreateWebhook(ctx, app.CreateWebhookParams{AppID: a.App.ID, URL: u})
		wantErr(t, fmt.Sprintf("CreateWebhook(%q)", u), err, app.ErrInvalidParams)
	}
	_, err = d.CreateWebhook(ctx, app.CreateWebhookParams{URL: "https://example.com/"})
	wantErr(t, "CreateWebhook without an app", err, app.ErrInvalidParams)
	err = d.DeleteWebhook(ctx, app.DeleteWebhookParams{ID: 1})
	wantErr(t, "DeleteWebhook without an app", err, app.ErrInvalidParams)
}

func testWebhooks(t *testing.T, d app.Driver) {
	a := createApp(t, d, "a").App
	if ws, err := d.ListWebhooks(ctx, app.ListWebhooksParams{AppID: a.ID}); err != nil || len(ws) != 0 {
		t.Fatalf("ListWebhooks before any = %v, %v", ws, err)
	}
	w1 := createWebhook(t, d, a.ID, "https://example.com/hook?x=1")
	w2 := createWebhook(t, d, a.ID, "http://127.0.0.1:8080/webhook")
	checkID(t, "webhook", w1.ID)
	if w1.ID == w2.ID || w1.AppID != a.ID || w1.URL != "https://example.com/hook?x=1" || !w1.Valid {
		t.Fatalf("webhooks %+v %+v", w1, w2)
	}
	recent(t, "webhook CreatedAt", w1.CreatedAt)
	got, err := d.GetWebhook(ctx, app.GetWebhookParams{ID: w1.ID})
	if err != nil || *got != *w1 {
		t.Fatalf("GetWebhook = %+v, %v; want %+v", got, err, w1)
	}
	got, err = d.GetWebhook(ctx, app.GetWebhookParams{ID: w2.ID, AppID: a.ID})
	if err != nil || *got != *w2 {
		t.Fatalf("GetWebhook(app) = %+v, %v; want %+v", got, err, w2)
	}
	ws, err := d.ListWebhooks(ctx, app.ListWebhooksParams{AppID: a.ID})
	want := []*app.Webhook{w1, w2}
	slices.SortFunc(want, func(x, y *app.Webhook) int { return int(min(max(x.ID-y.ID, -1), 1)) })
	if err != nil || len(ws) != 2 || *ws[0] != *want[0] || *ws[1] != *want[1] {
		t.Fatalf("ListWebhooks = %v, %v; want %v (ascending ids)", ws, err, want)
	}
	if err := d.DeleteWebhook(ctx, app.DeleteWebhookParams{AppID: a.ID, ID: w1.ID}); err != nil {
		t.Fatal(err)
	}
	_, err = d.GetWebhook(ctx, app.GetWebhookParams{ID: w1.ID})
	wantErr(t, "GetWebhook after delete", err, app.ErrNotFound)
	err = d.DeleteWebhook(ctx, app.DeleteWebhookParams{AppID: a.ID, ID: w1.ID})
	wantErr(t, "DeleteWebhook twice", err, app.ErrNotFound)
	if ws, err := d.ListWebhooks(ctx, app.ListWebhooksParams{AppID: a.ID}); err != nil || len(ws) != 1 || ws[0].ID != w2.ID {
		t.Fatalf("ListWebhooks after delete = %v, %v", ws, err)
	}
	// A deleted URL can be registered again, with a new id.
	w3 := createWebhook(t, d, a.ID, w1.URL)
	if w3.ID == w1.ID {
		t.Fatalf("re-registered webhook reuses id %d", w3.ID)
	}
}

// testWebhookValidity: a CRC check's outcome is recorded with the store's time, only for the
// owning app, and read back by Get and List.
func testWebhookValidity(t *testing.T, d app.Driver) {
	a := createApp(t, d, "a").App
	b := createApp(t, d, "b").App
	w := createWebhook(t, d, a.ID, "https://example.com/v")
	recent(t, "webhook CheckedAt at registration", w.CheckedAt)
	if w.CheckedAt.Before(w.CreatedAt) {
		t.Fatalf("CheckedAt %v before CreatedAt %v", w.CheckedAt, w.CreatedAt)
	}
	got, err := d.SetWebhookValid(ctx, app.SetWebhookValidParams{ID: w.ID, AppID: a.ID, Valid: false})
	if err != nil || got.Valid || got.ID != w.ID || got.URL != w.URL || got.CheckedAt.Before(w.CheckedAt) || !got.CreatedAt.Equal(w.CreatedAt) {
		t.Fatalf("SetWebhookValid(false) = %+v, %v (was %+v)", got, err, w)
	}
	if g, err := d.GetWebhook(ctx, app.GetWebhookParams{ID: w.ID}); err != nil || *g != *got {
		t.Fatalf("GetWebhook after SetWebhookValid = %+v, %v; want %+v", g, err, got)
	}
	if ws, err := d.ListWebhooks(ctx, app.ListWebhooksParams{AppID: a.ID}); err != nil || len(ws) != 1 || *ws[0] != *got {
		t.Fatalf("ListWebhooks after SetWebhookValid = %v, %v", ws, err)
	}
	_, err = d.SetWebhookValid(ctx, app.SetWebhookValidParams{ID: w.ID, AppID: b.ID, Valid: true})
	wantErr(t, "SetWebhookValid of another app's webhook", err, app.ErrNotFound)
	_, err = d.SetWebhookValid(ctx, app.SetWebhookValidParams{ID: w.ID + 1, Valid: true})
	wantErr(t, "SetWebhookValid of an unknown webhook", err, app.ErrNotFound)
	// Unchanged validity still records the check; AppID 0 means any app (the scheduled re-check).
	again, err := d.SetWebhookValid(ctx, app.SetWebhookValidParams{ID: w.ID, Valid: false})
	if err != nil || again.Valid || again.CheckedAt.Before(got.CheckedAt) {
		t.Fatalf("SetWebhookValid(false) again = %+v, %v", again, err)
	}
	back, err := d.SetWebhookValid(ctx, app.SetWebhookValidParams{ID: w.ID, Valid: true})
	if err != nil || !back.Valid {
		t.Fatalf("SetWebhookValid(true) = %+v, %v", back, err)
	}
}

func testWebhookOwnership(t *testing.T, d app.Driver) {
	a := createApp(t, d, "a").App
	b := createApp(t, d, "b").App
	wa := createWebhook(t, d, a.ID, "https://example.com/a")
	_, err := d.GetWebhook(ctx, app.GetWebhookParams{ID: wa.ID, AppID: b.ID})
	wantErr(t, "GetWebhook as another app", err, app.ErrNotFound)
	err = d.DeleteWebhook(ctx, app.DeleteWebhookParams{AppID: b.ID, ID: wa.ID})
	wantErr(t, "DeleteWebhook as another app", err, app.ErrNotFound)
	if ws, err := d.ListWebhooks(ctx, app.ListWebhooksParams{AppID: b.ID}); err != nil || len(ws) != 0 {
		t.Fatalf("another app lists %v, %v", ws, err)
	}
	if _, err := d.GetWebhook(ctx, app.GetWebhookParams{ID: wa.ID, AppID: a.ID}); err != nil {
		t.Fatalf("the owner's webhook is gone after another app's delete: %v", err)
	}
	_, err = d.GetWebhook(ctx, app.GetWebhookParams{ID: wa.ID + 1})
	wantErr(t, "GetWebhook(unknown)", err, app.ErrNotFound)
}

func testDuplicateURL(t *testing.T, d app.Driver) {
	a := createApp(t, d, "a").App
	b := createApp(t, d, "b").App
	const u = "https://example.com/same"
	createWebhook(t, d, a.ID, u)
	_, err := d.CreateWebhook(ctx, app.CreateWebhookParams{AppID: a.ID, URL: u})
	wantErr(t, "the same URL twice", err, app.ErrDuplicate)
	createWebhook(t, d, b.ID, u)     // another app may register it
	createWebhook(t, d, a.ID, u+"/") // a different URL
	if ws, _ := d.ListWebhooks(ctx, app.ListWebhooksParams{AppID: a.ID}); len(ws) != 2 {
		t.Fatalf("app a has %d webhooks, want 2", len(ws))
	}
}

func testWebhookUnknownApp(t *testing.T, d app.Driver) {
	_, err := d.CreateWebhook(ctx, app.CreateWebhookParams{AppID: 12345, URL: "https://example.com/"})
	wantErr(t, "CreateWebhook for an unknown app", err, app.ErrNotFound)
}

// Concurrent registrations of one URL: exactly one wins, the others are ErrDuplicate.
func testConcurrentCreates(t *testing.T, d app.Driver) {
	a := createApp(t, d, "a").App
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = d.CreateWebhook(ctx, app.CreateWebhookParams{AppID: a.ID, URL: "https://example.com/race"})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if !errors.Is(err, app.ErrDuplicate) {
			t.Fatalf("concurrent create: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent registrations of one URL succeeded, want 1", ok, n)
	}
}

func testContextCanceled(t *testing.T, d app.Driver) {
	a := createApp(t, d, "a")
	w := createWebhook(t, d, a.App.ID, "https://example.com/")
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]error{}
	_, calls["CreateApp"] = d.CreateApp(cctx, app.CreateAppParams{Name: "x"})
	_, calls["AppByToken"] = d.AppByToken(cctx, app.AppByTokenParams{Token: a.Token})
	_, calls["GetApp"] = d.GetApp(cctx, app.GetAppParams{ID: a.App.ID})
	_, calls["ListApps"] = d.ListApps(cctx, app.ListAppsParams{})
	_, calls["CreateWebhook"] = d.CreateWebhook(cctx, app.CreateWebhookParams{AppID: a.App.ID, URL: "https://example.com/2"})
	_, calls["GetWebhook"] = d.GetWebhook(cctx, app.GetWebhookParams{ID: w.ID})
	_, calls["ListWebhooks"] = d.ListWebhooks(cctx, app.ListWebhooksParams{AppID: a.App.ID})
	calls["DeleteWebhook"] = d.DeleteWebhook(cctx, app.DeleteWebhookParams{AppID: a.App.ID, ID: w.ID})
	calls["Ping"] = d.Ping(cctx)
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", name, err)
		}
	}
	if ws, err := d.ListWebhooks(ctx, app.ListWebhooksParams{AppID: a.App.ID}); err != nil || len(ws) != 1 {
		t.Fatalf("canceled calls changed the webhooks: %v, %v", ws, err)
	}
	if apps, err := d.ListApps(ctx, app.ListAppsParams{}); err != nil || len(apps) != 1 {
		t.Fatalf("canceled calls changed the apps: %v, %v", apps, err)
	}
}

func testClose(t *testing.T, d app.Driver) {
	a := createApp(t, d, "a")
	if err := d.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := d.AppByToken(ctx, app.AppByTokenParams{Token: a.Token})
	wantErr(t, "AppByToken after Close", err, app.ErrClosed)
	wantErr(t, "Ping after Close", d.Ping(ctx), app.ErrClosed)
}

// testRotateSecret: a rotation gives a fresh secret, keeps the old one as PreviousSecret for the
// overlap (by the store's clock), replaces a previous rotation's, and with no overlap drops it;
// the token and other apps are untouched.
func testRotateSecret(t *testing.T, d app.Driver) {
	r := createApp(t, d, "a")
	a, other := r.App, createApp(t, d, "b").App
	if len(a.PreviousSecret) != 0 || len(a.Secrets(time.Now())) != 1 {
		t.Fatalf("a new app has a previous secret: %+v", a)
	}
	got, err := d.RotateSecret(ctx, app.RotateSecretParams{ID: a.ID, Overlap: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Secret) == string(a.Secret) || len(got.Secret) < 43 || string(got.PreviousSecret) != string(a.Secret) {
		t.Fatalf("RotateSecret(1h) = %+v; want a new secret and %q as the previous one", got, a.Secret)
	}
	if until := time.Until(got.PreviousSecretUntil); until < 59*time.Minute || until > 61*time.Minute {
		t.Fatalf("the previous secret lasts until %v, want an hour from now", got.PreviousSecretUntil)
	}
	if s := got.Secrets(time.Now()); len(s) != 2 || string(s[0]) != string(got.Secret) || string(s[1]) != string(a.Secret) {
		t.Fatalf("Secrets during the overlap: %q", s)
	}
	if s := got.Secrets(got.PreviousSecretUntil); len(s) != 1 {
		t.Fatalf("Secrets after the overlap: %q", s)
	}
	for what, load := range map[string]func() (*app.App, error){
		"AppByToken": func() (*app.App, error) { return d.AppByToken(ctx, app.AppByTokenParams{Token: r.Token}) },
		"GetApp":     func() (*app.App, error) { return d.GetApp(ctx, app.GetAppParams{ID: a.ID}) },
	} {
		g, err := load()
		if err != nil || string(g.Secret) != string(got.Secret) || string(g.PreviousSecret) != string(a.Secret) || !g.PreviousSecretUntil.Equal(got.PreviousSecretUntil) {
			t.Fatalf("%s after the rotation = %+v, %v; want %+v", what, g, err, got)
		}
	}
	if g, err := d.GetApp(ctx, app.GetAppParams{ID: other.ID}); err != nil || string(g.Secret) != string(other.Secret) || len(g.PreviousSecret) != 0 {
		t.Fatalf("another app changed: %+v, %v", g, err)
	}
	// A second rotation: the previous secret is the one just replaced.
	again, err := d.RotateSecret(ctx, app.RotateSecretParams{ID: a.ID, Overlap: time.Minute})
	if err != nil || string(again.PreviousSecret) != string(got.Secret) || string(again.Secret) == string(got.Secret) {
		t.Fatalf("second RotateSecret = %+v, %v", again, err)
	}
	// No overlap: no previous secret.
	now, err := d.RotateSecret(ctx, app.RotateSecretParams{ID: a.ID})
	if err != nil || len(now.PreviousSecret) != 0 || len(now.Secrets(time.Now())) != 1 {
		t.Fatalf("RotateSecret(0) = %+v, %v", now, err)
	}
	if g, err := d.GetApp(ctx, app.GetAppParams{ID: a.ID}); err != nil || len(g.PreviousSecret) != 0 || string(g.Secret) != string(now.Secret) {
		t.Fatalf("GetApp after RotateSecret(0) = %+v, %v", g, err)
	}
	_, err = d.RotateSecret(ctx, app.RotateSecretParams{ID: a.ID + 1, Overlap: time.Hour})
	wantErr(t, "RotateSecret of an unknown app", err, app.ErrNotFound)
	for _, bad := range []app.RotateSecretParams{{ID: a.ID, Overlap: -time.Second}, {ID: a.ID, Overlap: app.MaxOverlap + time.Second}, {Overlap: time.Hour}} {
		_, err := d.RotateSecret(ctx, bad)
		wantErr(t, fmt.Sprintf("RotateSecret(%+v)", bad), err, app.ErrInvalidParams)
	}
}

// testStandardWebhooks: the per-app option is set at creation or later, and read back.
func testStandardWebhooks(t *testing.T, d app.Driver) {
	plain := createApp(t, d, "plain").App
	r, err := d.CreateApp(ctx, app.CreateAppParams{Name: "sw", StandardWebhooks: true})
	if err != nil || !r.App.StandardWebhooks || plain.StandardWebhooks {
		t.Fatalf("CreateApp with and without StandardWebhooks: %+v, %+v, %v", r, plain, err)
	}
	if g, err := d.AppByToken(ctx, app.AppByTokenParams{Token: r.Token}); err != nil || !g.StandardWebhooks {
		t.Fatalf("AppByToken = %+v, %v", g, err)
	}
	on, err := d.SetStandardWebhooks(ctx, app.SetStandardWebhooksParams{ID: plain.ID, Enabled: true})
	if err != nil || !on.StandardWebhooks || string(on.Secret) != string(plain.Secret) {
		t.Fatalf("SetStandardWebhooks(true) = %+v, %v", on, err)
	}
	off, err := d.SetStandardWebhooks(ctx, app.SetStandardWebhooksParams{ID: r.App.ID})
	if err != nil || off.StandardWebhooks {
		t.Fatalf("SetStandardWebhooks(false) = %+v, %v", off, err)
	}
	apps, err := d.ListApps(ctx, app.ListAppsParams{})
	if err != nil || len(apps) != 2 {
		t.Fatalf("ListApps: %v, %v", apps, err)
	}
	for _, a := range apps {
		if a.StandardWebhooks != (a.ID == plain.ID) {
			t.Fatalf("ListApps: app %d StandardWebhooks %v", a.ID, a.StandardWebhooks)
		}
	}
	_, err = d.SetStandardWebhooks(ctx, app.SetStandardWebhooksParams{ID: plain.ID + r.App.ID})
	wantErr(t, "SetStandardWebhooks of an unknown app", err, app.ErrNotFound)
}

// NoPlaintext fails t when a file under dir holds one of secrets as it is: what a store with a
// secrets key writes must keep them sealed (WAL and tables alike).
func NoPlaintext(t *testing.T, dir string, secrets ...[]byte) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, s) {
				t.Errorf("%s holds the secret %.6s… in plaintext", path, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
