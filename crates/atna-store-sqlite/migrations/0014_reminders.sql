-- Reminders and their delivery (issue 10 §4). Additive: older nodes ignore these tables.

-- What each key's owner was reminded of. (key_id, kind) is unique: each condition is reminded once, however many
-- nodes notice it. `sent_at` stays NULL while the reminder waits for the owner's next daily digest.
CREATE TABLE reminders (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    kind       TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    key_name   TEXT    NOT NULL,
    immediate  BOOLEAN NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at    INTEGER,
    message    TEXT
);
CREATE UNIQUE INDEX reminders_once ON reminders (key_id, kind);
CREATE INDEX reminders_user_newest ON reminders (user_id, created_at DESC, id DESC);
CREATE INDEX reminders_pending ON reminders (user_id) WHERE sent_at IS NULL;

-- The durable outbox: one row per message, channel and recipient. A node claims due rows with a lease
-- (claimed_by, claimed_until); a row whose node died is claimed again once the lease has passed, with the same ID.
CREATE TABLE outbox (
    id               TEXT    PRIMARY KEY,
    message          TEXT    NOT NULL,
    channel          TEXT    NOT NULL CHECK (channel IN ('email', 'webhook')),
    user_id          INTEGER,
    body             TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    claimed_by       TEXT,
    claimed_until    INTEGER,
    delivered_at     INTEGER,
    failed_at        INTEGER,
    last_status      INTEGER,
    last_error       TEXT,
    last_duration_ms INTEGER
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_message ON outbox (message);

-- Webhook endpoints: owner_id is a user's ID, or 0 for the installation's. The signing secret is stored as given
-- (whsec_…): whoever can read the database can sign webhooks (docs/reminders.md).
CREATE TABLE webhooks (
    owner_id   INTEGER PRIMARY KEY,
    url        TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
