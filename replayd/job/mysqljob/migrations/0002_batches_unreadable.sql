-- 0002: the window's batches that could not be read (corrupt on disk), counted per job.
ALTER TABLE replay_jobs ADD COLUMN batches_unreadable BIGINT NOT NULL DEFAULT 0;
