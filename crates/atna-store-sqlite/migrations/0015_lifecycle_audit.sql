-- Key lifecycle and a complete audit trail (issue 10). Additive: older nodes ignore the new columns and indexes.

-- A roll links the two keys both ways: the new key names the key it replaced, the old key its successor.
ALTER TABLE api_keys ADD COLUMN rolled_from TEXT;
ALTER TABLE api_keys ADD COLUMN rolled_to TEXT;

-- Where a change came from (the `detail` column came with 0012).
ALTER TABLE audit_events ADD COLUMN ip TEXT;
ALTER TABLE audit_events ADD COLUMN user_agent TEXT;

-- Keyset pages, newest first, over all events and filtered by user, key or kind: each a range on one index, so a
-- page costs the same at one million events as at one hundred.
CREATE INDEX audit_events_newest ON audit_events (at DESC, id DESC);
CREATE INDEX audit_events_owner_newest ON audit_events (owner_id, at DESC, id DESC);
CREATE INDEX audit_events_key_newest ON audit_events (key_id, at DESC, id DESC) WHERE key_id IS NOT NULL;
CREATE INDEX audit_events_action_newest ON audit_events (action, at DESC, id DESC);
