// Package pebblelog is Pebble's logger on slog, for the three Pebble databases of the service
// (the index, the embedded job store and the embedded app store), and the way a Pebble fatal
// error becomes an error of the database that had it instead of a crash of the process.
//
// Pebble calls Logger.Fatalf when it cannot go on (a commit that failed to reach the WAL, a
// MANIFEST that cannot be synced, corruption) and expects it not to return; its default logger
// exits the process. This one logs the error through slog, records it (Err), and panics with a
// *FatalError, which the database's own entry points turn back into an error with Recover. The
// database then refuses further work with that error (it must be reopened). A Fatalf on one of
// Pebble's background goroutines (compactions, flushes) is not inside any entry point: it still
// ends the process, as Pebble intends, after the error has been logged.
package pebblelog

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// FatalError is a Pebble fatal error of one database.
type FatalError struct {
	// DB names the database ("index", "embeddedjob", …).
	DB  string
	Msg string
}

func (e *FatalError) Error() string { return e.DB + ": pebble fatal error: " + e.Msg }

// Logger is a pebble.Logger that writes to slog: Infof at Debug, Errorf at Error, Fatalf at
// Error and then as a *FatalError panic (see the package comment).
type Logger struct {
	log    *slog.Logger
	db     string
	failed atomic.Pointer[FatalError]
}

var _ pebble.Logger = (*Logger)(nil)

// New is the logger of the database db, writing to l (slog.Default() if nil).
func New(l *slog.Logger, db string) *Logger {
	if l == nil {
		l = slog.Default()
	}
	return &Logger{log: l.With("db", db), db: db}
}

// Infof logs Pebble's informational messages at Debug.
func (l *Logger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
	}
}

// Errorf logs Pebble's errors at Error; Pebble's default event listener reports background
// errors (failed flushes and compactions, which it retries) through it.
func (l *Logger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf logs the error, records it as the database's (the first one is kept) and panics with
// it: it does not return, as Pebble requires.
func (l *Logger) Fatalf(format string, args ...any) {
	e := &FatalError{DB: l.db, Msg: fmt.Sprintf(format, args...)}
	l.failed.CompareAndSwap(nil, e)
	l.log.Error("pebble: fatal error; the database refuses further work until reopened", "err", e.Msg)
	panic(e)
}

// Err is the database's fatal error, or nil.
func (l *Logger) Err() error {
	if e := l.failed.Load(); e != nil {
		return e
	}
	return nil
}

// Recover, deferred at a database's entry point with the entry point's named error result,
// turns a *FatalError panic into that error; any other panic goes on.
func Recover(errp *error) {
	r := recover()
	if r == nil {
		return
	}
	if e, ok := r.(*FatalError); ok {
		*errp = e
		return
	}
	panic(r)
}
