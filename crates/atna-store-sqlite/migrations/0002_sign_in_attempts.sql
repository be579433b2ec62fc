-- Sign-in attempts, for throttling shared by every process on the database: one row per attempt and key
-- ("a:<account>" or "i:<address>"), kept for the throttling window and pruned after a day.
CREATE TABLE sign_in_attempts (
    id  INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT    NOT NULL,
    at  INTEGER NOT NULL
);
CREATE INDEX sign_in_attempts_key ON sign_in_attempts (key, at);
