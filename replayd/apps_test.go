package main

import (
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/embeddedapp"
	"github.com/replay/replay/replayd/app/mysqlapp"
	"github.com/replay/replay/replayd/mysqldb/mysqldbtest"
)

type createdApp struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Token  string `json:"token"`
	Secret string `json:"secret"`
}

func parseCreated(t *testing.T, stdout string) createdApp {
	t.Helper()
	var c createdApp
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("stdout %q is not the created app: %v", stdout, err)
	}
	if b, err := base64.RawURLEncoding.DecodeString(c.Secret); err != nil || len(b) != 32 {
		t.Fatalf("secret %q is not base64url of 32 bytes", c.Secret)
	}
	if len(c.Token) < 43 || c.ID == "" {
		t.Fatalf("created %+v", c)
	}
	return c
}

// checkStored: the store knows the app by its token, with exactly the printed secret's bytes as
// its HMAC key.
func checkStored(t *testing.T, d app.Driver, c createdApp) {
	t.Helper()
	a, err := d.AppByToken(t.Context(), app.AppByTokenParams{Token: c.Token})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.ID; c.ID != strconv.FormatInt(got, 10) || a.Name != c.Name || string(a.Secret) != c.Secret {
		t.Fatalf("stored app %+v, printed %+v", a, c)
	}
}

func TestAppsCreateAndListEmbedded(t *testing.T) {
	data := t.TempDir()
	stdout, stderr, code := run(t, "apps", "create", "--data", data, "my app")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	c := parseCreated(t, stdout)
	if c.Name != "my app" {
		t.Fatalf("name %q", c.Name)
	}
	stdout2, _, code := run(t, "apps", "create", "--data", data, "second")
	c2 := parseCreated(t, stdout2)
	if code != 0 || c2.ID == c.ID || c2.Token == c.Token || c2.Secret == c.Secret {
		t.Fatalf("second app %+v (exit %d)", c2, code)
	}
	stdout, stderr, code = run(t, "apps", "list", "--data", data)
	if code != 0 || stderr != "" {
		t.Fatalf("list: exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 || strings.Contains(stdout, c.Secret) || strings.Contains(stdout, c.Token) {
		t.Fatalf("list printed %q: want two apps, no secrets or tokens", stdout)
	}
	for _, l := range lines {
		var v struct {
			ID        string `json:"id"`
			Name      string `json:"name"`
			CreatedAt string `json:"created_at"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil || (v.ID != c.ID && v.ID != c2.ID) {
			t.Fatalf("list line %q: %v", l, err)
		}
		if _, err := time.Parse(time.RFC3339, v.CreatedAt); err != nil {
			t.Fatalf("list line %q: created_at: %v", l, err)
		}
	}
	d, err := embeddedapp.Open(embeddedapp.Options{Dir: filepath.Join(data, "apps")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	checkStored(t, d, c)
	// While a server holds the store, the command fails with a hint instead of waiting.
	_, stderr, code = run(t, "apps", "create", "--data", data, "x")
	if code == 0 || !strings.Contains(stderr, "replayd server") {
		t.Fatalf("create on a held store: exit %d, stderr %q", code, stderr)
	}
}

func TestAppsCreateRequiresOneName(t *testing.T) {
	data := t.TempDir()
	for _, args := range [][]string{{"apps", "create", "--data", data}, {"apps", "create", "--data", data, "a", "b"}, {"apps", "create", "--data", data, " "}} {
		if _, _, code := run(t, args...); code == 0 {
			t.Fatalf("%v succeeded", args)
		}
	}
}

func TestAppsCreateMySQL(t *testing.T) {
	dsn := mysqldbtest.Database(t)
	stdout, stderr, code := run(t, "apps", "create", "--mysql-dsn", dsn, "mysql app")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	c := parseCreated(t, stdout)
	d, err := mysqlapp.Open(t.Context(), mysqlapp.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	checkStored(t, d, c)
	stdout, _, code = run(t, "apps", "list", "--mysql-dsn", dsn)
	if code != 0 || !strings.Contains(stdout, `"id":"`+c.ID+`"`) {
		t.Fatalf("list: exit %d, %q", code, stdout)
	}
}
