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
	ID               string `json:"id"`
	Name             string `json:"name"`
	Token            string `json:"token"`
	Secret           string `json:"secret"`
	SigningSecret    string `json:"signing_secret"`
	StandardWebhooks bool   `json:"standard_webhooks"`
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
	if key, err := app.ParseSigningSecret(c.SigningSecret); err != nil || string(key) != c.Secret {
		t.Fatalf("signing_secret %q is not whsec_ + base64 of the secret's bytes (%v)", c.SigningSecret, err)
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

// `apps create --standard-webhooks`, `apps set`, `apps rotate-secret --overlap`: the store
// holds what was printed; bad arguments are errors naming them.
func TestAppsSigningOptions(t *testing.T) {
	data := t.TempDir()
	stdout, stderr, code := run(t, "apps", "create", "--data", data, "--standard-webhooks", "sw")
	if code != 0 {
		t.Fatalf("create: exit %d, stderr %q", code, stderr)
	}
	c := parseCreated(t, stdout)
	if !c.StandardWebhooks {
		t.Fatalf("created %+v without standard webhooks", c)
	}
	stdout, stderr, code = run(t, "apps", "rotate-secret", "--data", data, "--overlap", "2h", c.ID)
	if code != 0 {
		t.Fatalf("rotate-secret: exit %d, stderr %q", code, stderr)
	}
	var rot struct {
		ID                  string `json:"id"`
		Secret              string `json:"secret"`
		SigningSecret       string `json:"signing_secret"`
		PreviousSecretUntil string `json:"previous_secret_until"`
	}
	if err := json.Unmarshal([]byte(stdout), &rot); err != nil || rot.ID != c.ID || rot.Secret == c.Secret || rot.Secret == "" {
		t.Fatalf("rotate-secret printed %q (%v)", stdout, err)
	}
	until, err := time.Parse(time.RFC3339, rot.PreviousSecretUntil)
	if err != nil || time.Until(until) < 119*time.Minute || time.Until(until) > 121*time.Minute {
		t.Fatalf("previous_secret_until %q, want two hours from now", rot.PreviousSecretUntil)
	}
	if _, stderr, code = run(t, "apps", "set", "--data", data, "--standard-webhooks=false", c.ID); code != 0 {
		t.Fatalf("set: exit %d, stderr %q", code, stderr)
	}
	d, err := embeddedapp.Open(embeddedapp.Options{Dir: filepath.Join(data, "apps")})
	if err != nil {
		t.Fatal(err)
	}
	a, err := d.AppByToken(t.Context(), app.AppByTokenParams{Token: c.Token})
	d.Close()
	if err != nil || string(a.Secret) != rot.Secret || string(a.PreviousSecret) != c.Secret || a.StandardWebhooks {
		t.Fatalf("stored app %+v, %v", a, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"apps", "rotate-secret", "--data", data, "abc"}, `app id "abc"`},
		{[]string{"apps", "rotate-secret", "--data", data, "12345"}, "no app 12345"},
		{[]string{"apps", "rotate-secret", "--data", data, "--overlap", "-1h", c.ID}, "Overlap is -1h0m0s"},
		{[]string{"apps", "set", "--data", data, c.ID}, "nothing to change"},
	} {
		if _, stderr, code := run(t, tc.args...); code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want it to say %q", tc.args, code, stderr, tc.want)
		}
	}
}
