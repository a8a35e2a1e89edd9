package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/replay/replay/segment"
)

// SyncPolicy says when appended data is fsynced.
type SyncPolicy int

const (
	// SyncAlways makes every Append durable before it returns. Concurrent appends to a partition
	// share one fsync (group commit), so throughput grows with concurrency.
	SyncAlways SyncPolicy = iota
	// SyncNever leaves writing back to the operating system, and to segment rolls and Close,
	// which sync. Appends survive a crash of the process but not of the machine. For bulk loads.
	SyncNever
)

func (p SyncPolicy) String() string {
	if p == SyncNever {
		return "never"
	}
	return "always"
}

// Options configure a Log. The zero value of every field but Dir means its default.
type Options struct {
	// Dir is the log's data directory, holding <Topic>-<partition> directories. Required.
	Dir string
	// Topic is the topic's name. Default "delivery_log".
	Topic string
	// Partitions is the partition count of a new log. An existing log keeps the count it was
	// created with; opening it with a different non-zero count is an error. Default 8.
	Partitions int32
	// SegmentBytes rolls the active segment when an append would take it past this size.
	// Default 256 MiB; at most 2 GiB, the limit of Kafka's 32-bit index positions.
	SegmentBytes int64
	// SegmentAge rolls the active segment when a batch's max timestamp is this much later than
	// the segment's first batch's, as Kafka's segment.ms does (by record time, so history
	// generated quickly still lands in time-ordered segments). Default 1 hour.
	SegmentAge time.Duration
	// Retention deletes whole segments whose largest timestamp is older than this, never the
	// active one. Default 120 hours (5 days). Negative keeps everything.
	Retention time.Duration
	// MaxBatchBytes is how many bytes of uncompressed records Append puts into one batch.
	// Smaller batches cost index entries and compress worse; larger ones make a replay read more
	// bytes that are not its webhook's (a batch is the unit a replay reads). Default 16 KiB, the
	// batch.size of Kafka's producer, so the embedded log is batched as a Kafka topic would be.
	MaxBatchBytes int
	// Codec compresses appended batches. Default snappy.
	Codec segment.Codec
	// Sync is the durability policy. Default SyncAlways.
	Sync SyncPolicy
	// IndexIntervalBytes is Kafka's index.interval.bytes. Default 4096.
	IndexIntervalBytes int
	// LockTimeout is how long Open waits for another process to let go of the log (a reader
	// that opened it for a moment to apply retention, or another producer). Default 10s;
	// negative does not wait.
	LockTimeout time.Duration
	// FS is where files live. Default DefaultFS.
	FS FS
	// Now is the clock retention uses. Default time.Now.
	Now func() time.Time
	// Logger receives recovery and retention events. Default slog.Default().
	Logger *slog.Logger

	codecSet bool
}

// WithCodec sets Codec; needed to choose CodecNone, whose zero value otherwise means the default.
func (o Options) WithCodec(c segment.Codec) Options {
	o.Codec, o.codecSet = c, true
	return o
}

// EnsureDefaults fills in the defaults of unset fields.
func (o *Options) EnsureDefaults() *Options {
	if o.Topic == "" {
		o.Topic = "delivery_log"
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = 256 << 20
	}
	if o.SegmentAge == 0 {
		o.SegmentAge = time.Hour
	}
	if o.Retention == 0 {
		o.Retention = 120 * time.Hour
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = 16 << 10
	}
	if o.Codec == segment.CodecNone && !o.codecSet {
		o.Codec = segment.CodecSnappy
	}
	if o.IndexIntervalBytes == 0 {
		o.IndexIntervalBytes = 4096
	}
	if o.FS == nil {
		o.FS = DefaultFS
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports every field that holds an impossible value.
func (o *Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("Dir is required"))
	}
	if o.Partitions < 0 {
		errs = append(errs, fmt.Errorf("Partitions is %d, want at least 1", o.Partitions))
	}
	if o.SegmentBytes < 1<<10 || o.SegmentBytes > 1<<31-1 {
		errs = append(errs, fmt.Errorf("SegmentBytes is %d, want 1 KiB to 2 GiB", o.SegmentBytes))
	}
	if o.SegmentAge < 0 {
		errs = append(errs, fmt.Errorf("SegmentAge is %v, want a positive duration", o.SegmentAge))
	}
	if o.MaxBatchBytes < 0 || o.MaxBatchBytes > segment.MaxBatchSize/2 {
		errs = append(errs, fmt.Errorf("MaxBatchBytes is %d, want 1 to %d", o.MaxBatchBytes, segment.MaxBatchSize/2))
	}
	if o.Codec < segment.CodecNone || o.Codec > segment.CodecZstd {
		errs = append(errs, fmt.Errorf("Codec is %d, not a codec", o.Codec))
	}
	if o.Sync != SyncAlways && o.Sync != SyncNever {
		errs = append(errs, fmt.Errorf("Sync is %d, not a policy", o.Sync))
	}
	if o.IndexIntervalBytes < 0 {
		errs = append(errs, fmt.Errorf("IndexIntervalBytes is %d, want at least 0", o.IndexIntervalBytes))
	}
	return errors.Join(errs...)
}
