package migration

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Conn says how a store reaches its MySQL database.
type Conn struct {
	DSN             string
	MaxOpenConns    int
	MaxIdleConns    int
	ConnMaxLifetime time.Duration
	// ClientFoundRows makes an UPDATE report the rows it matched, not the rows it changed.
	ClientFoundRows bool
	// SkipMigrations leaves the schema alone.
	SkipMigrations bool
	// LockTimeout bounds the wait for another instance's migration (GET_LOCK).
	LockTimeout time.Duration
}

// config parses the DSN and forces what every store relies on: times parsed as UTC DATETIMEs
// of a server session in UTC.
func config(dsn string, clientFoundRows bool) (*mysql.Config, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.ClientFoundRows = clientFoundRows
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["time_zone"] = "'+00:00'"
	return cfg, nil
}

func (s Set) connect(dsn string, clientFoundRows bool) (*sql.DB, string, error) {
	cfg, err := config(dsn, clientFoundRows)
	if err != nil {
		return nil, "", fmt.Errorf("%s: DSN: %w", s.Store, err)
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", s.Store, err)
	}
	return sql.OpenDB(connector), cfg.Addr, nil
}

// Open connects to the store's database, checks that it answers and, unless c.SkipMigrations,
// applies the set's pending migrations.
func (s Set) Open(ctx context.Context, c Conn) (*sql.DB, error) {
	db, addr, err := s.connect(c.DSN, c.ClientFoundRows)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(c.MaxOpenConns)
	db.SetMaxIdleConns(c.MaxIdleConns)
	db.SetConnMaxLifetime(c.ConnMaxLifetime)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: connecting to %s: %w", s.Store, addr, err)
	}
	if !c.SkipMigrations {
		if _, err := s.Apply(ctx, db, c.LockTimeout.Seconds()); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// Migrate connects to dsn and applies the set's pending migrations, as Apply.
func (s Set) Migrate(ctx context.Context, dsn string, lockTimeout time.Duration) ([]int64, error) {
	db, _, err := s.connect(dsn, false)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return s.Apply(ctx, db, lockTimeout.Seconds())
}
