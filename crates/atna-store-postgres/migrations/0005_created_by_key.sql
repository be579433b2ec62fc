-- Which key created a key through the API, and which key acted in an audit event. Both optional: keys made in the
-- dashboard or by the operator have none. Additive: older nodes ignore the columns.
ALTER TABLE api_keys ADD COLUMN created_by_key TEXT;
ALTER TABLE audit_events ADD COLUMN actor_key_id TEXT;
