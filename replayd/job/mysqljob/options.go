package mysqljob

import (
	"fmt"
	"time"

	"github.com/replay/replay/replayd/mysqldb"
)

// Options configure a MySQL job store. The zero value is not usable (DSN is required); every other
// field has the default stated beside it, applied by EnsureDefaults.
type Options struct {
	// DSN is a go-sql-driver/mysql data source name naming the database, e.g.
	// "replay:secret@tcp(db:3306)/replay". Required. The driver forces parseTime=true, loc=UTC,
	// time_zone='+00:00' and clientFoundRows=true on it: the store's times are UTC DATETIME(6)
	// from the server's NOW(6), and a conditional UPDATE counts the rows it matched.
	DSN string
	// LeaseTimeout is the lease duration used when LeaseParams.Timeout is zero. Default 30s.
	LeaseTimeout time.Duration
	// MaxOpenConns bounds the connection pool. Default 16.
	MaxOpenConns int
	// MaxIdleConns is the number of idle connections kept. Default MaxOpenConns.
	MaxIdleConns int
	// ConnMaxLifetime recycles connections. Default 5m.
	ConnMaxLifetime time.Duration
	// Retry bounds the retries of deadlocks (1213) and lock wait timeouts (1205), see
	// mysqldb.IsRetryable. Default: mysqldb.RetryPolicy's zero value (8 attempts, 5ms..500ms backoff).
	Retry mysqldb.RetryPolicy
	// SkipMigrations leaves the schema alone on Open (for deployments that run
	// `replayd migrate` separately). Default false: Open applies pending migrations.
	SkipMigrations bool
	// MigrationLockTimeout is how long Open (or Migrate) waits for another instance's migration
	// to finish (GET_LOCK). Default 60s.
	MigrationLockTimeout time.Duration
}

// EnsureDefaults fills in the zero fields with their defaults and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.LeaseTimeout == 0 {
		o.LeaseTimeout = 30 * time.Second
	}
	if o.MaxOpenConns == 0 {
		o.MaxOpenConns = 16
	}
	if o.MaxIdleConns == 0 {
		o.MaxIdleConns = o.MaxOpenConns
	}
	if o.ConnMaxLifetime == 0 {
		o.ConnMaxLifetime = mysqldb.DefaultConnMaxLifetime
	}
	if o.MigrationLockTimeout == 0 {
		o.MigrationLockTimeout = mysqldb.DefaultMigrationLockTimeout
	}
	return o
}

// Validate reports every problem with o at once (call EnsureDefaults first).
func (o *Options) Validate() error {
	errs := o.conn().Problems()
	if o.LeaseTimeout <= 0 {
		errs = append(errs, fmt.Errorf("LeaseTimeout must be positive, got %v", o.LeaseTimeout))
	}
	errs = append(errs, o.Retry.Problems()...)
	return mysqldb.InvalidOptions("mysqljob", errs)
}

// conn is how Open reaches the database.
func (o *Options) conn() mysqldb.Conn {
	return mysqldb.Conn{
		DSN: o.DSN, MaxOpenConns: o.MaxOpenConns, MaxIdleConns: o.MaxIdleConns,
		ConnMaxLifetime: o.ConnMaxLifetime, ClientFoundRows: true,
		SkipMigrations: o.SkipMigrations, LockTimeout: o.MigrationLockTimeout,
	}
}
