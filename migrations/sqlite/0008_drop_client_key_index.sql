-- Every record wrote one more B-tree entry for this index, which served a single query: when a
-- credential file's client key was last used. That query now looks the key up by its salted
-- hash through idx_api_requests_key_timestamp (api_key_hash, timestamp), which also answers
-- for the current key rather than for any key the file ever held.
DROP INDEX idx_api_requests_client_key_timestamp;
