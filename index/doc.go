// Package index is the Pebble time-and-webhook index: for a webhook and a time window it yields
// the partition and the base offsets of exactly the record batches that may hold that webhook's
// events in the window, so a replay reads those batches (engine.Source.ReadBatches) instead of
// scanning the partition from offsetsForTimes(from).
//
// # Keys
//
// Keys are time-major within a partition, so that a time range of a partition is one key range:
//
//	'e' | partition u32 BE | bucket u32 BE | webhook u64 BE  →  batch base offsets (runs)
//	's' | partition u32 BE | bucket u32 BE                   →  uvarint largest offset in the bucket
//	'c' | partition u32 BE                                   →  u64 BE next offset to index (checkpoint)
//	'r' | partition u32 BE                                   →  u32 BE retention floor (lowest kept bucket)
//	'l' | partition u32 BE                                   →  u64 BE base offset, u32 BE CRC of the last batch indexed
//	'm'                                                      →  JSON meta: version, bucket width, partition count
//
// The bucket is the record's own timestamp divided by the bucket width (Options.BucketWidth,
// default 1 minute), not the batch's, so out-of-order timestamps land in the right bucket. The
// webhook is the record key as a decimal uint64, or xxhash64 of a key that is not one
// (WebhookID); two keys sharing an id only widen a lookup, which replay filters by key anyway.
//
// # Values and commits
//
// A value is one or more self-delimiting runs: uvarint count, uvarint first offset, uvarint
// deltas. The builder aggregates a partition's entries in memory (a map from (bucket, webhook)
// to the ascending, distinct batch offsets seen) and every Options.CommitRecords records (or
// CommitInterval) writes one run per key with batch.Merge, the bucket summaries with Merge, and
// the partition's checkpoint with Set, all in one synced pebble.Batch: a crash leaves every
// batch below the checkpoint indexed exactly once and nothing above it, and the builder resumes
// at the checkpoint. The merge operator (named "replay.index.v1") concatenates runs, so a commit
// never reads before it writes; when the offsets ascend across runs (always, for what the
// builder writes) it re-encodes them as one run, so compaction leaves one delta-encoded run per
// key. Summary values merge to their maximum. Aggregating first makes a busy webhook cost about
// one byte per batch it appears in rather than a key per record; the merge operator makes the
// commit cost independent of the index's size. Tables of the two bottom levels are zstd-compressed, with 32 KiB
// blocks: at ~1 KB events the index measures 1–2% of the log (TestIndexSizeRatio, bench).
//
// # Lookup
//
// Lookup reads the partition's checkpoint, then does one SeekGE per bucket of [from, to) on one
// bounded iterator, then scans the unindexed suffix [checkpoint, end) of the log through the
// Source, keeping batches with a record of that key and from ≤ timestamp < to (control batches
// skipped): the index is never stale, only slower when the builder lags (Lag reports it). The
// result is sorted and deduplicated. It is a superset of the exact answer only at the window's
// edge buckets and for keys sharing a WebhookID; tests measure the factor.
//
// # Retention
//
// EnforceRetention drops, per partition, the buckets that ended more than Options.Retention ago
// and the oldest buckets whose largest offset (their summary) is below the log start, with one
// DeleteRange per key kind: no entry is read. Retention and commits of a partition exclude each
// other, so a late record committed into an old bucket is never deleted unseen.
//
// # Truncation and partition counts
//
// A log end below a partition's checkpoint means the log lost its tail (an unclean leader
// election, a torn tail cut on recovery): the builder notices before its next scan and
// TruncatePartition drops the entry offsets, summaries and checkpoint above the end, reading only
// the buckets whose summary reaches it; Lookup meanwhile ignores what lies at or past the end.
// A log truncated and refilled past the checkpoint unseen is caught by the 'l' key: every scan
// starts at the last batch indexed, and when the log holds another batch there the partition is
// indexed again from the log start.
// The first build records the topic's partition count in the meta; a source with another count
// is refused with a *PartitionCountError.
//
// # Data directory
//
// Under a data directory, the file INDEX names the live index directory (LiveDir); a rebuild
// fills index.rebuild/ and Switch renames it to index-<time>/ and replaces INDEX atomically.
//
// Verify compares the index with the log; Check verifies the index's own invariants; corruption
// is reported as an error wrapping ErrCorrupt.
package index
