-- Sign-in attempts, for throttling shared by every node: one row per attempt and key ("a:<account>" or
-- "i:<address>"), kept for the throttling window and pruned after a day.
CREATE TABLE sign_in_attempts (
    id  BIGSERIAL PRIMARY KEY,
    key TEXT      NOT NULL,
    at  BIGINT    NOT NULL
);
CREATE INDEX sign_in_attempts_key ON sign_in_attempts (key, at);
