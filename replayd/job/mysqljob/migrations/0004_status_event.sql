-- 0004: the replay_job_status event persisted, and redeliveries counted.
--
-- status_event is where a finished job's status event stands (job.StatusEvent): '' none owed,
-- 'pending' while its lease holder delivers it, 'delivered', 'given_up'. A finished job whose
-- status event is pending keeps its lease, so lease_due_at (the lease query's key, see 0001) is
-- now also its lease expiry: when the holder dies before delivering it, the job is leased again
-- and another worker delivers it.
--
-- events_redelivered counts deliveries of events an earlier holder had already reported
-- delivered (job.Counters.Redelivered).
ALTER TABLE replay_jobs
  ADD COLUMN status_event VARCHAR(16) NOT NULL DEFAULT '',
  ADD COLUMN events_redelivered BIGINT NOT NULL DEFAULT 0,
  MODIFY COLUMN lease_due_at DATETIME(6) AS (CASE
    WHEN state = 'OPEN' THEN created_at
    WHEN state IN ('STARTED', 'ONGOING') THEN lease_expires_at
    WHEN state IN ('COMPLETED', 'INCOMPLETE') AND status_event = 'pending' THEN lease_expires_at
    ELSE NULL END) STORED;
