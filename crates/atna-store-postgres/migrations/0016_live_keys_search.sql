-- An owner's live keys, newest first, with their names: a search by name (`lower(name) LIKE '%…%'`, which no B-tree
-- can seek) reads the names from this index instead of fetching every key's row, and reads rows only for the matches.
-- It replaces api_keys_live_newest (the same key columns), so the listing's keyset cursor is still a range on it.
CREATE INDEX api_keys_live_search ON api_keys (owner_id, created_at DESC, id DESC) INCLUDE (name) WHERE status <> 'revoked';
DROP INDEX api_keys_live_newest;
