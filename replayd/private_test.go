//go:build unix

package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/replay/replay/replayd/app"
	"github.com/replay/replay/replayd/app/apptest"
)

// Whatever the umask replayd starts with, what it creates under its data directory is its
// user's alone: directories 0700, files 0600 (the app store holds secrets). Run in a child
// process, started with umask 022.
func TestDataDirectoryIsPrivate(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	old := syscall.Umask(0o022)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join([]string{"apps", "create", "private-test", "--data", data}, "\x1f"))
	out, err := cmd.CombinedOutput()
	syscall.Umask(old)
	if err != nil {
		t.Fatalf("apps create: %v\n%s", err, out)
	}
	n := 0
	err = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s is %v: readable by others", path, perm)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Fatalf("only %d entries under %s: the app store was not created", n, data)
	}
}

// With REPLAYD_SECRET_KEY set, `apps create` stores the secret sealed: no file of the app store
// holds it; without the key the store refuses to read it, saying what is missing.
func TestAppSecretsSealedAtRest(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32))
	run := func(env []string, args ...string) ([]byte, error) {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(append(os.Environ(), env...), childArgsEnv+"="+strings.Join(args, "\x1f"))
		return cmd.CombinedOutput()
	}
	out, err := run([]string{app.SecretKeyEnv + "=" + key}, "apps", "create", "sealed", "--data", data)
	if err != nil {
		t.Fatalf("apps create: %v\n%s", err, out)
	}
	var created struct{ Secret string }
	if err := json.Unmarshal(out, &created); err != nil || created.Secret == "" {
		t.Fatalf("apps create printed %s: %v", out, err)
	}
	apptest.NoPlaintext(t, filepath.Join(data, "apps"), []byte(created.Secret))
	out, err = run([]string{app.SecretKeyEnv + "="}, "apps", "list", "--data", data)
	if err == nil || !strings.Contains(string(out), app.SecretKeyEnv) {
		t.Fatalf("apps list without the key: %v\n%s; want a failure naming %s", err, out, app.SecretKeyEnv)
	}
}
