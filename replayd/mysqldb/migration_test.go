package mysqldb

import (
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

func TestSplitStatements(t *testing.T) {
	got := splitStatements("-- a comment\nCREATE TABLE t (\n  a INT\n);\n\nINSERT INTO t VALUES (1);\nSELECT 1")
	want := []string{"CREATE TABLE t (\n  a INT\n)", "INSERT INTO t VALUES (1)", "SELECT 1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("splitStatements = %q, want %q", got, want)
	}
}

func TestMigrationsOrderAndNames(t *testing.T) {
	s := Set{Store: "test", FS: fstest.MapFS{
		"migrations/0002_second.sql": {Data: []byte("B;")},
		"migrations/0001_first.sql":  {Data: []byte("A;")},
		"migrations/README":          {Data: []byte("not a migration")},
	}}
	ms, err := s.Migrations()
	if err != nil || len(ms) != 2 || ms[0].Version != 1 || ms[0].Name != "first" || ms[1].SQL != "B;" {
		t.Fatalf("Migrations = %+v, %v", ms, err)
	}
	for name, want := range map[string]string{"migrations/first.sql": "NNNN_name.sql", "migrations/0001_again.sql": "share version 1"} {
		bad := Set{Store: "test", FS: fstest.MapFS{"migrations/0001_first.sql": {Data: []byte("A;")}, name: {Data: []byte("X;")}}}
		if _, err := bad.Migrations(); err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "test: ") {
			t.Errorf("with %s: %v, want an error saying %q", name, err, want)
		}
	}
}
