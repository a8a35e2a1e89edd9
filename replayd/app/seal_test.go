package app_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/replay/replay/replayd/app"
)

func testSealer(t *testing.T) *app.Sealer {
	t.Helper()
	s, err := app.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealer(t *testing.T) {
	s := testSealer(t)
	secret := app.NewSecret()
	sealed := s.Seal(42, secret)
	if !bytes.HasPrefix(sealed, []byte("enc1:")) || bytes.Contains(sealed, secret) {
		t.Fatalf("sealed form %q", sealed)
	}
	if again := s.Seal(42, secret); bytes.Equal(again, sealed) {
		t.Fatal("two seals of one secret are equal: the nonce is not fresh")
	}
	if got, err := s.Open(42, sealed); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open: %q, %v", got, err)
	}
	if _, err := s.Open(43, sealed); !errors.Is(err, app.ErrSealed) || !strings.Contains(err.Error(), "app 43") {
		t.Fatalf("another app's sealed secret opened: %v", err)
	}
	other, _ := app.NewSealer(bytes.Repeat([]byte{8}, 32))
	if _, err := other.Open(42, sealed); !errors.Is(err, app.ErrSealed) || !strings.Contains(err.Error(), "wrong key") {
		t.Fatalf("another key: %v", err)
	}
	var none *app.Sealer
	if _, err := none.Open(42, sealed); !errors.Is(err, app.ErrSealed) || !strings.Contains(err.Error(), app.SecretKeyEnv) {
		t.Fatalf("no key: %v; want ErrSealed naming how to configure the key", err)
	}
	// Plaintext (stored before a key was configured) is read as it is, with or without a key.
	for _, sl := range []*app.Sealer{s, nil} {
		if got, err := sl.Open(42, secret); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("plaintext: %q, %v", got, err)
		}
	}
	if got := none.Seal(42, secret); !bytes.Equal(got, secret) {
		t.Fatalf("no key seals to %q", got)
	}
	if _, err := s.Open(42, []byte("enc1:%%%")); !errors.Is(err, app.ErrSealed) {
		t.Fatalf("malformed: %v", err)
	}
	if _, err := app.NewSealer(make([]byte, 16)); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("16-byte key: %v", err)
	}
}

func TestLoadSecretKey(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))
	file := filepath.Join(t.TempDir(), "key")
	os.WriteFile(file, []byte(key+"\n"), 0o600)
	s, err := app.LoadSecretKey(file)
	if err != nil || s == nil {
		t.Fatalf("from a file: %v", err)
	}
	t.Setenv(app.SecretKeyEnv, "")
	if s, err := app.LoadSecretKey(""); s != nil || err != nil {
		t.Fatalf("neither file nor variable: %v, %v; want no key", s, err)
	}
	t.Setenv(app.SecretKeyEnv, key)
	env, err := app.LoadSecretKey("")
	if err != nil || env == nil {
		t.Fatalf("from the environment: %v", err)
	}
	if got, err := env.Open(1, s.Seal(1, []byte("x"))); err != nil || string(got) != "x" {
		t.Fatalf("the file's key and the variable's differ: %q %v", got, err)
	}
	for name, text := range map[string]string{"short": base64.StdEncoding.EncodeToString([]byte("short")), "not base64": "!!!"} {
		os.WriteFile(file, []byte(text), 0o600)
		if _, err := app.LoadSecretKey(file); err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("%s key: %v; want an error naming the file", name, err)
		}
	}
	if _, err := app.LoadSecretKey(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing key file: no error")
	}
}
