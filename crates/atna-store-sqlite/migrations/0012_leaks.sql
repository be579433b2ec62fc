-- Issue 11: the installation's own key prefixes, leak reports from secret scanners, and a detail for audit events.
-- Additive: older nodes ignore all of it (they issue and accept `atna_` keys only).

-- Every prefix this installation issued keys with; the one with is_current = 1 is what new keys get. Recorded by the
-- first start (the configured `key_prefix`); changed only by `atna key-prefix set`.
CREATE TABLE key_prefixes (
    prefix      TEXT    PRIMARY KEY,
    recorded_at INTEGER NOT NULL,
    is_current  INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX key_prefixes_one_current ON key_prefixes (is_current) WHERE is_current = 1;
-- An installation upgraded with keys already issued them as `atna_`: they must keep working.
INSERT INTO key_prefixes (prefix, recorded_at, is_current) SELECT 'atna', 0, 0 WHERE EXISTS (SELECT 1 FROM api_keys);

-- One row per (key, place) a scanner reported: a replayed report finds its row and changes nothing.
CREATE TABLE leak_reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id      TEXT    NOT NULL,
    owner_id    INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    url         TEXT    NOT NULL,
    reported_at INTEGER NOT NULL,
    outcome     TEXT    NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX leak_reports_once ON leak_reports (key_id, url);
CREATE INDEX leak_reports_owner ON leak_reports (owner_id, reported_at DESC);

-- What an event is about beyond its key: a leak's source URL, a prefix change (`atna -> acme`).
ALTER TABLE audit_events ADD COLUMN detail TEXT;
