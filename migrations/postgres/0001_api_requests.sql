-- Request records, with the original Claude Nexus Proxy's table and column names so that
-- its monitoring SQL runs unchanged. The same numbered migrations exist for SQLite.
CREATE TABLE api_requests (
    request_id                  TEXT        PRIMARY KEY NOT NULL,
    domain                      TEXT        NOT NULL,
    account_id                  TEXT,
    timestamp                   TIMESTAMPTZ NOT NULL,
    method                      TEXT        NOT NULL,
    path                        TEXT        NOT NULL,
    model                       TEXT,
    request_type                TEXT,
    response_status             INTEGER     NOT NULL,
    input_tokens                BIGINT      NOT NULL DEFAULT 0,
    output_tokens               BIGINT      NOT NULL DEFAULT 0,
    cache_creation_input_tokens BIGINT      NOT NULL DEFAULT 0,
    cache_read_input_tokens     BIGINT      NOT NULL DEFAULT 0,
    total_tokens                BIGINT      NOT NULL DEFAULT 0,
    duration_ms                 BIGINT,
    first_token_ms              BIGINT,
    response_streaming          BOOLEAN     NOT NULL DEFAULT FALSE,
    client_ip                   TEXT,
    api_key_hash                TEXT,
    error                       TEXT,
    upstream_request_id         TEXT,
    request_body                TEXT,
    response_body               TEXT
);

CREATE INDEX idx_api_requests_timestamp ON api_requests (timestamp);
CREATE INDEX idx_api_requests_domain_timestamp ON api_requests (domain, timestamp);
CREATE INDEX idx_api_requests_account_timestamp ON api_requests (account_id, timestamp);
CREATE INDEX idx_api_requests_status ON api_requests (response_status);

-- Each SSE event of a streamed response, in order (only with STORAGE_ENABLED=true).
CREATE TABLE streaming_chunks (
    id          BIGSERIAL   PRIMARY KEY,
    request_id  TEXT        NOT NULL REFERENCES api_requests (request_id) ON DELETE CASCADE,
    chunk_index INTEGER     NOT NULL,
    timestamp   TIMESTAMPTZ NOT NULL,
    data        TEXT        NOT NULL,
    UNIQUE (request_id, chunk_index)
);
