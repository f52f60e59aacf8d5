-- Per client key and per account limits and budgets (`claude-nexus limits`, the dashboard):
-- one row per subject, each limit NULL when not set. subject_kind is 'key' (subject: a
-- client_keys id, or 'file:<domain>' for a credential file's key) or 'account' (subject: the
-- account's domain). Servers reload the table every two seconds.
CREATE TABLE limits (
    subject_kind        TEXT    NOT NULL CHECK (subject_kind IN ('key', 'account')),
    subject             TEXT    NOT NULL,
    requests_per_minute INTEGER,
    tokens_per_hour     INTEGER,
    tokens_per_day      INTEGER,
    usd_per_day         REAL,
    usd_per_month       REAL,
    updated_at          TEXT    NOT NULL,
    PRIMARY KEY (subject_kind, subject)
);
