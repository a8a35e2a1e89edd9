package mysqlapp

import (
	"time"

	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/mysqldb"
)

// Options configure a MySQL app store. The zero value is not usable (DSN is required); every other
// field has the default stated beside it, applied by EnsureDefaults.
type Options struct {
	// DSN is a go-sql-driver/mysql data source name naming the database, e.g.
	// "replay:secret@tcp(db:3306)/replay" (the job store's database may be shared: the tables
	// and the migrations table, app_schema_migrations, do not clash). Required. The driver forces
	// parseTime=true, loc=UTC and time_zone='+00:00'.
	DSN string
	// MaxOpenConns bounds the connection pool. Default 8.
	MaxOpenConns int
	// MaxIdleConns is the number of idle connections kept. Default MaxOpenConns.
	MaxIdleConns int
	// ConnMaxLifetime recycles connections. Default 5m.
	ConnMaxLifetime time.Duration
	// Retry bounds the retries of deadlocks and lock wait timeouts (mysqldb.IsRetryable is the
	// classifier). Default: mysqldb.RetryPolicy's zero value.
	Retry mysqldb.RetryPolicy
	// SkipMigrations leaves the schema alone on Open. Default false: Open applies pending
	// migrations.
	SkipMigrations bool
	// MigrationLockTimeout is how long Open (or Migrate) waits for another instance's migration
	// to finish (GET_LOCK). Default 60s.
	MigrationLockTimeout time.Duration
	// Secrets seals app secrets at rest (app.LoadSecretKey); nil stores them as they are.
	Secrets *app.Sealer
}

// EnsureDefaults fills in the zero fields with their defaults and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.MaxOpenConns == 0 {
		o.MaxOpenConns = 8
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
	errs = append(errs, o.Retry.Problems()...)
	return mysqldb.InvalidOptions("mysqlapp", errs)
}

// conn is how Open reaches the database.
func (o *Options) conn() mysqldb.Conn {
	return mysqldb.Conn{
		DSN: o.DSN, MaxOpenConns: o.MaxOpenConns, MaxIdleConns: o.MaxIdleConns,
		ConnMaxLifetime: o.ConnMaxLifetime, ClientFoundRows: false,
		SkipMigrations: o.SkipMigrations, LockTimeout: o.MigrationLockTimeout,
	}
}
