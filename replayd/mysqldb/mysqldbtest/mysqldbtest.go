// Package mysqldbtest gives a test its own MySQL/MariaDB database.
package mysqldbtest

import (
	"context"
	"testing"

	"github.com/replay/replay/replayd/mysqldb"
)

// Database creates an empty database with a random name on mysqldb.TestServer, dropped when
// the test ends, and returns a DSN naming it. Tests get a database each, so they can run in
// parallel. An unreachable server fails the test: CI has one.
func Database(t testing.TB) string {
	t.Helper()
	dsn, drop, err := mysqldb.CreateDatabase(context.Background(), mysqldb.TestServer(), "replay_test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	return dsn
}
