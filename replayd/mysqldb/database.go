package mysqldb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/go-sql-driver/mysql"
)

// TestServer is the server tests and benchmarks create their databases on, as a DSN without a
// database: $REPLAY_TEST_MYSQL_DSN, else a local MariaDB (root, no password), as .ci/run
// provides.
func TestServer() string {
	if s := os.Getenv("REPLAY_TEST_MYSQL_DSN"); s != "" {
		return s
	}
	return "root@tcp(127.0.0.1:3306)/"
}

// CreateDatabase creates an empty database named prefix_<random> on the server of serverDSN
// (its database part is ignored) and returns a DSN naming it and a function that drops it. An
// unreachable server is an error that names its address.
func CreateDatabase(ctx context.Context, serverDSN, prefix string) (dsn string, drop func() error, err error) {
	cfg, err := mysql.ParseDSN(serverDSN)
	if err != nil {
		return "", nil, fmt.Errorf("MySQL DSN %q: %w", serverDSN, err)
	}
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		return "", nil, fmt.Errorf("MariaDB/MySQL is not reachable at %s (set REPLAY_TEST_MYSQL_DSN, or start it as .ci/run does): %w", cfg.Addr, err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := prefix + "_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		return "", nil, fmt.Errorf("creating database %s at %s: %w", name, cfg.Addr, err)
	}
	drop = func() error {
		defer admin.Close()
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name); err != nil {
			return fmt.Errorf("dropping database %s: %w", name, err)
		}
		return nil
	}
	cfg.DBName = name
	return cfg.FormatDSN(), drop, nil
}
