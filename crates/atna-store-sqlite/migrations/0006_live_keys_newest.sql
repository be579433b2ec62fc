-- An owner's live keys, newest first: the listing's keyset cursor `(created_at, id) < (…)` is a range on this index,
-- and deleted keys are not in it to be stepped over. Additive: older builds ignore it.
CREATE INDEX api_keys_live_newest ON api_keys (owner_id, created_at DESC, id DESC) WHERE status <> 'revoked';
