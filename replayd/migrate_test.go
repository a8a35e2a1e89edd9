package main

import (
	"strings"
	"testing"

	"github.com/replay/replay/replayd/mysqldb/mysqldbtest"
)

func TestMigrate(t *testing.T) {
	dsn := mysqldbtest.Database(t)
	out, errOut, code := run(t, "migrate", "--mysql-dsn", dsn)
	if code != 0 || !strings.Contains(out, "job store: applied migration 0001") || !strings.Contains(out, "app store: applied migration 0001") {
		t.Fatalf("first migrate: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = run(t, "migrate", "--mysql-dsn", dsn)
	if code != 0 || strings.Count(out, "schema is up to date") != 2 {
		t.Fatalf("second migrate: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := run(t, "migrate"); code == 0 || !strings.Contains(errOut, "--mysql-dsn is required") {
		t.Fatalf("migrate without a DSN: exit %d, %s", code, errOut)
	}
}
