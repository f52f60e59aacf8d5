-- Client keys with a lifecycle: created by `claude-nexus keys create`, rotated, revoked. Only
-- the salted hash of a key is kept (HMAC-SHA256 with API_KEY_SALT, hex, like api_key_hash),
-- and a display prefix (`cnp_live_Ab12`) to recognise it by. Timestamps are UTC text, as in
-- api_requests. A key is never deleted: revocation sets revoked_at.
CREATE TABLE client_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    account      TEXT NOT NULL,
    label        TEXT,
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT,
    rotated_from TEXT
);
CREATE INDEX idx_client_keys_account ON client_keys (account);

-- Which client key a request used ("file:<domain>" for a credential file's client_api_key).
ALTER TABLE api_requests ADD COLUMN client_key_id TEXT;
CREATE INDEX idx_api_requests_client_key_timestamp ON api_requests (client_key_id, timestamp);
