-- Usage over time: requests per key per hour (kept 14 days by default) and per UTC day (400 days), by outcome
-- (`VALID` for allowed requests, else the refusal's verify code, e.g. `INVALID_SECRET`). Nodes add their in-memory
-- counts on every usage flush (`count = count + excluded.count`); housekeeping deletes old buckets (hence the index
-- on `start`). Not in the export format (see docs/postgresql.md). Additive: older nodes neither read nor write it.
CREATE TABLE usage_hourly (
    key_id  TEXT    NOT NULL,
    start   BIGINT  NOT NULL,
    outcome TEXT    NOT NULL,
    count   BIGINT  NOT NULL,
    PRIMARY KEY (key_id, start, outcome)
);
CREATE INDEX usage_hourly_start ON usage_hourly (start);

CREATE TABLE usage_daily (
    key_id  TEXT    NOT NULL,
    start   BIGINT  NOT NULL,
    outcome TEXT    NOT NULL,
    count   BIGINT  NOT NULL,
    PRIMARY KEY (key_id, start, outcome)
);
CREATE INDEX usage_daily_start ON usage_daily (start);
