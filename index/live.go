package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/diskreserve"
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
	// FS and DiskReserve are the index's Options.FS and Options.DiskReserve.
	FS          vfs.FS
	DiskReserve int64
	// RetryMin and RetryMax bound the builder's backoff: after it stops with an error it is
	// started again after RetryMin, doubled for each failure in a row, at most RetryMax.
	// Defaults 1s and 1m.
	RetryMin, RetryMax time.Duration
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
	if o.RetryMin == 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax == 0 {
		o.RetryMax = time.Minute
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
	if o.RetryMin < 0 || o.RetryMax < o.RetryMin {
		errs = append(errs, fmt.Errorf("RetryMin %v and RetryMax %v: want 0 < RetryMin <= RetryMax", o.RetryMin, o.RetryMax))
	}
	return errors.Join(errs...)
}

// Live is the index a running server uses, with its builder tailing the log. When Switch (a
// `replayd index rebuild`) points the data directory at a new index, Live notices within Poll,
// opens it, moves the builder and the lookups over, and closes the old one: a rebuild takes
// effect without a restart, and a lookup never sees half an index. It is a worker.Locator.
//
// The builder never takes the server down: when it stops with an error (the disk below its
// reserve, the source unreachable) Live is Degraded (Health says why and since when), lookups go
// on answering exactly (what is not indexed is scanned), and the builder is started again with
// backoff; its first commit or catch-up after that ends the degradation. A Pebble fatal error,
// after which the index refuses work, is recovered from by reopening the index once the disk
// has room again.
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
	stopBuild func() // stops the builder of ix and waits for it; nil while none runs
	building  bool   // Start was called: a builder runs on the index in use
	cancel    context.CancelFunc
	watched   chan struct{}

	healthMu sync.Mutex
	health   Health
	degraded atomic.Bool // health.Degraded, read without the lock by every Progress
	reopen   chan struct{}
	// reopenWanted: the index in use had a Pebble fatal error and must be opened again.
	reopenWanted atomic.Bool
}

// Health is the state of a Live index's builder.
type Health struct {
	// Degraded says the builder is not indexing: it stopped with Err at Since, Failures times
	// in a row, and is retried. Lookups still answer exactly (they scan what is not indexed),
	// more slowly the longer it lasts.
	Degraded bool
	Err      string
	Since    time.Time
	Failures int
	// Recovered counts the degradations that ended.
	Recovered int
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
	ix, err := Open(o.indexOptions(dir))
	if err != nil {
		return nil, err
	}
	return &Live{o: o, ix: ix, dir: dir, reopen: make(chan struct{}, 1)}, nil
}

// CheckSource is Index.CheckSource of the live index and its source.
func (l *Live) CheckSource(ctx context.Context) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.ix == nil {
		return ErrClosed
	}
	return l.ix.CheckSource(ctx, l.o.Source)
}

// Start runs the builder and watches the data directory for a switched index, until Close.
// Calls after the first do nothing.
func (l *Live) Start(ctx context.Context) error {
	l.startOnce.Do(func() {
		ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
		l.followMu.Lock()
		l.building = true
		l.startBuilder(ctx)
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
		case <-l.reopen:
		}
		if l.needsReopen() {
			if err := l.reopenIndex(ctx); err != nil {
				l.o.Logger.Error("index: reopening after a fatal error failed; retrying", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(l.o.RetryMin):
				}
				l.signalReopen()
			}
		}
	}
}

func (l *Live) build(ctx context.Context, ix *Index) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			err := ix.Build(ctx, l.o.Source, BuildOptions{Follow: true, Progress: l.progressFunc(ctx)})
			if ctx.Err() != nil {
				return
			}
			failures := l.failed(err)
			if ix.usable() != nil {
				// A Pebble fatal error: this index refuses work until reopened. The watcher
				// reopens it, and starts a builder on the new one.
				l.reopenWanted.Store(true)
				l.signalReopen()
				return
			}
			wait := l.o.RetryMin << min(failures-1, 20)
			if wait > l.o.RetryMax || wait <= 0 {
				wait = l.o.RetryMax
			}
			l.o.Logger.Error("index builder stopped; lookups scan what is not indexed until it runs again", "err", err, "failures", failures, "retry_in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
	return func() { cancel(); <-done }
}

// failed records a builder error and returns the failures in a row.
func (l *Live) failed(err error) int {
	l.healthMu.Lock()
	defer l.healthMu.Unlock()
	if !l.health.Degraded {
		l.health.Degraded, l.health.Since, l.health.Failures = true, time.Now(), 0
	}
	l.health.Err = err.Error()
	l.health.Failures++
	l.degraded.Store(true)
	return l.health.Failures
}

// progressFunc is a build's Progress: once every partition has committed or caught up in it, a
// degradation ends (one partition catching up with nothing to write says nothing about another
// whose commits are refused).
func (l *Live) progressFunc(ctx context.Context) func(Progress) {
	n, err := l.o.Source.Partitions(ctx)
	if err != nil {
		n = 1 << 30 // Build fails the same way: nothing ends the degradation
	}
	var mu sync.Mutex
	seen := map[int32]bool{}
	return func(p Progress) {
		if !l.degraded.Load() {
			return
		}
		mu.Lock()
		seen[p.Partition] = true
		all := int32(len(seen)) >= n
		mu.Unlock()
		if all {
			l.progressed()
		}
	}
}

// progressed ends a degradation: the builder committed or caught up again.
func (l *Live) progressed() {
	l.healthMu.Lock()
	defer l.healthMu.Unlock()
	if !l.health.Degraded {
		return
	}
	l.o.Logger.Info("index builder running again", "after", time.Since(l.health.Since).Round(time.Millisecond), "failures", l.health.Failures, "last_err", l.health.Err)
	l.health = Health{Recovered: l.health.Recovered + 1}
	l.degraded.Store(false)
}

// Health is the builder's state now.
func (l *Live) Health() Health {
	l.healthMu.Lock()
	defer l.healthMu.Unlock()
	return l.health
}

func (l *Live) signalReopen() {
	select {
	case l.reopen <- struct{}{}:
	default:
	}
}

func (l *Live) needsReopen() bool { return l.reopenWanted.Load() }

// startBuilder starts a builder on the index in use, if Start was called; stopBuilder stops it
// and waits for it. Both are called holding followMu.
func (l *Live) startBuilder(ctx context.Context) {
	if l.building && l.stopBuild == nil {
		l.stopBuild = l.build(ctx, l.ix)
	}
}

func (l *Live) stopBuilder() {
	if l.stopBuild != nil {
		l.stopBuild()
		l.stopBuild = nil
	}
}

// reopenIndex replaces an index that had a Pebble fatal error by the same directory opened
// again, once the disk has room for what opening writes (a WAL, a MANIFEST).
func (l *Live) reopenIndex(ctx context.Context) error {
	l.followMu.Lock()
	defer l.followMu.Unlock()
	if !l.needsReopen() {
		return nil
	}
	dir := l.Dir()
	if err := diskreserve.Check(l.o.fs(), dir, l.o.DiskReserve); err != nil {
		return err
	}
	l.stopBuilder()
	l.mu.Lock()
	oldErr := l.ix.usable()
	// Close reports the fatal error again; what matters is that it lets go of the directory.
	l.ix.Close()
	next, err := Open(l.o.indexOptions(dir))
	if err == nil {
		l.ix = next
	}
	l.mu.Unlock()
	if err != nil {
		// Still wanted: the watcher tries again; lookups answer ErrClosed meanwhile.
		return fmt.Errorf("reopening %s: %w", dir, err)
	}
	l.reopenWanted.Store(false)
	l.o.Logger.Warn("index: reopened after a fatal error", "dir", dir, "err", oldErr)
	l.startBuilder(ctx)
	return nil
}

func (o *LiveOptions) indexOptions(dir string) Options {
	return Options{Dir: dir, Retention: o.Retention, FS: o.FS, DiskReserve: o.DiskReserve, Logger: o.Logger}
}

func (o *LiveOptions) fs() vfs.FS {
	if o.FS == nil {
		return vfs.Default
	}
	return o.FS
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
	next, err := Open(l.o.indexOptions(dir))
	if err != nil {
		return err
	}
	l.stopBuilder()
	l.mu.Lock()
	old := l.ix
	l.ix, l.dir = next, dir
	l.mu.Unlock()
	l.reopenWanted.Store(false) // a fatal error of the old index is the old index's
	l.startBuilder(ctx)
	l.o.Logger.Info("switched to the rebuilt index", "dir", dir)
	if err := old.Close(); err != nil {
		return err
	}
	// The rebuild left the old directory to this process, which had it open.
	if err := removeUnused(l.o.DataDir); err != nil {
		l.o.Logger.Warn("removing the index switched from failed", "err", err)
	}
	return nil
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

// LocateStream is Locate answering as it goes (Index.LookupStream): emit gets the answer in
// ascending chunks. The index in use is held until the lookup ends, so emit must not wait long.
func (l *Live) LocateStream(ctx context.Context, p int32, key []byte, from, to int64, emit func([]int64) error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.ix == nil {
		return ErrClosed
	}
	_, err := l.ix.LookupStream(ctx, l.o.Source, p, key, from, to, emit)
	return err
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
		l.building = false
		l.stopBuilder()
		l.mu.Lock()
		defer l.mu.Unlock()
		l.closeErr = l.ix.Close()
		l.ix = nil
	})
	return l.closeErr
}
