-- Per-key rate limits and usage quotas. Additive: older nodes ignore these columns (and so do not enforce them:
-- upgrade every node before relying on limits).
-- Rate limit: rate_limit requests per rate_period_seconds (both NULL: none).
ALTER TABLE api_keys ADD COLUMN rate_limit BIGINT;
ALTER TABLE api_keys ADD COLUMN rate_period_seconds BIGINT;
-- Usage quota: uses left, the total shown beside it, when it was last filled (all NULL: none); its refill, if any
-- (amount and 'daily' or 'monthly', applied lazily at the start of each UTC day or month).
ALTER TABLE api_keys ADD COLUMN quota_remaining BIGINT;
ALTER TABLE api_keys ADD COLUMN quota_total BIGINT;
ALTER TABLE api_keys ADD COLUMN quota_refilled_at BIGINT;
ALTER TABLE api_keys ADD COLUMN quota_refill_amount BIGINT;
ALTER TABLE api_keys ADD COLUMN quota_refill_interval TEXT;

-- Rate-limited uses each node admitted, written in batches (one row per key per sync interval) so that the other
-- nodes charge them to their own rate limiters. Short-lived: rows older than a few minutes are deleted. Not exported.
CREATE TABLE rate_limit_uses (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT   NOT NULL,
    node   TEXT   NOT NULL,
    at     BIGINT NOT NULL,
    uses   BIGINT NOT NULL
);
CREATE INDEX rate_limit_uses_at ON rate_limit_uses (at);
