-- 0001: the replay_jobs table.
--
-- Two STORED generated columns carry the store's two invariants into indexes:
--
-- active_webhook_id is the webhook id while the job is OPEN/STARTED/ONGOING and NULL afterwards.
-- Its UNIQUE index makes "at most one active job per webhook" atomic on INSERT (duplicate key
-- 1062 on uq_replay_jobs_active_webhook = job.ErrActiveJobExists): UNIQUE ignores NULLs, so any
-- number of finished jobs may share a webhook.
--
-- lease_due_at is when the job became leasable: created_at for an OPEN job, lease_expires_at for a
-- STARTED/ONGOING one (heartbeat time + the holder's lease timeout), NULL once it is finished.
-- The lease query is exactly
--   SELECT id FROM replay_jobs WHERE lease_due_at <= NOW(6)
--   ORDER BY lease_due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
-- and idx_replay_jobs_lease (lease_due_at, id) serves it completely: a range scan from the start
-- of the index in the ORDER BY order, finished jobs absent from the range (NULL), no filesort, and
-- SKIP LOCKED steps over the entries other workers are leasing right now.
CREATE TABLE replay_jobs (
  id                   BIGINT       NOT NULL AUTO_INCREMENT,
  app_id               BIGINT       NOT NULL,
  webhook_id           BIGINT       NOT NULL,
  kafka_partition      INT          NOT NULL,
  from_ms              BIGINT       NOT NULL COMMENT 'inclusive, Unix ms',
  to_ms                BIGINT       NOT NULL COMMENT 'exclusive, Unix ms',
  state                VARCHAR(16)  NOT NULL,
  reason               VARCHAR(1024) NOT NULL DEFAULT '',
  created_at           DATETIME(6)  NOT NULL,
  updated_at           DATETIME(6)  NOT NULL,
  started_at           DATETIME(6)  NULL,
  finished_at          DATETIME(6)  NULL,
  lease_owner          VARCHAR(255) NOT NULL DEFAULT '',
  fencing_token        BIGINT       NOT NULL DEFAULT 0,
  heartbeat_at         DATETIME(6)  NULL,
  lease_expires_at     DATETIME(6)  NULL,
  lease_timeout_us     BIGINT       NOT NULL DEFAULT 0 COMMENT 'the holder''s lease timeout; each heartbeat extends the lease by it',
  checkpoint           BIGINT       NOT NULL DEFAULT -1 COMMENT 'offset below which all events are delivered; -1 none',
  events_read          BIGINT       NOT NULL DEFAULT 0,
  events_delivered     BIGINT       NOT NULL DEFAULT 0,
  duplicates_dropped   BIGINT       NOT NULL DEFAULT 0,
  events_failed        BIGINT       NOT NULL DEFAULT 0,
  first_undelivered_ms BIGINT       NULL,
  active_webhook_id    BIGINT AS (IF(state IN ('OPEN', 'STARTED', 'ONGOING'), webhook_id, NULL)) STORED,
  lease_due_at         DATETIME(6) AS (CASE
                         WHEN state = 'OPEN' THEN created_at
                         WHEN state IN ('STARTED', 'ONGOING') THEN lease_expires_at
                         ELSE NULL END) STORED,
  PRIMARY KEY (id),
  UNIQUE KEY uq_replay_jobs_active_webhook (active_webhook_id),
  KEY idx_replay_jobs_lease (lease_due_at, id),
  KEY idx_replay_jobs_app (app_id, id),
  KEY idx_replay_jobs_webhook (webhook_id, id),
  KEY idx_replay_jobs_state (state, id),
  CONSTRAINT chk_replay_jobs_state CHECK (state IN ('OPEN', 'STARTED', 'ONGOING', 'COMPLETED', 'INCOMPLETE', 'CANCELED')),
  CONSTRAINT chk_replay_jobs_window CHECK (from_ms < to_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
