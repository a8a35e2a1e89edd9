-- 0006: a version per row, so a lease can be taken from a copy of the row read beforehand.
--
-- A lease takes a job read earlier with the head of the lease queue (Lease in mysqljob.go). With
-- row_version, read with that copy, in the take's condition, the take matches only if nobody wrote
-- the row since the copy was read, and the leased job is then the copy with the lease's own
-- changes: the row need not be read back, one statement fewer in every lease. Every UPDATE of the
-- store adds 1. The take also compares updated_at, which every write sets, for writes of a replayd
-- built before this migration, which leave row_version as it is.
ALTER TABLE replay_jobs ADD COLUMN row_version BIGINT NOT NULL DEFAULT 0
  COMMENT 'incremented by every UPDATE of the row (0006)';
