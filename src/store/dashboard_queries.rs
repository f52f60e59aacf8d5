//! Read queries for the dashboard, in both dialects: totals and series for the overview, the
//! keyset-paginated request list and one request's detail.
//!
//! SQL is written once with `?` placeholders; values travel as [`Value`]s and are bound per
//! dialect (a time is the stored UTC text in SQLite, a `TIMESTAMPTZ` in PostgreSQL). The
//! only dialect-specific SQL is the time-bucket expression. Every value is a bound parameter.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;
use sqlx::Row;
use time::{OffsetDateTime, PrimitiveDateTime};
use utoipa::IntoParams;

use super::{Dialect, Store, StoreError, TIMESTAMP, as_u64};
use crate::conversations::Link;
use crate::keys::KeyHash;
use crate::record::Record;
use crate::usage::Usage;

/// Which requests a list, an export or a count covers. Empty fields do not filter. The
/// dashboard API reads it straight from the query string (`/api/requests`,
/// `/api/requests/export`), so these fields are its query parameters.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestFilter {
    pub account_id: Option<String>,
    pub domain: Option<String>,
    pub model: Option<String>,
    pub status: Option<u16>,
    pub streaming: Option<bool>,
    /// The client key's hash, as listed.
    pub api_key_hash: Option<String>,
    /// The client key's id: a `client_keys` id (`ck_…`), or `file:<domain>` for a credential
    /// file's own `client_api_key`.
    pub client_key_id: Option<String>,
    /// Inclusive start, ISO-8601 (RFC 3339).
    #[serde(default, deserialize_with = "rfc3339")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<OffsetDateTime>,
    /// Exclusive end, ISO-8601 (RFC 3339).
    #[serde(default, deserialize_with = "rfc3339")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
}

/// An RFC 3339 time (`time::serde::rfc3339::option`), whose error says what was expected.
fn rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    time::serde::rfc3339::option::deserialize(d).map_err(|e| {
        serde::de::Error::custom(format!(
            "expected RFC 3339, like 2025-01-31T09:00:00Z ({e})"
        ))
    })
}

/// Where a page starts: after the row with this (timestamp, request_id), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub timestamp: OffsetDateTime,
    pub request_id: String,
}

/// Requests and tokens for one (time bucket, model, status, account, domain, client key):
/// the overview's single pass over the window, which the API folds into its views.
#[derive(Debug, Clone)]
pub struct UsageGroup {
    /// UTC `YYYY-MM-DD HH` or `YYYY-MM-DD`.
    pub bucket: String,
    pub model: Option<String>,
    pub status: u16,
    pub account_id: Option<String>,
    pub domain: String,
    pub api_key_hash: Option<String>,
    pub requests: u64,
    pub usage: Usage,
}

/// Time bucket width for series; a bucket's key is UTC `YYYY-MM-DD HH` or `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

/// A count or a sum for one (key, domain, day), from the documented monitoring queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyCount {
    /// The account (token totals) or `None` (failed authentications).
    pub account_id: Option<String>,
    pub domain: String,
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub value: u64,
}

pub(super) const LIST_COLUMNS: &str = "request_id, timestamp, domain, account_id, method, path, \
     model, response_status, input_tokens, output_tokens, cache_creation_input_tokens, \
     cache_read_input_tokens, duration_ms, first_token_ms, response_streaming, api_key_hash, \
     client_key_id, error, current_message_hash, parent_message_hash, system_hash, \
     conversation_id, branch_id, CAST(message_count AS BIGINT) AS message_count, \
     parent_request_id, is_subtask, parent_task_request_id";

pub(super) const SUMS: &str = "COUNT(*) AS requests, \
     CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
     CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
     CAST(COALESCE(SUM(cache_creation_input_tokens), 0) AS BIGINT) AS cache_creation, \
     CAST(COALESCE(SUM(cache_read_input_tokens), 0) AS BIGINT) AS cache_read";

/// A bound value, converted to each dialect's type when bound.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Text(String),
    Int(i64),
    Bool(bool),
    Time(OffsetDateTime),
}

/// Runs `$sql` (with `?` placeholders) with `$values` bound, fetching with `$fetch`
/// (`fetch_all`, `fetch_optional`), on whichever pool the store has. The caller maps the
/// [`Fetched`] rows with functions generic over [`ReadRow`].
macro_rules! fetch {
    ($store:expr, $sql:expr, $values:expr, $fetch:ident) => {{
        let sql = sqlx::AssertSqlSafe($store.dialect().sql(&$sql).into_owned());
        match &$store.pool {
            super::Pool::Sqlite(pool) => {
                let mut q = sqlx::query(sql);
                for v in $values {
                    q = match v {
                        Value::Text(s) => q.bind(s.clone()),
                        Value::Int(n) => q.bind(*n),
                        Value::Bool(b) => q.bind(*b),
                        Value::Time(t) => q.bind(super::format_timestamp(*t)),
                    };
                }
                Fetched::Sqlite(q.$fetch(pool).await?)
            }
            super::Pool::Postgres(pool) => {
                let mut q = sqlx::query(sql);
                for v in $values {
                    q = match v {
                        Value::Text(s) => q.bind(s.clone()),
                        Value::Int(n) => q.bind(*n),
                        Value::Bool(b) => q.bind(*b),
                        Value::Time(t) => q.bind(*t),
                    };
                }
                Fetched::Postgres(q.$fetch(pool).await?)
            }
        }
    }};
}

pub(super) use fetch;

pub(super) enum Fetched<S, P> {
    Sqlite(S),
    Postgres(P),
}

/// Reading a row the same way from either dialect: a timestamp is text in SQLite.
pub(super) trait ReadRow {
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn small_int(&self, column: &str) -> Result<i32, sqlx::Error>;
    fn boolean(&self, column: &str) -> Result<bool, sqlx::Error>;
    fn opt_bool(&self, column: &str) -> Result<Option<bool>, sqlx::Error>;
    fn time(&self, column: &str) -> Result<OffsetDateTime, sqlx::Error>;
}

macro_rules! read_row {
    ($row:ty, $time:expr) => {
        impl ReadRow for $row {
            fn text(&self, column: &str) -> Result<String, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(column)
            }
            fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(column)
            }
            fn small_int(&self, column: &str) -> Result<i32, sqlx::Error> {
                self.try_get(column)
            }
            fn boolean(&self, column: &str) -> Result<bool, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_bool(&self, column: &str) -> Result<Option<bool>, sqlx::Error> {
                self.try_get(column)
            }
            fn time(&self, column: &str) -> Result<OffsetDateTime, sqlx::Error> {
                $time(self, column)
            }
        }
    };
}

read_row!(sqlx::sqlite::SqliteRow, sqlite_time);
read_row!(sqlx::postgres::PgRow, postgres_time);

fn sqlite_time(row: &sqlx::sqlite::SqliteRow, column: &str) -> Result<OffsetDateTime, sqlx::Error> {
    let text: String = row.try_get(column)?;
    parse_stored_time(&text).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: format!("not a stored timestamp: {text:?}").into(),
    })
}

fn postgres_time(row: &sqlx::postgres::PgRow, column: &str) -> Result<OffsetDateTime, sqlx::Error> {
    row.try_get(column)
}

/// The SQLite text form (`YYYY-MM-DD HH:MM:SS.SSS`, UTC) back to a time.
fn parse_stored_time(text: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(text, TIMESTAMP)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

impl Store {
    /// A page of requests, newest first, after `cursor`.
    pub async fn list_requests(
        &self,
        filter: &RequestFilter,
        cursor: Option<&PageCursor>,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError> {
        let started = Instant::now();
        let mut sql = format!("SELECT {LIST_COLUMNS} FROM api_requests");
        let mut values = push_filter(&mut sql, filter);
        if let Some(c) = cursor {
            // The first bound is a plain range on the timestamp index; an OR alone would
            // make SQLite scan the table.
            sql.push_str(" AND timestamp <= ? AND (timestamp < ? OR request_id < ?)");
            values.push(Value::Time(c.timestamp));
            values.push(Value::Time(c.timestamp));
            values.push(Value::Text(c.request_id.clone()));
        }
        sql.push_str(" ORDER BY timestamp DESC, request_id DESC LIMIT ?");
        values.push(Value::Int(i64::from(limit)));
        let rows: Result<Vec<_>, sqlx::Error> = match fetch!(self, sql, &values, fetch_all) {
            Fetched::Sqlite(rows) => rows.iter().map(list_row).collect(),
            Fetched::Postgres(rows) => rows.iter().map(list_row).collect(),
        };
        self.note_duration("list_requests", started);
        rows.map_err(StoreError::from)
    }

    /// One request with bodies and stream events (opened with the data key when they are
    /// sealed, through [`Store::stored_bodies`]), or `None`.
    pub async fn request_detail(&self, request_id: &str) -> Result<Option<Record>, StoreError> {
        let started = Instant::now();
        let sql = format!(
            "SELECT {LIST_COLUMNS}, request_type, client_ip, upstream_request_id \
             FROM api_requests WHERE request_id = ?"
        );
        let id = [Value::Text(request_id.to_string())];
        let detail = match fetch!(self, sql, &id, fetch_optional) {
            Fetched::Sqlite(row) => row.as_ref().map(detail_row).transpose()?,
            Fetched::Postgres(row) => row.as_ref().map(detail_row).transpose()?,
        };
        let Some(mut detail) = detail else {
            return Ok(None);
        };
        let sql = "SELECT timestamp FROM streaming_chunks WHERE request_id = ? \
                   ORDER BY chunk_index";
        let arrivals: Vec<OffsetDateTime> = match fetch!(self, sql, &id, fetch_all) {
            Fetched::Sqlite(rows) => rows
                .iter()
                .map(|r| r.time("timestamp"))
                .collect::<Result<_, _>>()?,
            Fetched::Postgres(rows) => rows
                .iter()
                .map(|r| r.time("timestamp"))
                .collect::<Result<_, _>>()?,
        };
        if let Some(bodies) = self.stored_bodies(request_id).await? {
            detail.request_body = bodies.request_body.map(Bytes::from);
            detail.response_body = bodies.response_body.map(Bytes::from);
            let began = detail.timestamp;
            detail.chunks = arrivals
                .into_iter()
                .zip(bodies.chunks)
                .map(|(at, (_, data))| (as_u64((at - began).whole_milliseconds() as i64), data))
                .collect();
        }
        self.note_duration("request_detail", started);
        Ok(Some(detail))
    }

    /// Requests and tokens since `since` per (time bucket, model, status, account, domain,
    /// client key): the overview folds these into its series and breakdowns. Whole days come
    /// from `usage_daily` (day buckets), whole hours from `usage_hourly`, and only the part of
    /// the first hour after `since` from `api_requests`, so the answer is exact and costs at
    /// most an hour of rows plus days or hours × key combinations. A group may come from
    /// more than one source: sum them.
    pub async fn usage_groups(
        &self,
        bucket: Bucket,
        since: OffsetDateTime,
    ) -> Result<Vec<UsageGroup>, StoreError> {
        let started = Instant::now();
        let first_hour = next_whole(since, time::Duration::HOUR);
        let hour = |at| Value::Text(super::rollup::hour_of(at));
        let mut groups = match bucket {
            Bucket::Hour => {
                self.rollup_groups("usage_hourly", "hour", "hour", &[hour(first_hour)])
                    .await?
            }
            Bucket::Day => {
                let first_day = next_whole(since, time::Duration::DAY);
                let day = Value::Text(super::rollup::day_of(first_day));
                let mut groups = self
                    .rollup_groups("usage_daily", "day", "day", &[day])
                    .await?;
                let hours = [hour(first_hour), hour(first_day)];
                groups.extend(
                    self.rollup_groups("usage_hourly", "hour", "substr(hour, 1, 10)", &hours)
                        .await?,
                );
                groups
            }
        };
        if since < first_hour {
            let key = match (self.dialect(), bucket) {
                // The stored text's prefix is the bucket.
                (Dialect::Sqlite, Bucket::Hour) => "substr(timestamp, 1, 13)",
                (Dialect::Sqlite, Bucket::Day) => "substr(timestamp, 1, 10)",
                (Dialect::Postgres, Bucket::Hour) => {
                    "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')"
                }
                (Dialect::Postgres, Bucket::Day) => {
                    "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
                }
            };
            let sql = format!(
                "SELECT {key} AS bucket, model, response_status, account_id, domain, \
                 api_key_hash, {SUMS} FROM api_requests WHERE timestamp >= ? AND timestamp < ? \
                 GROUP BY 1, 2, 3, 4, 5, 6"
            );
            let values = [Value::Time(since), Value::Time(first_hour)];
            groups.extend(self.fetch_usage_groups(&sql, &values).await?);
        }
        self.note_duration("usage_groups", started);
        Ok(groups)
    }

    /// Groups from a rollup `table` whose `period` is at least `bounds[0]` (and before
    /// `bounds[1]`, when given), with `bucket` as the bucket expression.
    async fn rollup_groups(
        &self,
        table: &str,
        period: &str,
        bucket: &str,
        bounds: &[Value],
    ) -> Result<Vec<UsageGroup>, StoreError> {
        let until = if bounds.len() > 1 {
            format!(" AND {period} < ?")
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT {bucket} AS bucket, NULLIF(model, '') AS model, response_status, \
             NULLIF(account_id, '') AS account_id, domain, \
             NULLIF(api_key_hash, '') AS api_key_hash, \
             CAST(SUM(requests) AS BIGINT) AS requests, \
             CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
             CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
             CAST(SUM(cache_creation_input_tokens) AS BIGINT) AS cache_creation, \
             CAST(SUM(cache_read_input_tokens) AS BIGINT) AS cache_read \
             FROM {table} WHERE {period} >= ?{until} GROUP BY 1, 2, 3, 4, 5, 6"
        );
        self.fetch_usage_groups(&sql, bounds).await
    }

    async fn fetch_usage_groups(
        &self,
        sql: &str,
        values: &[Value],
    ) -> Result<Vec<UsageGroup>, StoreError> {
        let rows: Result<Vec<_>, sqlx::Error> = match fetch!(self, sql, values, fetch_all) {
            Fetched::Sqlite(rows) => rows.iter().map(usage_row).collect(),
            Fetched::Postgres(rows) => rows.iter().map(usage_row).collect(),
        };
        rows.map_err(StoreError::from)
    }

    /// Records a checked dashboard key: a login (either way) or a wrong bearer.
    pub async fn record_dashboard_login(
        &self,
        client_ip: IpAddr,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO dashboard_logins (timestamp, client_ip, succeeded) VALUES (?, ?, ?)";
        let values = [
            Value::Time(OffsetDateTime::now_utc()),
            Value::Text(client_ip.to_string()),
            Value::Bool(succeeded),
        ];
        fetch!(self, sql, &values, execute);
        Ok(())
    }

    /// Wrong dashboard keys (logins and bearers) since `since`.
    pub async fn failed_dashboard_logins(&self, since: OffsetDateTime) -> Result<u64, StoreError> {
        let sql = "SELECT COUNT(*) AS failed FROM dashboard_logins \
                   WHERE NOT succeeded AND timestamp >= ?";
        let failed = match fetch!(self, sql, &[Value::Time(since)], fetch_one) {
            Fetched::Sqlite(row) => row.int("failed")?,
            Fetched::Postgres(row) => row.int("failed")?,
        };
        Ok(as_u64(failed))
    }

    /// The security guide's "failed authentication" query: 401s per domain and day since
    /// `since`, newest day first.
    pub async fn failed_auth_by_day(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<DailyCount>, StoreError> {
        let sql = format!(
            "SELECT CAST(NULL AS TEXT) AS account_id, domain, {day} AS day, COUNT(*) AS value \
             FROM api_requests WHERE response_status = 401 AND timestamp >= ? \
             GROUP BY domain, 3 ORDER BY 3 DESC, value DESC",
            day = self.day_expression()
        );
        self.daily("failed_auth_by_day", sql, since).await
    }

    /// The security guide's "token spikes" query: total tokens per account, domain and day
    /// since `since`, newest day first.
    pub async fn daily_tokens_by_account(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<DailyCount>, StoreError> {
        let sql = format!(
            "SELECT account_id, domain, {day} AS day, \
             CAST(COALESCE(SUM(total_tokens), 0) AS BIGINT) AS value FROM api_requests \
             WHERE account_id IS NOT NULL AND timestamp >= ? \
             GROUP BY account_id, domain, 3 ORDER BY 3 DESC, value DESC",
            day = self.day_expression()
        );
        self.daily("daily_tokens_by_account", sql, since).await
    }

    /// The UTC day of `timestamp` as `YYYY-MM-DD` text.
    fn day_expression(&self) -> &'static str {
        match self.dialect() {
            Dialect::Sqlite => "substr(timestamp, 1, 10)",
            Dialect::Postgres => "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        }
    }

    async fn daily(
        &self,
        name: &'static str,
        sql: String,
        since: OffsetDateTime,
    ) -> Result<Vec<DailyCount>, StoreError> {
        let started = Instant::now();
        let values = [Value::Time(since)];
        let rows: Result<Vec<_>, sqlx::Error> = match fetch!(self, sql, &values, fetch_all) {
            Fetched::Sqlite(rows) => rows.iter().map(daily_row).collect(),
            Fetched::Postgres(rows) => rows.iter().map(daily_row).collect(),
        };
        self.note_duration(name, started);
        rows.map_err(StoreError::from)
    }
}

/// Appends ` WHERE …` for `f` to `sql` and returns the values to bind, in order.
pub(super) fn push_filter(sql: &mut String, f: &RequestFilter) -> Vec<Value> {
    let mut values = Vec::new();
    sql.push_str(" WHERE 1 = 1");
    let text = [
        ("account_id", &f.account_id),
        ("domain", &f.domain),
        ("model", &f.model),
        ("api_key_hash", &f.api_key_hash),
        ("client_key_id", &f.client_key_id),
    ];
    for (column, value) in text {
        if let Some(v) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            values.push(Value::Text(v.clone()));
        }
    }
    if let Some(status) = f.status {
        sql.push_str(" AND response_status = ?");
        values.push(Value::Int(i64::from(status)));
    }
    if let Some(streaming) = f.streaming {
        sql.push_str(" AND response_streaming = ?");
        values.push(Value::Bool(streaming));
    }
    if let Some(since) = f.since {
        sql.push_str(" AND timestamp >= ?");
        values.push(Value::Time(since));
    }
    if let Some(until) = f.until {
        sql.push_str(" AND timestamp < ?");
        values.push(Value::Time(until));
    }
    values
}

/// A request as listed: the record's metadata and conversation link, no bodies.
pub(super) fn list_row(row: &impl ReadRow) -> Result<Record, sqlx::Error> {
    Ok(Record {
        request_id: row.text("request_id")?,
        timestamp: row.time("timestamp")?,
        domain: row.text("domain")?,
        account_id: row.opt_text("account_id")?,
        method: row.text("method")?,
        path: row.text("path")?,
        model: row.opt_text("model")?,
        status: u16::try_from(row.small_int("response_status")?).unwrap_or(0),
        usage: Usage {
            input_tokens: as_u64(row.int("input_tokens")?),
            output_tokens: as_u64(row.int("output_tokens")?),
            cache_creation_input_tokens: as_u64(row.int("cache_creation_input_tokens")?),
            cache_read_input_tokens: as_u64(row.int("cache_read_input_tokens")?),
        },
        duration_ms: row.opt_int("duration_ms")?.map(as_u64),
        first_token_ms: row.opt_int("first_token_ms")?.map(as_u64),
        streaming: row.boolean("response_streaming")?,
        // Rows of the original proxy may hold other text: not a hash of ours, so none.
        api_key_hash: row
            .opt_text("api_key_hash")?
            .as_deref()
            .and_then(KeyHash::from_hex),
        client_key_id: row.opt_text("client_key_id")?,
        error: row.opt_text("error")?,
        link: link_of(row)?,
        ..Record::default()
    })
}

/// The conversation columns of a row, when it is linked.
pub(super) fn link_of(row: &impl ReadRow) -> Result<Option<Link>, sqlx::Error> {
    let (Some(conversation_id), Some(current_message_hash)) = (
        row.opt_text("conversation_id")?,
        row.opt_text("current_message_hash")?,
    ) else {
        return Ok(None);
    };
    let text = |column| Ok::<_, sqlx::Error>(row.opt_text(column)?.map(Arc::from));
    Ok(Some(Link {
        conversation_id: conversation_id.into(),
        branch_id: text("branch_id")?.unwrap_or_else(|| "main".into()),
        current_message_hash: current_message_hash.into(),
        parent_message_hash: text("parent_message_hash")?,
        system_hash: text("system_hash")?,
        message_count: row
            .opt_int("message_count")?
            .map_or(0, |n| u32::try_from(n).unwrap_or(0)),
        parent_request_id: text("parent_request_id")?,
        is_subtask: row.opt_bool("is_subtask")?.unwrap_or(false),
        parent_task_request_id: text("parent_task_request_id")?,
    }))
}

fn detail_row(row: &impl ReadRow) -> Result<Record, sqlx::Error> {
    Ok(Record {
        request_type: row.opt_text("request_type")?.map(Cow::Owned),
        client_ip: row.opt_text("client_ip")?.and_then(|ip| ip.parse().ok()),
        upstream_request_id: row.opt_text("upstream_request_id")?,
        ..list_row(row)?
    })
}

fn daily_row(row: &impl ReadRow) -> Result<DailyCount, sqlx::Error> {
    Ok(DailyCount {
        account_id: row.opt_text("account_id")?,
        domain: row.text("domain")?,
        day: row.text("day")?,
        value: as_u64(row.int("value")?),
    })
}

/// The first UTC hour or day (`unit`) that starts at or after `at`.
fn next_whole(at: OffsetDateTime, unit: time::Duration) -> OffsetDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    let hour = if unit == time::Duration::DAY {
        0
    } else {
        at.hour()
    };
    let floor = at.replace_time(time::Time::from_hms(hour, 0, 0).expect("valid hour"));
    if floor == at { floor } else { floor + unit }
}

fn usage_row(row: &impl ReadRow) -> Result<UsageGroup, sqlx::Error> {
    Ok(UsageGroup {
        bucket: row.text("bucket")?,
        model: row.opt_text("model")?,
        status: u16::try_from(row.small_int("response_status")?).unwrap_or(0),
        account_id: row.opt_text("account_id")?,
        domain: row.text("domain")?,
        api_key_hash: row.opt_text("api_key_hash")?,
        requests: as_u64(row.int("requests")?),
        usage: Usage {
            input_tokens: as_u64(row.int("input_tokens")?),
            output_tokens: as_u64(row.int("output_tokens")?),
            cache_creation_input_tokens: as_u64(row.int("cache_creation")?),
            cache_read_input_tokens: as_u64(row.int("cache_read")?),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_hours_and_days_round_up() {
        use time::Duration;
        use time::macros::datetime;
        let next = next_whole(datetime!(2026-11-28 23:00:00.001 UTC), Duration::HOUR);
        assert_eq!(next, datetime!(2026-11-29 00:00 UTC));
        let exact = datetime!(2026-11-28 14:00 UTC);
        assert_eq!(next_whole(exact, Duration::HOUR), exact);
        assert_eq!(
            next_whole(exact, Duration::DAY),
            datetime!(2026-11-29 00:00 UTC)
        );
        let midnight = datetime!(2026-11-29 00:00 UTC);
        assert_eq!(next_whole(midnight, Duration::DAY), midnight);
        let east = datetime!(2026-11-29 01:30 +02:00);
        assert_eq!(next_whole(east, Duration::DAY), midnight);
    }

    #[test]
    fn stored_times_round_trip() {
        let at = time::macros::datetime!(2026-11-28 14:03:07.123 UTC);
        assert_eq!(
            parse_stored_time(&super::super::format_timestamp(at)),
            Some(at)
        );
        assert_eq!(parse_stored_time("yesterday"), None);
    }

    #[test]
    fn filters_bind_every_value() {
        let mut sql = String::from("SELECT 1 FROM api_requests");
        let values = push_filter(
            &mut sql,
            &RequestFilter {
                model: Some("m'; DROP TABLE api_requests; --".into()),
                status: Some(429),
                streaming: Some(true),
                ..RequestFilter::default()
            },
        );
        assert_eq!(sql.matches('?').count(), values.len());
        assert!(!sql.contains("DROP"));
        assert_eq!(
            Dialect::Postgres.sql(&sql),
            "SELECT 1 FROM api_requests WHERE 1 = 1 AND model = $1 AND response_status = $2 \
             AND response_streaming = $3"
        );
    }
}
