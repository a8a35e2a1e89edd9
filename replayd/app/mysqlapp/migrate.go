package mysqlapp

import (
	"context"
	"embed"

	"github.com/replay/replay/replayd/mysqldb"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

var migrations = mysqldb.Set{Store: "mysqlapp", FS: migrationFS, Table: "app_schema_migrations", Lock: "replay_app_store_schema_migrations"}

// Migration is one versioned schema change, embedded in the binary from migrations/NNNN_name.sql.
type Migration = mysqldb.Migration

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) { return migrations.Migrations() }

// Migrate applies the embedded migrations that the database's app_schema_migrations table does not
// list yet, in version order, each recorded in app_schema_migrations once applied. It holds a
// server-wide GET_LOCK while it runs, so instances starting together apply each migration once.
// It returns the versions it applied (none when the schema is current). MySQL DDL is not
// transactional: a migration that fails half-way must be repaired by hand.
func Migrate(ctx context.Context, dsn string) ([]int64, error) {
	return migrations.Migrate(ctx, dsn, (&Options{}).EnsureDefaults().MigrationLockTimeout)
}
