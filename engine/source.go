package engine

import (
	"context"
	"errors"

	"github.com/replay/replay/segment"
)

// Source is the delivery_log as indexing and replay see it, wherever it is kept: the embedded
// Log, a Kafka broker's log directory read in place (DirSource), or a Kafka cluster
// (KafkaSource). Every implementation answers the same questions with the same records; the
// conformance suite in enginetest holds them to it.
//
// Batches are handed to callbacks as segment.Batch values whose bytes are valid only during the
// call; records are decoded from them with a segment.RecordReader. Control batches are passed
// through (they occupy offsets); callers skip them with Batch.IsControl.
type Source interface {
	// Topic is the name of the topic read.
	Topic() string
	// Partitions is the topic's partition count.
	Partitions(ctx context.Context) (int32, error)
	// Bounds are the partition's log start offset (the first offset still kept) and end offset
	// (the offset the next record will get; records below it are readable).
	Bounds(ctx context.Context, partition int32) (Bounds, error)
	// OffsetForTime answers ListOffsets by timestamp: the first offset whose record timestamp is
	// at least ts. found is false when no record is, and offset is then the end offset.
	OffsetForTime(ctx context.Context, partition int32, ts int64) (offset int64, found bool, err error)
	// Scan calls fn for each batch of the partition in offset order, starting with the batch that
	// holds offset from (or the first one after it), up to the end offset as of the call. fn
	// returning an error stops the scan with that error; ErrStop stops it cleanly.
	Scan(ctx context.Context, partition int32, from int64, fn func(*segment.Batch) error) error
	// ReadBatches calls fn once for each distinct batch holding one of offsets, which must be
	// ascending, in offset order: the targeted reads of a replay, whose offsets come from an index.
	// Offsets below the log start (deleted by retention) or at or past the end are skipped.
	ReadBatches(ctx context.Context, partition int32, offsets []int64, fn func(*segment.Batch) error) error
	// WaitForEnd blocks until the partition's end offset is greater than offset or ctx is done,
	// and returns the end offset: what a tailing reader waits on.
	WaitForEnd(ctx context.Context, partition int32, offset int64) (int64, error)
	// Close releases what the source holds. It is idempotent.
	Close() error
}

// Bounds are the offsets a partition holds: Start ≤ offset < End.
type Bounds struct {
	Start int64 // log start offset
	End   int64 // next offset to be written
}

// ErrStop stops a Scan or ReadBatches from inside its callback without an error.
var ErrStop = errors.New("engine: stop")

// ErrClosed is returned by every method of a closed Log or Source.
var ErrClosed = errors.New("engine: closed")

// ErrUnknownPartition is returned for a partition number the topic does not have.
var ErrUnknownPartition = errors.New("engine: unknown partition")

// IsRetryable says whether an operation that failed with err may succeed if tried again: a
// network or broker error of a remote source, or a context deadline. Corruption, an unknown
// partition, a closed source and a failed fsync are not retryable: trying again would return
// the same answer or, for a failed fsync, could hide lost data.
func IsRetryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.Canceled),
		errors.Is(err, ErrClosed),
		errors.Is(err, ErrUnknownPartition),
		errors.Is(err, segment.ErrCorrupt),
		errors.Is(err, ErrSync):
		return false
	case errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var r interface{ Retryable() bool }
	if errors.As(err, &r) {
		return r.Retryable()
	}
	return false
}

// ErrSync wraps a failed fsync: data appended since the last successful sync may be lost, so the
// partition refuses further appends until it is reopened and recovered.
var ErrSync = errors.New("engine: fsync failed")
