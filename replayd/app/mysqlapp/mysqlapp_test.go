package mysqlapp_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/apptest"
	"github.com/replay/replay/replayd/app/mysqlapp"
	"github.com/replay/replay/replayd/job/mysqljob"
)

// baseDSN is the server the tests run against, without a database: REPLAY_TEST_MYSQL_DSN or a
// local MariaDB (root, no password), as .ci/run provides.
func baseDSN() string {
	if s := os.Getenv("REPLAY_TEST_MYSQL_DSN"); s != "" {
		return s
	}
	return "root@tcp(127.0.0.1:3306)/"
}

// freshDatabase creates an empty database with a random name, dropped when the test ends, and
// returns a DSN naming it.
func freshDatabase(t testing.TB) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(baseDSN())
	if err != nil {
		t.Fatalf("REPLAY_TEST_MYSQL_DSN %q: %v", baseDSN(), err)
	}
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		t.Fatalf("MariaDB/MySQL is not reachable at %s (set REPLAY_TEST_MYSQL_DSN, or start it as .ci/run does): %v", cfg.Addr, err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "replay_test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			t.Error(err)
			return
		}
		defer admin.Close()
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name); err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

func open(t testing.TB, opts mysqlapp.Options) *mysqlapp.Driver {
	t.Helper()
	if opts.DSN == "" {
		opts.DSN = freshDatabase(t)
	}
	d, err := mysqlapp.Open(context.Background(), opts)
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
	ctx := context.Background()
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
