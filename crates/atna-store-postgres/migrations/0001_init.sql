-- atna's schema on PostgreSQL: the same tables and columns as the SQLite schema, so both decode the same way.
-- Times are Unix milliseconds (BIGINT); key secrets are stored only as SHA-256 (BYTEA).

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT      NOT NULL UNIQUE, -- stored lower-cased (Email::parse)
    password_hash TEXT      NOT NULL,
    is_admin      BOOLEAN   NOT NULL DEFAULT FALSE,
    disabled      BOOLEAN   NOT NULL DEFAULT FALSE,
    created_at    BIGINT    NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT    PRIMARY KEY,
    owner_id     BIGINT  NOT NULL REFERENCES users (id),
    name         TEXT    NOT NULL,
    secret_hash  BYTEA   NOT NULL,
    scopes       TEXT    NOT NULL DEFAULT '',
    status       TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'revoked')),
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    last_used_ip TEXT,
    use_count    BIGINT  NOT NULL DEFAULT 0
);

-- Names are unique per owner among live keys; a deleted key's name can be used again.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (owner_id, name) WHERE status <> 'revoked';
CREATE INDEX api_keys_owner_newest ON api_keys (owner_id, created_at DESC, id DESC);

-- The change feed: every node follows it (woken by NOTIFY atna_changes) and forgets the keys or users named here.
-- Writers take a transaction-level advisory lock before inserting, so sequence numbers commit in order and a reader
-- that has seen seq N never later finds an N-1 it skipped.
CREATE TABLE changes (
    seq     BIGSERIAL PRIMARY KEY,
    key_id  TEXT,
    user_id BIGINT,
    at      BIGINT NOT NULL
);

-- Who did what to which key; outlives the key.
CREATE TABLE audit_events (
    id       BIGSERIAL PRIMARY KEY,
    at       BIGINT NOT NULL,
    owner_id BIGINT NOT NULL,
    actor_id BIGINT,
    action   TEXT   NOT NULL,
    key_id   TEXT,
    key_name TEXT
);
CREATE INDEX audit_events_owner ON audit_events (owner_id, at DESC);

CREATE TABLE sessions (
    token_hash          BYTEA  PRIMARY KEY,
    user_id             BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf                TEXT   NOT NULL,
    created_at          BIGINT NOT NULL,
    idle_expires_at     BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
