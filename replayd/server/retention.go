package server

import (
	"sync"
	"time"

	"github.com/replay/replay/engine"
)

// logRetention applies retention to the embedded log every interval, and once at Start. The
// server only reads the log, so retention is the job of whoever holds it for writing: this opens
// it for a moment when no producer does (a producer that runs applies it itself), which deletes
// whole expired segments; the server's reads of them finish on the files they have open.
//
// A service: Start runs it, Stop stops it and waits; both are idempotent.
type logRetention struct {
	opts  engine.Options
	every time.Duration

	startOnce, stopOnce sync.Once
	done, stopped       chan struct{}
}

func (r *logRetention) Start() {
	r.startOnce.Do(func() {
		r.done, r.stopped = make(chan struct{}), make(chan struct{})
		go r.run()
	})
}

func (r *logRetention) run() {
	defer close(r.stopped)
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		l, err := engine.Open(r.opts) // recovers, then enforces retention
		if err == nil {
			err = l.Close()
		}
		if err != nil {
			r.opts.Logger.Debug("embedded log retention skipped: a producer has the log open", "err", err)
		}
		select {
		case <-r.done:
			return
		case <-t.C:
		}
	}
}

func (r *logRetention) Stop() {
	r.stopOnce.Do(func() {
		r.startOnce.Do(func() {}) // a Start after Stop does nothing
		if r.done != nil {
			close(r.done)
			<-r.stopped
		}
	})
}
