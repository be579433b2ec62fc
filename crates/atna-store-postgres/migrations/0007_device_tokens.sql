-- Device tokens: the SHA-256 of a random token set as a long-lived cookie in a browser after a successful sign-in.
-- A sign-in from that browser for that user is exempt from the per-account throttling, so strangers failing for the
-- account cannot keep its owner out. Expired tokens are pruned by housekeeping; not exported.
CREATE TABLE device_tokens (
    token_hash BYTEA  PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);
CREATE INDEX device_tokens_expires_at ON device_tokens (expires_at);
