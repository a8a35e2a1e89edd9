package app

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Secrets at rest. With a key configured (a file or the environment, see LoadSecretKey), the
// stores keep every app secret sealed with AES-256-GCM: "enc1:" and the base64url of a random
// 12-byte nonce and the ciphertext, the app's id as additional data (a sealed secret copied to
// another app's row does not open). Without a key secrets are stored as they are (the embedded
// demo's default). Stored plaintext secrets (written before a key was configured) are still
// read, and sealed the next time they are written (a rotation).

// sealedPrefix marks a sealed secret.
const sealedPrefix = "enc1:"

// SecretKeyEnv is the environment variable that may hold the secrets key (base64 of 32 bytes).
const SecretKeyEnv = "REPLAYD_SECRET_KEY"

// ErrSealed: a stored secret is sealed and no key (or another key) is configured.
var ErrSealed = errors.New("app: the stored secret is sealed and cannot be opened with the configured key")

// Sealer seals and opens app secrets. A nil *Sealer stores them as they are.
type Sealer struct{ aead cipher.AEAD }

// NewSealer makes a Sealer from a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("app: a secrets key is 32 bytes, this one is %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal is the form secret is stored in for app id.
func (s *Sealer) Seal(id int64, secret []byte) []byte {
	if s == nil || len(secret) == 0 {
		return secret
	}
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	ct := s.aead.Seal(nonce, nonce, secret, aad(id))
	return append([]byte(sealedPrefix), base64.RawURLEncoding.EncodeToString(ct)...)
}

// Open is the secret stored as stored for app id: opened if sealed (ErrSealed without the right
// key), as it is if not.
func (s *Sealer) Open(id int64, stored []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(stored, []byte(sealedPrefix))
	if !ok {
		return stored, nil
	}
	if s == nil {
		return nil, fmt.Errorf("%w (app %d): configure the key (--secret-key-file or %s)", ErrSealed, id, SecretKeyEnv)
	}
	ct, err := base64.RawURLEncoding.DecodeString(string(rest))
	if err != nil || len(ct) < s.aead.NonceSize() {
		return nil, fmt.Errorf("%w (app %d): malformed", ErrSealed, id)
	}
	plain, err := s.aead.Open(nil, ct[:s.aead.NonceSize()], ct[s.aead.NonceSize():], aad(id))
	if err != nil {
		return nil, fmt.Errorf("%w (app %d): wrong key, or the stored secret was altered", ErrSealed, id)
	}
	return plain, nil
}

func aad(id int64) []byte { return fmt.Appendf(nil, "replay app %d", id) }

// LoadSecretKey reads the secrets key: from file when it is not empty, else from the
// environment variable SecretKeyEnv; both hold the standard or URL base64 of 32 bytes (make one
// with `head -c 32 /dev/urandom | base64`). No file and no variable: nil, no key.
func LoadSecretKey(file string) (*Sealer, error) {
	var text, from string
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("secrets key: %w", err)
		}
		text, from = string(b), file
	case os.Getenv(SecretKeyEnv) != "":
		text, from = os.Getenv(SecretKeyEnv), "$"+SecretKeyEnv
	default:
		return nil, nil
	}
	text = strings.TrimSpace(text)
	var key []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err = enc.DecodeString(text); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("secrets key in %s: not base64 (make one with `head -c 32 /dev/urandom | base64`)", from)
	}
	s, err := NewSealer(key)
	if err != nil {
		return nil, fmt.Errorf("secrets key in %s: %w", from, err)
	}
	return s, nil
}
