-- Which node issued each setup token ("hostname listen-address"), so that a node's restart revokes the link it
-- printed before, while other nodes' links keep working. NULL for tokens recorded by older versions. Setup tokens
-- also expire an hour after `created_at` (checked in the queries, not here).
ALTER TABLE setup_tokens ADD COLUMN issuer TEXT;
