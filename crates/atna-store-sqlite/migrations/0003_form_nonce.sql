-- The dashboard form that created a key, so that sending one form twice (a reload, a double click, a retry through
-- another node) creates one key. NULL for keys made through the API or the CLI; NULLs never collide.
ALTER TABLE api_keys ADD COLUMN form_nonce TEXT;
CREATE UNIQUE INDEX api_keys_form_nonce ON api_keys (owner_id, form_nonce);
