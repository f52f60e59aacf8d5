-- A request list filtered by status (the dashboard's Requests page, newest first) walks this
-- index in time order and stops at a page, rather than sorting every row with that status;
-- the documented failed-authentication query (401 per domain and day) reads it too.
DROP INDEX idx_api_requests_status;
CREATE INDEX idx_api_requests_status_timestamp ON api_requests (response_status, timestamp);
