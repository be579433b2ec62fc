-- atna's schema on SQLite. Times are Unix milliseconds (INTEGER); key secrets are stored only as SHA-256 (BLOB).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT    PRIMARY KEY,
    owner_id     INTEGER NOT NULL REFERENCES users (id),
    name         TEXT    NOT NULL,
    secret_hash  BLOB    NOT NULL,
    scopes       TEXT    NOT NULL DEFAULT '',
    status       TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'revoked')),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    last_used_ip TEXT,
    use_count    INTEGER NOT NULL DEFAULT 0
);

-- Names are unique per owner among live keys; a deleted key's name can be used again.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (owner_id, name) WHERE status <> 'revoked';
CREATE INDEX api_keys_owner_newest ON api_keys (owner_id, created_at DESC, id DESC);

-- The change feed: every node polls it and forgets the keys (or users' keys) named here.
CREATE TABLE changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id  TEXT,
    user_id INTEGER,
    at      INTEGER NOT NULL
);

-- Who did what to which key; outlives the key.
CREATE TABLE audit_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    owner_id INTEGER NOT NULL,
    actor_id INTEGER,
    action   TEXT    NOT NULL,
    key_id   TEXT,
    key_name TEXT
);
CREATE INDEX audit_events_owner ON audit_events (owner_id, at DESC);

CREATE TABLE sessions (
    token_hash          BLOB    PRIMARY KEY,
    user_id             INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf                TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    idle_expires_at     INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
