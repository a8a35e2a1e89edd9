package index

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/replay/replay/index/diskreserve"
)

// Options configure an Index. The zero value of every field but Dir means its default;
// EnsureDefaults fills them in and Validate checks the result.
type Options struct {
	// Dir is the Pebble directory of the index. Required.
	Dir string
	// BucketWidth is the width of the time buckets entries are keyed by: a lookup does one seek
	// per bucket of its window, and returns every batch of the webhook in the buckets the window
	// touches (a superset at the window's edges). It is fixed when the index is created; opening
	// an index with another non-zero width is an error. Default 1 minute; from 1s to 24h.
	BucketWidth time.Duration
	// Retention drops, on EnforceRetention, the buckets that ended more than this long ago.
	// Default 120 hours (5 days), the delivery_log's retention. Negative keeps everything (entries
	// below the log start are still dropped).
	Retention time.Duration
	// CommitRecords is how many records the builder indexes in memory before it commits them,
	// with the partition's checkpoint, in one synced Pebble batch. Larger commits aggregate more
	// offsets per key and sync less often. Default 262144: at 65536 a commit of a busy
	// partition spanned a few minutes of its records, so with timestamps jittered by minutes
	// most (bucket, webhook) keys were written by two or three commits, each a Merge to encode
	// and insert and each bucket's map to fill again; profiled (5 rebuilds of bench's data
	// set), aggregating and committing took 1.10 s instead of 1.63. A crash re-reads at most
	// that many records, and CommitInterval still bounds how long they wait.
	CommitRecords int
	// CommitInterval is the longest a builder keeps indexed records uncommitted. Default 1s.
	CommitInterval time.Duration
	// ReadOnly opens the index for reading only (stats, verify): nothing is written, and it may
	// not be created.
	ReadOnly bool
	// FS is where the index's files live. Default vfs.Default.
	FS vfs.FS
	// DiskReserve is the free space the builder leaves on the index's filesystem: a commit (of
	// Build, ImportPartitions) is refused with a *diskreserve.Error while less is free, so that
	// Pebble never meets a full disk (see package diskreserve). Default
	// diskreserve.DefaultReserve (256 MiB); negative checks nothing.
	DiskReserve int64
	// Now is the clock retention uses. Default time.Now.
	Now func() time.Time
	// Logger receives the builder's and retention's events. Default slog.Default().
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultBucketWidth    = time.Minute
	DefaultRetention      = 120 * time.Hour
	DefaultCommitRecords  = 262144
	DefaultCommitInterval = time.Second
)

// EnsureDefaults fills in the defaults of unset fields.
func (o *Options) EnsureDefaults() *Options {
	if o.BucketWidth == 0 {
		o.BucketWidth = DefaultBucketWidth
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.CommitRecords == 0 {
		o.CommitRecords = DefaultCommitRecords
	}
	if o.CommitInterval == 0 {
		o.CommitInterval = DefaultCommitInterval
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.DiskReserve == 0 {
		o.DiskReserve = diskreserve.DefaultReserve
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports every field that holds an impossible value, all at once.
func (o *Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("Dir is required"))
	}
	if o.BucketWidth < time.Second || o.BucketWidth > 24*time.Hour || o.BucketWidth%time.Millisecond != 0 {
		errs = append(errs, fmt.Errorf("BucketWidth is %v, want whole milliseconds from 1s to 24h", o.BucketWidth))
	}
	if o.CommitRecords < 1 {
		errs = append(errs, fmt.Errorf("CommitRecords is %d, want at least 1", o.CommitRecords))
	}
	if o.CommitInterval < 0 {
		errs = append(errs, fmt.Errorf("CommitInterval is %v, want a positive duration", o.CommitInterval))
	}
	return errors.Join(errs...)
}
