-- An owner's live keys, newest first, with their names: a search by name (`lower(name) LIKE '%…%'`, which no index
-- can seek) reads the names from this index instead of fetching every key's row, and reads rows only for the matches.
-- At 100,000 keys of one owner a search matching few of them went from ~300 ms to ~35 ms (bench/scale.sh). It
-- replaces api_keys_live_newest (the same columns first), so the listing's keyset cursor is still a range on it.
CREATE INDEX api_keys_live_search ON api_keys (owner_id, created_at DESC, id DESC, name) WHERE status <> 'revoked';
DROP INDEX api_keys_live_newest;
