-- Per request, the subscription's plan windows as the response reported them
-- (anthropic-ratelimit-unified-* headers), so usage can be attributed to the client key
-- (api_key_hash) that spent it. Resets are RFC 3339 text; utilizations as sent (fractions).
ALTER TABLE api_requests ADD COLUMN ratelimit_unified_status TEXT;
ALTER TABLE api_requests ADD COLUMN ratelimit_unified_5h_utilization DOUBLE PRECISION;
ALTER TABLE api_requests ADD COLUMN ratelimit_unified_5h_reset TEXT;
ALTER TABLE api_requests ADD COLUMN ratelimit_unified_7d_utilization DOUBLE PRECISION;
ALTER TABLE api_requests ADD COLUMN ratelimit_unified_7d_reset TEXT;

-- For passthrough accounts: the salted hash (HMAC-SHA256 with API_KEY_SALT, like
-- api_key_hash) of the client's own upstream credential, for attribution. Never the token.
ALTER TABLE api_requests ADD COLUMN upstream_credential_hash TEXT;
