package embeddedapp_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/replay/replay/index/diskreserve"
	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/apptest"
	"github.com/replay/replay/replayd/app/embeddedapp"
)

func open(t *testing.T, opts embeddedapp.Options) *embeddedapp.Driver {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	d, err := embeddedapp.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestConformance(t *testing.T) {
	apptest.Exercise(t, func(t *testing.T) app.Driver { return open(t, embeddedapp.Options{}) })
}

func TestOptionsValidateReportsEverything(t *testing.T) {
	o := embeddedapp.Options{}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "Dir") || !strings.Contains(err.Error(), "Now") {
		t.Fatalf("Validate() = %v, want Dir and Now", err)
	}
	o = embeddedapp.Options{Dir: "x"}
	if err := o.EnsureDefaults().Validate(); err != nil || o.Now == nil {
		t.Fatalf("defaults: %+v %v", o, err)
	}
}

// Apps and webhooks survive a reopen; times come from the injected clock; a second Open of the
// same directory is refused while the first holds it.
func TestReopenAndClock(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	d := open(t, embeddedapp.Options{Dir: dir, Now: func() time.Time { return now }})
	ctx := context.Background()
	a, err := d.CreateApp(ctx, app.CreateAppParams{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := d.CreateWebhook(ctx, app.CreateWebhookParams{AppID: a.App.ID, URL: "https://example.com/", Valid: true})
	if err != nil {
		t.Fatal(err)
	}
	if !a.App.CreatedAt.Equal(now.Truncate(time.Microsecond)) || !w.CreatedAt.Equal(now.Truncate(time.Microsecond)) {
		t.Fatalf("times %v %v, want the injected clock's", a.App.CreatedAt, w.CreatedAt)
	}
	if ms := (a.App.ID >> 22) + 1288834974657; ms != now.UnixMilli() {
		t.Fatalf("id %d carries ms %d, want %d", a.App.ID, ms, now.UnixMilli())
	}
	if _, err := embeddedapp.Open(embeddedapp.Options{Dir: dir}); err == nil {
		t.Fatal("a second Open of a held directory succeeded")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := open(t, embeddedapp.Options{Dir: dir})
	got, err := d2.AppByToken(ctx, app.AppByTokenParams{Token: a.Token})
	if err != nil || got.ID != a.App.ID || string(got.Secret) != string(a.App.Secret) {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	gw, err := d2.GetWebhook(ctx, app.GetWebhookParams{ID: w.ID, AppID: a.App.ID})
	if err != nil || *gw != *w {
		t.Fatalf("webhook after reopen: %+v, %v; want %+v", gw, err, w)
	}
}

// With a key, the conformance suite holds, and nothing stored holds a secret in plaintext.
func TestSealedSecrets(t *testing.T) {
	sealer, err := app.NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	apptest.Exercise(t, func(t *testing.T) app.Driver { return open(t, embeddedapp.Options{Secrets: sealer}) })
	dir := t.TempDir()
	d := open(t, embeddedapp.Options{Dir: dir, Secrets: sealer})
	created, err := d.CreateApp(t.Context(), app.CreateAppParams{Name: "sealed"})
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := d.RotateSecret(t.Context(), app.RotateSecretParams{ID: created.App.ID, Overlap: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	apptest.NoPlaintext(t, dir, created.App.Secret, rotated.Secret)
	// Without the key the store says what is missing.
	plain := open(t, embeddedapp.Options{Dir: dir})
	if _, err := plain.GetApp(t.Context(), app.GetAppParams{ID: created.App.ID}); !errors.Is(err, app.ErrSealed) {
		t.Fatalf("reading a sealed secret without the key: %v", err)
	}
}

// Below the disk reserve every write is refused as unavailable, a rotation too; reads go on.
func TestLowDiskRefusesWrites(t *testing.T) {
	fs := diskreserve.NewFreeFS(vfs.Default, 1<<30)
	d := open(t, embeddedapp.Options{FS: fs, DiskReserve: 64 << 20})
	created, err := d.CreateApp(t.Context(), app.CreateAppParams{Name: "low"})
	if err != nil {
		t.Fatal(err)
	}
	fs.Free.Store(1 << 20)
	if _, err := d.RotateSecret(t.Context(), app.RotateSecretParams{ID: created.App.ID}); !errors.Is(err, app.ErrUnavailable) || !errors.Is(err, diskreserve.ErrLowDisk) {
		t.Fatalf("rotation on a low disk: %v", err)
	}
	if _, err := d.CreateApp(t.Context(), app.CreateAppParams{Name: "more"}); !errors.Is(err, app.ErrUnavailable) {
		t.Fatalf("create on a low disk: %v", err)
	}
	if got, err := d.GetApp(t.Context(), app.GetAppParams{ID: created.App.ID}); err != nil || string(got.Secret) != string(created.App.Secret) {
		t.Fatalf("read on a low disk: %v", err)
	}
}
