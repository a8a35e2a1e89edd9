package mysqlapp

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/replay/replay/replayd/job"
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
	// Retry bounds the retries of deadlocks and lock wait timeouts (job.IsRetryable is the
	// classifier). Default: job.RetryPolicy's zero value.
	Retry job.RetryPolicy
	// SkipMigrations leaves the schema alone on Open. Default false: Open applies pending
	// migrations.
	SkipMigrations bool
	// MigrationLockTimeout is how long Open (or Migrate) waits for another instance's migration
	// to finish (GET_LOCK). Default 60s.
	MigrationLockTimeout time.Duration
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
		o.ConnMaxLifetime = 5 * time.Minute
	}
	if o.MigrationLockTimeout == 0 {
		o.MigrationLockTimeout = 60 * time.Second
	}
	return o
}

// Validate reports every problem with o at once (call EnsureDefaults first).
func (o *Options) Validate() error {
	var errs []error
	if o.DSN == "" {
		errs = append(errs, errors.New("DSN is required"))
	} else if cfg, err := mysql.ParseDSN(o.DSN); err != nil {
		errs = append(errs, fmt.Errorf("DSN: %w", err))
	} else if cfg.DBName == "" {
		errs = append(errs, errors.New("DSN must name a database"))
	}
	if o.MaxOpenConns <= 0 {
		errs = append(errs, fmt.Errorf("MaxOpenConns must be positive, got %d", o.MaxOpenConns))
	}
	if o.MaxIdleConns < 0 || o.MaxIdleConns > o.MaxOpenConns {
		errs = append(errs, fmt.Errorf("MaxIdleConns must be within 0..MaxOpenConns (%d), got %d", o.MaxOpenConns, o.MaxIdleConns))
	}
	if o.ConnMaxLifetime < 0 {
		errs = append(errs, fmt.Errorf("ConnMaxLifetime must not be negative, got %v", o.ConnMaxLifetime))
	}
	if o.Retry.MaxAttempts < 0 || o.Retry.InitialBackoff < 0 || o.Retry.MaxBackoff < 0 {
		errs = append(errs, errors.New("Retry fields must not be negative"))
	}
	if o.MigrationLockTimeout < 0 {
		errs = append(errs, fmt.Errorf("MigrationLockTimeout must not be negative, got %v", o.MigrationLockTimeout))
	}
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("mysqlapp: invalid options: %s", strings.Join(msgs, "; "))
}
