-- Dashboard logins that checked a key, failed or not (refusals of a rate-limited address are
-- not checks and are not stored): when, from where. The security checklist counts the failures
-- of the last 24 hours; retention deletes rows older than RETENTION_DAYS.
CREATE TABLE dashboard_logins (
    id        BIGSERIAL   PRIMARY KEY,
    timestamp TIMESTAMPTZ NOT NULL,
    client_ip TEXT        NOT NULL,
    succeeded BOOLEAN     NOT NULL
);
CREATE INDEX idx_dashboard_logins_timestamp ON dashboard_logins (timestamp);
