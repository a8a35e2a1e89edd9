package embeddedapp

import (
	"github.com/replay/replay/replayd/app"

	"github.com/cockroachdb/pebble/v2/vfs"

	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Options configure an embedded app store. Dir is required; every other field has the default
// stated beside it, applied by EnsureDefaults.
type Options struct {
	// Dir is the directory holding the store's Pebble database; created if missing. Required.
	Dir string
	// Now is the store's clock (creation times, and the time part of new ids). Default time.Now.
	Now func() time.Time
	// NoSync, if true, commits writes without fsync. Default false (every write is durable when
	// the call returns). Only for tests and benchmarks.
	NoSync bool
	// FS is where the database's files live, DiskReserve the free space writes leave on it
	// (localdb.Options). Defaults vfs.Default and diskreserve.DefaultReserve.
	FS          vfs.FS
	DiskReserve int64
	// Secrets seals app secrets at rest (app.LoadSecretKey); nil stores them as they are.
	Secrets *app.Sealer
	// Logger receives Pebble's messages (pebblelog). Default slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills in the zero fields with their defaults and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Validate reports every problem with o at once (call EnsureDefaults first).
func (o *Options) Validate() error {
	var errs []string
	if o.Dir == "" {
		errs = append(errs, "Dir is required")
	}
	if o.Now == nil {
		errs = append(errs, "Now must be set")
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("embeddedapp: invalid options: %w", errors.New(strings.Join(errs, "; ")))
}
