-- 0003: Standard Webhooks signing as a per-app option, and secret rotation with an overlap.
--
-- standard_webhooks: deliveries also carry webhook-id, webhook-timestamp and webhook-signature.
-- previous_secret, until previous_secret_until (the server's clock): the secret a rotation
-- replaced, still signing deliveries beside the new one and answering the CRC challenge.
ALTER TABLE replay_apps
  ADD COLUMN standard_webhooks     BOOLEAN        NOT NULL DEFAULT FALSE,
  ADD COLUMN previous_secret       VARBINARY(255) NULL,
  ADD COLUMN previous_secret_until DATETIME(6)    NULL;
