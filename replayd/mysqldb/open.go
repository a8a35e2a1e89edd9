package mysqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Defaults of the connection options the stores share.
const (
	DefaultConnMaxLifetime      = 5 * time.Minute
	DefaultMigrationLockTimeout = 60 * time.Second
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

// Problems lists every impossible field of c (defaults applied): a DSN that is missing, does not
// parse or names no database, a pool that cannot hold a connection, negative durations.
func (c Conn) Problems() []error {
	var errs []error
	if c.DSN == "" {
		errs = append(errs, errors.New("DSN is required"))
	} else if cfg, err := mysql.ParseDSN(c.DSN); err != nil {
		errs = append(errs, fmt.Errorf("DSN: %w", err))
	} else if cfg.DBName == "" {
		errs = append(errs, errors.New("DSN must name a database"))
	}
	if c.MaxOpenConns <= 0 {
		errs = append(errs, fmt.Errorf("MaxOpenConns must be positive, got %d", c.MaxOpenConns))
	}
	if c.MaxIdleConns < 0 || c.MaxIdleConns > c.MaxOpenConns {
		errs = append(errs, fmt.Errorf("MaxIdleConns must be within 0..MaxOpenConns (%d), got %d", c.MaxOpenConns, c.MaxIdleConns))
	}
	if c.ConnMaxLifetime < 0 {
		errs = append(errs, fmt.Errorf("ConnMaxLifetime must not be negative, got %v", c.ConnMaxLifetime))
	}
	if c.LockTimeout < 0 {
		errs = append(errs, fmt.Errorf("MigrationLockTimeout must not be negative, got %v", c.LockTimeout))
	}
	return errs
}

// Problems lists the negative fields of p.
func (p RetryPolicy) Problems() []error {
	if p.MaxAttempts < 0 || p.InitialBackoff < 0 || p.MaxBackoff < 0 {
		return []error{errors.New("Retry fields must not be negative")}
	}
	return nil
}

// InvalidOptions is a store's options error: "<store>: invalid options: a; b", or nil when
// there are no problems.
func InvalidOptions(store string, problems []error) error {
	if len(problems) == 0 {
		return nil
	}
	msgs := make([]string, len(problems))
	for i, e := range problems {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%s: invalid options: %s", store, strings.Join(msgs, "; "))
}

// Ping checks that db answers.
func Ping(ctx context.Context, db *sql.DB) error { return db.PingContext(ctx) }

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
	// Arguments are escaped into the statement by the driver instead of a server-side prepare,
	// execute and close per statement: one round trip per statement instead of two (the lease
	// transaction had seven). Safe with the utf8mb4 connection charset the driver uses.
	cfg.InterpolateParams = true
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
	return sql.OpenDB(readCommitted{connector}), cfg.Addr, nil
}

// readCommitted opens every connection of a store at READ COMMITTED, whatever the server's
// default (InnoDB's is REPEATABLE READ). The lease is one UPDATE … ORDER BY … LIMIT 1 over a
// range of the lease index: at REPEATABLE READ it takes next-key locks on every index entry and
// gap it scans, so leasers deadlocked with the heartbeats and transitions that move those entries
// (seen: Error 1213 and a job leased twice in the contention test); at READ COMMITTED it locks
// only the rows it matches and reads a row locked by another leaser semi-consistently. The
// statement is the same on MySQL and MariaDB, which name the session variable differently.
type readCommitted struct{ driver.Connector }

func (c readCommitted) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, errors.New("mysqldb: the driver's connection cannot execute statements")
	}
	if _, err := ex.ExecContext(ctx, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
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
