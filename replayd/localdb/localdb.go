// Package localdb is the Pebble database under the embedded job and app stores: one process
// opens it, its operations run one at a time, and waiting for a turn honours the context. It
// never takes the process down: a write below the disk reserve, or after a Pebble fatal error,
// is the store's ErrUnavailable (the API's 503/67), and the database is opened again by itself
// once the disk has room.
package localdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/replay/replay/index/diskreserve"
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
	// FS is where the database's files live. Default vfs.Default.
	FS vfs.FS
	// DiskReserve is the free space Write leaves on the database's filesystem: while less is
	// free, Write refuses with ErrUnavailable and a *diskreserve.Error, before Pebble could
	// meet a full disk (see package diskreserve). Reads go on. Default
	// diskreserve.DefaultReserve; negative checks nothing.
	DiskReserve int64
	// Logger receives Pebble's messages (pebblelog) and the store's reopening after a fatal
	// error. Default slog.Default().
	Logger *slog.Logger
}

// DB is an open database. Its Pebble handle is used inside Run and Write only: after a Pebble
// fatal error it is replaced by the directory opened again.
type DB struct {
	Pebble *pebble.DB
	// WriteOptions commit with fsync unless Options.NoSync.
	WriteOptions *pebble.WriteOptions

	opts      Options
	plog      *pebblelog.Logger
	sem       chan struct{} // one operation at a time; a channel so that waiting honours ctx
	closed    bool          // guarded by sem
	reopened  time.Time     // the last attempt to reopen after a fatal error; guarded by sem
	closeOnce sync.Once
	closeErr  error
}

// reopenEvery is how often an operation on a database that had a fatal error tries to open it
// again.
const reopenEvery = time.Second

// Open opens (creating if needed) the database in o.Dir.
func Open(o Options) (*DB, error) {
	if o.Dir == "" || o.Store == "" || o.ErrClosed == nil {
		return nil, errors.New("localdb: Dir, Store and ErrClosed are required")
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.DiskReserve == 0 {
		o.DiskReserve = diskreserve.DefaultReserve
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	d := &DB{WriteOptions: pebble.Sync, opts: o, sem: make(chan struct{}, 1)}
	if o.NoSync {
		d.WriteOptions = pebble.NoSync
	}
	if err := d.open(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *DB) open() error {
	plog := pebblelog.New(d.opts.Logger, d.opts.Store)
	db, err := pebble.Open(d.opts.Dir, &pebble.Options{FS: d.opts.FS, Logger: plog})
	if err != nil {
		return fmt.Errorf("%s: opening %s: %w", d.opts.Store, d.opts.Dir, err)
	}
	d.Pebble, d.plog = db, plog
	return nil
}

// reopen replaces a database that had a fatal error by its directory opened again, at most once
// per reopenEvery and only when the disk has room for what opening writes. It reports whether
// the database is usable now. Called holding sem.
func (d *DB) reopen() bool {
	if time.Since(d.reopened) < reopenEvery {
		return false
	}
	d.reopened = time.Now()
	if diskreserve.Check(d.opts.FS, d.opts.Dir, d.opts.DiskReserve) != nil {
		return false
	}
	fatal := d.plog.Err()
	var closeErr error
	_ = d.run(func() error { closeErr = d.Pebble.Close(); return nil })
	if err := d.open(); err != nil {
		d.opts.Logger.Error("reopening a store after a fatal error failed", "store", d.opts.Store, "err", err, "close_err", closeErr)
		return false
	}
	d.opts.Logger.Warn("reopened a store after a fatal error", "store", d.opts.Store, "dir", d.opts.Dir, "err", fatal)
	return true
}

// Run runs fn, which only reads, as the only operation in progress. Errors come back prefixed
// with the store and op. A Pebble fatal error during fn is Run's error (a *pebblelog.FatalError
// wrapped in ErrUnavailable), and every later operation's until the database could be opened
// again (tried at most once a second, when the disk has room).
func (d *DB) Run(ctx context.Context, op string, fn func() error) error {
	return d.do(ctx, op, false, fn)
}

// Write runs fn, which writes, as Run does, after checking the disk reserve: below it, Write
// refuses with ErrUnavailable and a *diskreserve.Error, and fn does not run.
func (d *DB) Write(ctx context.Context, op string, fn func() error) error {
	return d.do(ctx, op, true, fn)
}

// CheckReserve, called inside a Run's fn that turned out to need a write (a lease that found a
// job due), is Write's disk check: an error wrapping ErrUnavailable and a *diskreserve.Error
// below the reserve. An operation that finds nothing to write then answers without the disk.
func (d *DB) CheckReserve() error {
	if err := diskreserve.Check(d.opts.FS, d.opts.Dir, d.opts.DiskReserve); err != nil {
		if d.opts.ErrUnavailable != nil {
			return fmt.Errorf("%w: %w", d.opts.ErrUnavailable, err)
		}
		return err
	}
	return nil
}

func (d *DB) do(ctx context.Context, op string, write bool, fn func() error) error {
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
	if err := d.plog.Err(); err != nil && !d.reopen() {
		return d.unavailable(op, err)
	}
	if write {
		if err := diskreserve.Check(d.opts.FS, d.opts.Dir, d.opts.DiskReserve); err != nil {
			return d.unavailable(op, err)
		}
	}
	err := d.run(fn)
	if err == nil {
		return nil
	}
	var fe *pebblelog.FatalError
	if errors.As(err, &fe) {
		d.reopened = time.Now() // the first reopen a while after the failure, not at once
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
