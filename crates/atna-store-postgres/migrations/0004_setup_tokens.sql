-- First-run setup links: the SHA-256 of each token a node printed while no user existed, so the link works on every
-- node behind a load balancer. All are deleted when the first administrator is created.
CREATE TABLE setup_tokens (
    token_hash BYTEA  PRIMARY KEY,
    created_at BIGINT NOT NULL
);
