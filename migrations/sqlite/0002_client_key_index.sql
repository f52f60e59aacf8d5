-- "Which key did this, and when": usage per client key over time.
CREATE INDEX idx_api_requests_key_timestamp ON api_requests (api_key_hash, timestamp);
