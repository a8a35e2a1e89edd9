package jobtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQLServer is the server MySQL tests run against, without a database: REPLAY_TEST_MYSQL_DSN or
// a local MariaDB (root, no password), as .ci/run provides.
func MySQLServer() string {
	if s := os.Getenv("REPLAY_TEST_MYSQL_DSN"); s != "" {
		return s
	}
	return "root@tcp(127.0.0.1:3306)/"
}

// MySQLDatabase creates an empty database with a random name on MySQLServer, dropped when the
// test ends, and returns a DSN naming it. Tests get a database each, so they can run in parallel.
// An unreachable server fails the test: CI has one.
func MySQLDatabase(t testing.TB) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(MySQLServer())
	if err != nil {
		t.Fatalf("REPLAY_TEST_MYSQL_DSN %q: %v", MySQLServer(), err)
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
