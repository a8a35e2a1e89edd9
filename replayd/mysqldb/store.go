package mysqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// StoreOptions say how a Store reports its errors.
type StoreOptions struct {
	// Name prefixes errors: "<Name>: <op>: …". Required.
	Name string
	// Retry bounds the retries of Do. Its zero value is Retry's defaults.
	Retry RetryPolicy
	// ErrClosed is Do's error after Close, the store's own sentinel (job.ErrClosed). Required.
	ErrClosed error
	// ErrUnavailable wraps the errors IsUnavailable accepts, the store's own sentinel
	// (job.ErrUnavailable), so that callers see an outage without knowing MySQL. Required.
	ErrUnavailable error
	// Bare lists errors Do returns as they are: expected outcomes, not failures.
	Bare []error
}

// Store is the open database of one store (mysqljob, mysqlapp): its pool, Do to run a call
// with Retry and store-neutral errors, Ping, and an idempotent Close. Drivers embed it.
type Store struct {
	db        *sql.DB
	o         StoreOptions
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// OpenStore opens the set's database as Open does and wraps it in a Store.
func (s Set) OpenStore(ctx context.Context, c Conn, o StoreOptions) (*Store, error) {
	if o.Name == "" || o.ErrClosed == nil || o.ErrUnavailable == nil {
		return nil, errors.New("mysqldb: StoreOptions need Name, ErrClosed and ErrUnavailable")
	}
	db, err := s.Open(ctx, c)
	if err != nil {
		return nil, err
	}
	return &Store{db: db, o: o}, nil
}

// DB returns the underlying pool (for tests and diagnostics).
func (s *Store) DB() *sql.DB { return s.db }

// Do runs fn with the deadlock / lock-wait-timeout retry policy. Its errors are prefixed with
// the store and op; outages are wrapped with ErrUnavailable; after Close it fails with ErrClosed.
func (s *Store) Do(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %s: %w", s.o.Name, op, s.o.ErrClosed)
	}
	err := Retry(ctx, s.o.Retry, fn)
	if err == nil {
		return nil
	}
	for _, bare := range s.o.Bare {
		if errors.Is(err, bare) {
			return err
		}
	}
	if IsUnavailable(err) {
		return fmt.Errorf("%s: %s: %w: %w", s.o.Name, op, s.o.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %s: %w", s.o.Name, op, err)
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.Do(ctx, "ping", func(ctx context.Context) error { return Ping(ctx, s.db) })
}

// Close closes the connection pool. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}
