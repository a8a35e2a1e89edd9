package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/replay/replay/engine"
)

// LiveOptions configure a Live index. DataDir and Source are required.
type LiveOptions struct {
	// DataDir is the data directory whose live index (LiveDir) is served.
	DataDir string
	// Source is the log the builder tails and lookups scan past the checkpoint.
	Source engine.Source
	// Retention is the index's Options.Retention. Default DefaultRetention.
	Retention time.Duration
	// Poll is how often the data directory is checked for a switched index. Default 5s.
	Poll time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills in the defaults of unset fields.
func (o *LiveOptions) EnsureDefaults() *LiveOptions {
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.Poll == 0 {
		o.Poll = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports every missing or impossible field.
func (o *LiveOptions) Validate() error {
	var errs []error
	if o.DataDir == "" {
		errs = append(errs, errors.New("DataDir is required"))
	}
	if o.Source == nil {
		errs = append(errs, errors.New("Source is required"))
	}
	if o.Poll < 0 {
		errs = append(errs, fmt.Errorf("Poll is %v, want positive", o.Poll))
	}
	return errors.Join(errs...)
}

// Live is the index a running server uses, with its builder tailing the log. When Switch (a
// `replayd index rebuild`) points the data directory at a new index, Live notices within Poll,
// opens it, moves the builder and the lookups over, and closes the old one: a rebuild takes
// effect without a restart, and a lookup never sees half an index. It is a worker.Locator.
//
// Lifecycle: OpenLive opens the index; Start runs the builder and the watcher; Close stops them
// and closes the index. Close is idempotent and may be called without Start.
type Live struct {
	o LiveOptions

	mu       sync.RWMutex // held for reading by lookups, for writing by a swap
	ix       *Index
	dir      string
	followMu sync.Mutex // serializes Follow, and Close with it

	startOnce sync.Once
	closeOnce sync.Once
	closeErr  error
	stopBuild func() // stops the builder of ix and waits for it
	cancel    context.CancelFunc
	watched   chan struct{}
}

// OpenLive opens the live index of o.DataDir, creating it if there is none.
func OpenLive(o LiveOptions) (*Live, error) {
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	dir, _, err := LiveDir(o.DataDir)
	if err != nil {
		return nil, err
	}
	ix, err := Open(Options{Dir: dir, Retention: o.Retention, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	return &Live{o: o, ix: ix, dir: dir}, nil
}

// Start runs the builder and watches the data directory for a switched index, until Close.
// Calls after the first do nothing.
func (l *Live) Start(ctx context.Context) error {
	l.startOnce.Do(func() {
		ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
		l.followMu.Lock()
		l.stopBuild = l.build(ctx, l.ix)
		l.followMu.Unlock()
		l.watched = make(chan struct{})
		go l.watch(ctx)
	})
	return nil
}

func (l *Live) watch(ctx context.Context) {
	defer close(l.watched)
	t := time.NewTicker(l.o.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := l.Follow(ctx); err != nil {
				l.o.Logger.Error("switching to the rebuilt index failed; keeping the current one", "err", err)
			}
		}
	}
}

func (l *Live) build(ctx context.Context, ix *Index) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := ix.Build(ctx, l.o.Source, BuildOptions{Follow: true})
		if err != nil && ctx.Err() == nil {
			l.o.Logger.Error("index builder stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }
}

// Follow switches to the live index the data directory names now, if it is not the one in use;
// the watcher calls it every Poll. Before Start it only switches the index; after Close it is
// ErrClosed. Calls are serialized.
func (l *Live) Follow(ctx context.Context) error {
	l.followMu.Lock()
	defer l.followMu.Unlock()
	l.mu.RLock()
	closed := l.ix == nil
	l.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	dir, _, err := LiveDir(l.o.DataDir)
	if err != nil || dir == l.Dir() {
		return err
	}
	next, err := Open(Options{Dir: dir, Retention: l.o.Retention, Logger: l.o.Logger})
	if err != nil {
		return err
	}
	building := l.stopBuild != nil
	if building {
		l.stopBuild()
	}
	l.mu.Lock()
	old := l.ix
	l.ix, l.dir = next, dir
	l.mu.Unlock()
	if building {
		l.stopBuild = l.build(ctx, next)
	}
	l.o.Logger.Info("switched to the rebuilt index", "dir", dir)
	return old.Close()
}

// Dir is the directory of the index in use.
func (l *Live) Dir() string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.dir
}

// Locate looks a webhook's batches up in the index in use.
func (l *Live) Locate(ctx context.Context, p int32, key []byte, from, to int64) ([]int64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.ix == nil {
		return nil, ErrClosed
	}
	r, err := l.ix.LookupPartition(ctx, l.o.Source, p, key, from, to)
	return r.Offsets, err
}

// Lag is the index in use's lag behind the log, per partition.
func (l *Live) Lag(ctx context.Context) ([]PartitionLag, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.ix == nil {
		return nil, ErrClosed
	}
	return l.ix.Lag(ctx, l.o.Source)
}

// Close stops the watcher and the builder and closes the index. It is idempotent: later calls
// return the first call's result.
func (l *Live) Close() error {
	l.closeOnce.Do(func() {
		l.startOnce.Do(func() {}) // a Start after Close does nothing
		if l.cancel != nil {
			l.cancel()
			<-l.watched
		}
		l.followMu.Lock()
		defer l.followMu.Unlock()
		if l.stopBuild != nil {
			l.stopBuild()
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.closeErr = l.ix.Close()
		l.ix = nil
	})
	return l.closeErr
}
