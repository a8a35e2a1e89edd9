package mysqljob

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/replay/replay/replayd/job"
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
	// job.IsRetryable. Default: job.RetryPolicy's zero value (8 attempts, 5ms..500ms backoff).
	Retry job.RetryPolicy
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
	if o.LeaseTimeout <= 0 {
		errs = append(errs, fmt.Errorf("LeaseTimeout must be positive, got %v", o.LeaseTimeout))
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
	return fmt.Errorf("mysqljob: invalid options: %s", strings.Join(msgs, "; "))
}
