-- Conversations: each Messages API request linked to the session it continues, with the
-- original Claude Nexus Proxy's column names (conversation_id as text here, a UUID's text;
-- branch_id 'main', 'branch_<UTC yyyymmddHHMMSS>', 'compact_<HHMMSS>' or 'subtask_<n>').
-- NULL on requests that are not linked (not inferences, or rows written before this).
ALTER TABLE api_requests ADD COLUMN current_message_hash TEXT;
ALTER TABLE api_requests ADD COLUMN parent_message_hash TEXT;
ALTER TABLE api_requests ADD COLUMN system_hash TEXT;
ALTER TABLE api_requests ADD COLUMN conversation_id TEXT;
ALTER TABLE api_requests ADD COLUMN branch_id TEXT;
ALTER TABLE api_requests ADD COLUMN message_count INTEGER;
ALTER TABLE api_requests ADD COLUMN parent_request_id TEXT;
ALTER TABLE api_requests ADD COLUMN is_subtask BOOLEAN;
ALTER TABLE api_requests ADD COLUMN parent_task_request_id TEXT;

-- A conversation's requests in order (its tree, its totals).
CREATE INDEX idx_api_requests_conversation ON api_requests (conversation_id, timestamp)
    WHERE conversation_id IS NOT NULL;
-- The linker's lookup of a prefix it does not hold in memory (another instance's request).
CREATE INDEX idx_api_requests_message_hash ON api_requests (current_message_hash)
    WHERE current_message_hash IS NOT NULL;

-- What a later request starts from without continuing the messages: a response's Task call
-- prompt (a sub-agent's first request) or the summary a summarisation's answer begins with (a
-- compaction's continuation), as digests (never the text), kept for other instances and the
-- next start. Deleted with the retention of their requests, after 7 days at most.
CREATE TABLE conversation_markers (
    digest          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    domain          TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    timestamp       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (digest, request_id)
);
CREATE INDEX idx_conversation_markers_timestamp ON conversation_markers (timestamp);
