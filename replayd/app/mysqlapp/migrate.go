package mysqlapp

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migration is one versioned schema change, embedded in the binary from migrations/NNNN_name.sql.
type Migration struct {
	Version int64
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	seen := map[int64]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".sql" {
			continue
		}
		num, rest, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("mysqlapp: migration %s: name must be NNNN_name.sql", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("mysqlapp: migrations %s and %s share version %d", prev, name, v)
		}
		seen[v] = name
		b, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: rest, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// splitStatements splits a migration into statements: a statement ends with a line whose last
// non-blank character is ';'. Lines starting with "--" are comments.
func splitStatements(src string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(src, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

const migrationLockName = "replay_app_store_schema_migrations"

// Migrate applies the embedded migrations that the database's app_schema_migrations table does not
// list yet, in version order, each recorded in app_schema_migrations once applied. It holds a
// server-wide GET_LOCK while it runs, so instances starting together apply each migration once.
// It returns the versions it applied (none when the schema is current). MySQL DDL is not
// transactional: a migration that fails half-way must be repaired by hand.
func Migrate(ctx context.Context, dsn string) ([]int64, error) {
	cfg, err := connectorConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysqlapp: DSN: %w", err)
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysqlapp: %w", err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	return migrate(ctx, db, (&Options{}).EnsureDefaults().MigrationLockTimeout.Seconds())
}

func migrate(ctx context.Context, db *sql.DB, lockTimeoutSeconds float64) ([]int64, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("mysqlapp: migrate: %w", err)
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", migrationLockName, lockTimeoutSeconds).Scan(&got); err != nil {
		return nil, fmt.Errorf("mysqlapp: migrate: taking the migration lock: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return nil, fmt.Errorf("mysqlapp: migrate: another instance holds the migration lock %q (waited %gs)", migrationLockName, lockTimeoutSeconds)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK(?)", migrationLockName) //nolint:errcheck

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS app_schema_migrations (
  version    BIGINT       NOT NULL PRIMARY KEY,
  name       VARCHAR(255) NOT NULL,
  applied_at DATETIME(6)  NOT NULL
) ENGINE = InnoDB`); err != nil {
		return nil, fmt.Errorf("mysqlapp: migrate: creating app_schema_migrations: %w", err)
	}
	applied := map[int64]bool{}
	rows, err := conn.QueryContext(ctx, "SELECT version FROM app_schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("mysqlapp: migrate: reading app_schema_migrations: %w", err)
	}
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return nil, err
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var done []int64
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		for _, stmt := range splitStatements(m.SQL) {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return done, fmt.Errorf("mysqlapp: migration %04d_%s: %w", m.Version, m.Name, err)
			}
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO app_schema_migrations (version, name, applied_at) VALUES (?, ?, NOW(6))", m.Version, m.Name); err != nil {
			return done, fmt.Errorf("mysqlapp: recording migration %04d_%s: %w", m.Version, m.Name, err)
		}
		done = append(done, m.Version)
	}
	return done, nil
}
