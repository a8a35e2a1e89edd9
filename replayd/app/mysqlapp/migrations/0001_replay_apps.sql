-- 0001: apps and their webhooks.
--
-- An app's bearer token is stored only as its SHA-256 (token_sha256, unique: AppByToken is one
-- index lookup). The secret is the printable string whose bytes are the HMAC key (app.App.Secret).
-- Ids are drawn by the application (app.NewID: snowflake-like, 63-bit, positive); a collision on
-- the primary key is answered by drawing another.
CREATE TABLE replay_apps (
  id           BIGINT        NOT NULL,
  name         VARCHAR(255)  NOT NULL,
  secret       VARBINARY(255) NOT NULL,
  token_sha256 BINARY(32)    NOT NULL,
  created_at   DATETIME(6)   NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uq_replay_apps_token (token_sha256)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- A URL is registered at most once per app: uq_replay_webhooks_app_url on the URL's SHA-256
-- (a 2048-character URL is too long for an index of its own). idx_replay_webhooks_app lists an
-- app's webhooks in id order.
CREATE TABLE replay_webhooks (
  id          BIGINT          NOT NULL,
  app_id      BIGINT          NOT NULL,
  url         VARCHAR(2048)   NOT NULL,
  url_sha256  BINARY(32)      NOT NULL,
  valid       BOOLEAN         NOT NULL DEFAULT FALSE,
  created_at  DATETIME(6)     NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uq_replay_webhooks_app_url (app_id, url_sha256),
  KEY idx_replay_webhooks_app (app_id, id),
  CONSTRAINT fk_replay_webhooks_app FOREIGN KEY (app_id) REFERENCES replay_apps (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
