package mysqlapp_test

import (
	"bytes"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/apptest"
	"github.com/replay/replay/replayd/app/mysqlapp"
	"github.com/replay/replay/replayd/job/mysqljob"
	"github.com/replay/replay/replayd/mysqldb/mysqldbtest"
)

func freshDatabase(t testing.TB) string { return mysqldbtest.Database(t) }

func open(t testing.TB, opts mysqlapp.Options) *mysqlapp.Driver {
	t.Helper()
	if opts.DSN == "" {
		opts.DSN = freshDatabase(t)
	}
	d, err := mysqlapp.Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("mysqlapp.Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestConformance(t *testing.T) {
	apptest.Exercise(t, func(t *testing.T) app.Driver { return open(t, mysqlapp.Options{MaxOpenConns: 4}) })
}

// The app store's migrations live beside the job store's in one database without clashing, and
// applying them again changes nothing.
func TestMigrationsBesideJobStore(t *testing.T) {
	dsn := freshDatabase(t)
	ctx := t.Context()
	jobs, err := mysqljob.Open(ctx, mysqljob.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer jobs.Close()
	applied, err := mysqlapp.Migrate(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := mysqlapp.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || len(applied) != len(ms) {
		t.Fatalf("applied %v of %d migrations", applied, len(ms))
	}
	if again, err := mysqlapp.Migrate(ctx, dsn); err != nil || len(again) != 0 {
		t.Fatalf("second Migrate applied %v, %v", again, err)
	}
	d := open(t, mysqlapp.Options{DSN: dsn})
	var n int
	if err := d.DB().QueryRow("SELECT COUNT(*) FROM app_schema_migrations").Scan(&n); err != nil || n != len(ms) {
		t.Fatalf("app_schema_migrations has %d rows (%v), want %d", n, err, len(ms))
	}
	if err := d.DB().QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n == 0 {
		t.Fatalf("the job store's schema_migrations has %d rows (%v)", n, err)
	}
	// Only hashes of tokens are stored.
	r, err := d.CreateApp(ctx, app.CreateAppParams{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	var stored []byte
	if err := d.DB().QueryRow("SELECT token_sha256 FROM replay_apps WHERE id = ?", r.App.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if string(stored) != string(app.HashToken(r.Token)) || strings.Contains(string(stored), r.Token) {
		t.Fatalf("stored token column %x is not the token's SHA-256", stored)
	}
}

func TestOptionsValidateReportsEverything(t *testing.T) {
	o := mysqlapp.Options{MaxOpenConns: -2, ConnMaxLifetime: -3}
	err := o.Validate()
	for _, want := range []string{"DSN", "MaxOpenConns", "ConnMaxLifetime"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Validate() = %v, want it to mention %s", err, want)
		}
	}
	o = mysqlapp.Options{DSN: "root@tcp(127.0.0.1:3306)/"}
	if err := o.EnsureDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "database") {
		t.Fatalf("a DSN without a database: %v", err)
	}
	o = mysqlapp.Options{DSN: "root@tcp(127.0.0.1:3306)/replay"}
	if err := o.EnsureDefaults().Validate(); err != nil || o.MaxOpenConns != 8 {
		t.Fatalf("defaults: %+v %v", o, err)
	}
}

// With a key, the conformance suite holds, the rows hold sealed secrets only, and without the
// key the store says what is missing.
func TestSealedSecrets(t *testing.T) {
	sealer, err := app.NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	apptest.Exercise(t, func(t *testing.T) app.Driver { return open(t, mysqlapp.Options{MaxOpenConns: 4, Secrets: sealer}) })
	dsn := freshDatabase(t)
	d := open(t, mysqlapp.Options{DSN: dsn, Secrets: sealer})
	created, err := d.CreateApp(t.Context(), app.CreateAppParams{Name: "sealed"})
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := d.RotateSecret(t.Context(), app.RotateSecretParams{ID: created.App.ID, Overlap: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rotated.PreviousSecret, created.App.Secret) {
		t.Fatalf("previous secret after the rotation %q, want the created one", rotated.PreviousSecret)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var secret, previous []byte
	if err := db.QueryRowContext(t.Context(), "SELECT secret, previous_secret FROM replay_apps WHERE id = ?", created.App.ID).Scan(&secret, &previous); err != nil {
		t.Fatal(err)
	}
	for _, stored := range [][]byte{secret, previous} {
		if !bytes.HasPrefix(stored, []byte("enc1:")) || bytes.Contains(stored, created.App.Secret) || bytes.Contains(stored, rotated.Secret) {
			t.Fatalf("stored secret %q is not sealed", stored)
		}
	}
	plain := open(t, mysqlapp.Options{DSN: dsn})
	if _, err := plain.GetApp(t.Context(), app.GetAppParams{ID: created.App.ID}); !errors.Is(err, app.ErrSealed) {
		t.Fatalf("reading a sealed secret without the key: %v", err)
	}
}
