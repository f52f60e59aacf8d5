-- The rollups the dashboard's overview reads: requests and token sums per UTC hour
-- ('YYYY-MM-DD HH') and per UTC day ('YYYY-MM-DD'), and (model, status, account, domain,
-- client key hash). The record writer adds each batch to both in the batch's own transaction;
-- retention trims them. A missing model, account or key is '' here (a primary key cannot hold
-- NULL), NULL in api_requests.
CREATE TABLE usage_hourly (
    hour                        TEXT    NOT NULL,
    model                       TEXT    NOT NULL,
    response_status             INTEGER NOT NULL,
    account_id                  TEXT    NOT NULL,
    domain                      TEXT    NOT NULL,
    api_key_hash                TEXT    NOT NULL,
    requests                    INTEGER NOT NULL,
    input_tokens                INTEGER NOT NULL,
    output_tokens               INTEGER NOT NULL,
    cache_creation_input_tokens INTEGER NOT NULL,
    cache_read_input_tokens     INTEGER NOT NULL,
    PRIMARY KEY (hour, model, response_status, account_id, domain, api_key_hash)
);

INSERT INTO usage_hourly
SELECT substr(timestamp, 1, 13), COALESCE(model, ''), response_status, COALESCE(account_id, ''),
       domain, COALESCE(api_key_hash, ''), COUNT(*), SUM(input_tokens), SUM(output_tokens),
       SUM(cache_creation_input_tokens), SUM(cache_read_input_tokens)
FROM api_requests
GROUP BY 1, 2, 3, 4, 5, 6;

-- The same per UTC day ('YYYY-MM-DD'), for windows of days.
CREATE TABLE usage_daily (
    day                         TEXT    NOT NULL,
    model                       TEXT    NOT NULL,
    response_status             INTEGER NOT NULL,
    account_id                  TEXT    NOT NULL,
    domain                      TEXT    NOT NULL,
    api_key_hash                TEXT    NOT NULL,
    requests                    INTEGER NOT NULL,
    input_tokens                INTEGER NOT NULL,
    output_tokens               INTEGER NOT NULL,
    cache_creation_input_tokens INTEGER NOT NULL,
    cache_read_input_tokens     INTEGER NOT NULL,
    PRIMARY KEY (day, model, response_status, account_id, domain, api_key_hash)
);

INSERT INTO usage_daily
SELECT substr(timestamp, 1, 10), COALESCE(model, ''), response_status, COALESCE(account_id, ''),
       domain, COALESCE(api_key_hash, ''), COUNT(*), SUM(input_tokens), SUM(output_tokens),
       SUM(cache_creation_input_tokens), SUM(cache_read_input_tokens)
FROM api_requests
GROUP BY 1, 2, 3, 4, 5, 6;
