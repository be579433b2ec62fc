-- Where a key may be used from: canonical CIDR ranges, space-separated; NULL for anywhere. Additive: older nodes
-- ignore the column (and so do not enforce it: upgrade every node before relying on allowlists).
ALTER TABLE api_keys ADD COLUMN ip_allowlist TEXT;
