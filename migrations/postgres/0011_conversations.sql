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
