// Package mysqldb is the one place the stores meet MySQL or MariaDB (go-sql-driver/mysql):
// connection options, opening and pinging a store's database, its schema migrations (versioned
// NNNN_name.sql files embedded in the binary, each applied once and recorded), which server
// errors are worth a retry (IsRetryable, Retry) and which mean the database is unavailable
// (IsUnavailable), and throwaway databases for tests and benchmarks (CreateDatabase).
// mysqljob and mysqlapp build on it; job, app and api import no SQL driver.
package mysqldb

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Set is one store's migrations: the files, the table that records which were applied, and the
// name of the server-wide lock that keeps instances from applying them twice.
type Set struct {
	Store string // names the store in errors, e.g. "mysqljob"
	FS    fs.FS  // holds migrations/NNNN_name.sql
	Table string // e.g. "schema_migrations"
	Lock  string // a GET_LOCK name
}

// Migration is one versioned schema change, embedded in the binary from migrations/NNNN_name.sql.
type Migration struct {
	Version int64
	Name    string
	SQL     string
}

// Migrations returns the set's migrations in version order.
func (s Set) Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(s.FS, "migrations")
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
			return nil, fmt.Errorf("%s: migration %s: name must be NNNN_name.sql", s.Store, name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("%s: migrations %s and %s share version %d", s.Store, prev, name, v)
		}
		seen[v] = name
		b, err := fs.ReadFile(s.FS, "migrations/"+name)
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

// Apply applies the migrations the set's table does not list yet, in version order, each recorded
// there once applied. It holds the set's GET_LOCK while it runs (waiting at most
// lockTimeoutSeconds), so instances starting together apply each migration once. It returns the
// versions it applied (none when the schema is current). MySQL DDL is not transactional: a
// migration that fails half-way must be repaired by hand.
func (s Set) Apply(ctx context.Context, db *sql.DB, lockTimeoutSeconds float64) ([]int64, error) {
	ms, err := s.Migrations()
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: migrate: %w", s.Store, err)
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", s.Lock, lockTimeoutSeconds).Scan(&got); err != nil {
		return nil, fmt.Errorf("%s: migrate: taking the migration lock: %w", s.Store, err)
	}
	if !got.Valid || got.Int64 != 1 {
		return nil, fmt.Errorf("%s: migrate: another instance holds the migration lock %q (waited %gs)", s.Store, s.Lock, lockTimeoutSeconds)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK(?)", s.Lock) //nolint:errcheck

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+s.Table+` (
  version    BIGINT       NOT NULL PRIMARY KEY,
  name       VARCHAR(255) NOT NULL,
  applied_at DATETIME(6)  NOT NULL
) ENGINE = InnoDB`); err != nil {
		return nil, fmt.Errorf("%s: migrate: creating %s: %w", s.Store, s.Table, err)
	}
	applied := map[int64]bool{}
	rows, err := conn.QueryContext(ctx, "SELECT version FROM "+s.Table)
	if err != nil {
		return nil, fmt.Errorf("%s: migrate: reading %s: %w", s.Store, s.Table, err)
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
				return done, fmt.Errorf("%s: migration %04d_%s: %w", s.Store, m.Version, m.Name, err)
			}
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO "+s.Table+" (version, name, applied_at) VALUES (?, ?, NOW(6))", m.Version, m.Name); err != nil {
			return done, fmt.Errorf("%s: recording migration %04d_%s: %w", s.Store, m.Version, m.Name, err)
		}
		done = append(done, m.Version)
	}
	return done, nil
}
