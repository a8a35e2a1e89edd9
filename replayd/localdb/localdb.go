// Package localdb is the Pebble database under the embedded job and app stores: one process
// opens it, its operations run one at a time, and waiting for a turn honours the context.
package localdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/replay/replay/index/pebblelog"
)

// Options configure a DB.
type Options struct {
	// Dir is the Pebble directory; created if missing. Required.
	Dir string
	// Store names the store in errors ("embeddedjob: lease: …"). Required.
	Store string
	// ErrClosed is returned by Run after Close: the store's own sentinel. Required.
	ErrClosed error
	// ErrUnavailable wraps a Pebble fatal error (the database cannot go on until reopened): the
	// store's own sentinel, so that the API answers 503. Optional.
	ErrUnavailable error
	// Bare lists errors Run returns as they are, without the store's prefix: expected outcomes
	// such as "no job to lease" rather than failures.
	Bare []error
	// NoSync commits writes without fsync (WriteOptions is pebble.NoSync): a crash may lose the
	// latest changes. Default false. Only for benchmarks and tests.
	NoSync bool
	// Logger receives Pebble's messages (pebblelog). Default slog.Default().
	Logger *slog.Logger
}

// DB is an open database. Its Pebble handle is used inside Run.
type DB struct {
	Pebble *pebble.DB
	// WriteOptions commit with fsync unless Options.NoSync.
	WriteOptions *pebble.WriteOptions

	opts      Options
	plog      *pebblelog.Logger
	sem       chan struct{} // one operation at a time; a channel so that waiting honours ctx
	closed    bool          // guarded by sem
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the database in o.Dir.
func Open(o Options) (*DB, error) {
	if o.Dir == "" || o.Store == "" || o.ErrClosed == nil {
		return nil, errors.New("localdb: Dir, Store and ErrClosed are required")
	}
	plog := pebblelog.New(o.Logger, o.Store)
	db, err := pebble.Open(o.Dir, &pebble.Options{Logger: plog})
	if err != nil {
		return nil, fmt.Errorf("%s: opening %s: %w", o.Store, o.Dir, err)
	}
	d := &DB{Pebble: db, WriteOptions: pebble.Sync, opts: o, plog: plog, sem: make(chan struct{}, 1)}
	if o.NoSync {
		d.WriteOptions = pebble.NoSync
	}
	return d, nil
}

// Run runs fn as the only operation in progress. Errors come back prefixed with the store and op.
// A Pebble fatal error during fn is Run's error (a *pebblelog.FatalError), and every later Run's:
// the database must be reopened.
func (d *DB) Run(ctx context.Context, op string, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %s: %w", d.opts.Store, op, err)
	}
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%s: %s: %w", d.opts.Store, op, ctx.Err())
	}
	defer func() { <-d.sem }()
	if d.closed {
		return fmt.Errorf("%s: %s: %w", d.opts.Store, op, d.opts.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %s: %w", d.opts.Store, op, err)
	}
	if err := d.plog.Err(); err != nil {
		return d.unavailable(op, err)
	}
	err := d.run(fn)
	if err == nil {
		return nil
	}
	var fe *pebblelog.FatalError
	if errors.As(err, &fe) {
		return d.unavailable(op, err)
	}
	for _, bare := range d.opts.Bare {
		if errors.Is(err, bare) {
			return err
		}
	}
	return fmt.Errorf("%s: %s: %w", d.opts.Store, op, err)
}

func (d *DB) unavailable(op string, err error) error {
	if d.opts.ErrUnavailable == nil {
		return fmt.Errorf("%s: %s: %w", d.opts.Store, op, err)
	}
	return fmt.Errorf("%s: %s: %w: %w", d.opts.Store, op, d.opts.ErrUnavailable, err)
}

// run calls fn, turning a Pebble fatal error into its error.
func (d *DB) run(fn func() error) (err error) {
	defer pebblelog.Recover(&err)
	return fn()
}

// Close closes the database once the operation in progress ends. It is idempotent.
func (d *DB) Close() error {
	d.closeOnce.Do(func() {
		d.sem <- struct{}{}
		d.closed = true
		d.closeErr = d.run(d.Pebble.Close)
		<-d.sem
	})
	return d.closeErr
}
