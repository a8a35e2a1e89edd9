package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
)

// liveIndex is the index a running server uses, with its builder tailing the log. When
// `replayd index rebuild` switches the data directory to a new index, the server notices, opens
// it, moves the builder and the lookups over, and closes the old one: a rebuild takes effect
// without a restart, and a lookup never sees half an index.
type liveIndex struct {
	data      string
	src       engine.Source
	retention time.Duration
	log       *slog.Logger

	mu  sync.RWMutex // held for reading by lookups, for writing by a swap
	ix  *index.Index
	dir string

	stopBuild func() // stops the builder of ix and waits for it
	stopWatch chan struct{}
	watched   chan struct{}
}

func openServingIndex(data string, src engine.Source, retention time.Duration, logger *slog.Logger) (*liveIndex, error) {
	l := &liveIndex{data: data, src: src, retention: retention, log: logger}
	dir, _, err := index.LiveDir(data)
	if err != nil {
		return nil, err
	}
	if l.ix, err = index.Open(index.Options{Dir: dir, Retention: retention, Logger: logger}); err != nil {
		return nil, err
	}
	l.dir = dir
	return l, nil
}

// start runs the builder and watches for a switched index every poll.
func (l *liveIndex) start(poll time.Duration) {
	l.stopBuild = l.build(l.ix)
	l.stopWatch, l.watched = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.watched)
		t := time.NewTicker(poll)
		defer t.Stop()
		for {
			select {
			case <-l.stopWatch:
				return
			case <-t.C:
				if err := l.follow(); err != nil {
					l.log.Error("switching to the rebuilt index failed; keeping the current one", "err", err)
				}
			}
		}
	}()
}

func (l *liveIndex) build(ix *index.Index) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := ix.Build(ctx, l.src, index.BuildOptions{Follow: true})
		if err != nil && ctx.Err() == nil {
			l.log.Error("index builder stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }
}

// follow switches to the live index the data directory names, if it is not the one in use.
func (l *liveIndex) follow() error {
	dir, _, err := index.LiveDir(l.data)
	if err != nil || dir == l.current() {
		return err
	}
	next, err := index.Open(index.Options{Dir: dir, Retention: l.retention, Logger: l.log})
	if err != nil {
		return err
	}
	l.stopBuild()
	l.mu.Lock()
	old := l.ix
	l.ix, l.dir = next, dir
	l.mu.Unlock()
	l.stopBuild = l.build(next)
	l.log.Info("switched to the rebuilt index", "dir", dir)
	return old.Close()
}

func (l *liveIndex) current() string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dir
}

// Locate looks a webhook's batches up in the index in use.
func (l *liveIndex) Locate(ctx context.Context, p int32, key []byte, from, to int64) ([]int64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	r, err := l.ix.LookupPartition(ctx, l.src, p, key, from, to)
	return r.Offsets, err
}

// Lag is the index in use's lag behind the log, per partition.
func (l *liveIndex) Lag(ctx context.Context) ([]index.PartitionLag, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.ix.Lag(ctx, l.src)
}

// Close stops the watcher and the builder and closes the index.
func (l *liveIndex) Close() error {
	if l.stopWatch != nil {
		close(l.stopWatch)
		<-l.watched
		l.stopBuild()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ix == nil {
		return errors.New("index already closed")
	}
	err := l.ix.Close()
	l.ix = nil
	return err
}
