package embeddedjob

import (
	"github.com/cockroachdb/pebble/v2/vfs"

	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Options configure an embedded job store. Dir is required; every other field has the default
// stated beside it, applied by EnsureDefaults.
type Options struct {
	// Dir is the directory holding the store's Pebble database; created if missing. Required.
	Dir string
	// LeaseTimeout is the lease duration used when LeaseParams.Timeout is zero. Default 30s.
	LeaseTimeout time.Duration
	// Now is the store's clock: every time the store records comes from it. Default time.Now
	// (the process clock is the database clock of a single-process store). Tests inject their own.
	Now func() time.Time
	// NoSync, if true, commits writes without fsync: a crash may lose the latest changes. Default
	// false (every write is durable when the call returns). Only for benchmarks and tests.
	NoSync bool
	// FS is where the database's files live, DiskReserve the free space writes leave on it
	// (localdb.Options). Defaults vfs.Default and diskreserve.DefaultReserve.
	FS          vfs.FS
	DiskReserve int64
	// Logger receives Pebble's messages (pebblelog). Default slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills in the zero fields with their defaults and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.LeaseTimeout == 0 {
		o.LeaseTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Validate reports every problem with o at once (call EnsureDefaults first).
func (o *Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("Dir is required"))
	}
	if o.LeaseTimeout <= 0 {
		errs = append(errs, fmt.Errorf("LeaseTimeout must be positive, got %v", o.LeaseTimeout))
	}
	if o.Now == nil {
		errs = append(errs, errors.New("Now must be set"))
	}
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("embeddedjob: invalid options: %s", strings.Join(msgs, "; "))
}
