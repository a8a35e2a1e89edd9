-- 0002: when a webhook's CRC challenge last ran (registration, an on-demand PUT, or the scheduled
-- re-check), by the server's clock. Webhooks registered before it were last checked when created.
ALTER TABLE replay_webhooks ADD COLUMN checked_at DATETIME(6) NULL;
UPDATE replay_webhooks SET checked_at = created_at WHERE checked_at IS NULL;
ALTER TABLE replay_webhooks MODIFY checked_at DATETIME(6) NOT NULL;
