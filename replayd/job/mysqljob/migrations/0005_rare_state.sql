-- 0005: the state index keeps only the rare finished states.
--
-- idx_replay_jobs_state (state, id) moved a job's entry at each of its transitions: the lease
-- (OPEN to STARTED), ONGOING and its end, three index moves (and their purge) in every job's
-- life. Measured in bench lease (8 workers, MariaDB 10.11): without it a lease cycle cost the
-- server 556 µs of CPU instead of 760. Its readers, Count and List by state, are served instead:
--   OPEN, STARTED, ONGOING: uq_replay_jobs_active_webhook, whose key is non-NULL exactly for them
--     (0001), a few rows per webhook at most;
--   INCOMPLETE, CANCELED: idx_replay_jobs_rare_state on rare_state, non-NULL exactly for them, so
--     a job's entry moves once, when it ends so;
--   COMPLETED, the bulk of the table: the primary key in id order, filtered (Count: the table's
--     count less the others').
ALTER TABLE replay_jobs
  ADD COLUMN rare_state VARCHAR(16) AS (IF(state IN ('INCOMPLETE', 'CANCELED'), state, NULL)) STORED,
  ADD KEY idx_replay_jobs_rare_state (rare_state, id),
  DROP KEY idx_replay_jobs_state;
