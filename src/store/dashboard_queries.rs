//! Read queries for the dashboard: totals and series for the overview, the keyset-paginated
//! request list and one request's detail. SQLite only for now; kept apart from the writer's
//! queries so that the two-dialect store can take them over as a unit.
//!
//! Timestamps are the stored UTC text (`YYYY-MM-DD HH:MM:SS.SSS`), which sorts like time,
//! so ranges and the keyset compare text. Every value is a bound parameter.

use std::time::Instant;

use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite};

use super::{Store, StoreError, as_u64};
use crate::usage::Usage;

/// Which requests a list, an export or a count covers. Empty fields do not filter.
#[derive(Debug, Default, Clone)]
pub struct RequestFilter {
    pub account_id: Option<String>,
    pub domain: Option<String>,
    pub model: Option<String>,
    pub status: Option<u16>,
    pub streaming: Option<bool>,
    pub api_key_hash: Option<String>,
    /// Inclusive lower bound, stored timestamp text.
    pub since: Option<String>,
    /// Exclusive upper bound, stored timestamp text.
    pub until: Option<String>,
}

/// Where a page starts: after the row with this (timestamp, request_id), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub timestamp: String,
    pub request_id: String,
}

/// One row of the request list (no bodies).
#[derive(Debug, Clone)]
pub struct RequestListRow {
    pub request_id: String,
    pub timestamp: String,
    pub domain: String,
    pub account_id: Option<String>,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub status: u16,
    pub usage: Usage,
    pub duration_ms: Option<u64>,
    pub first_token_ms: Option<u64>,
    pub streaming: bool,
    pub api_key_hash: Option<String>,
    pub error: Option<String>,
}

/// One request with its stored bodies and SSE events.
#[derive(Debug, Clone)]
pub struct RequestDetailRow {
    pub row: RequestListRow,
    pub request_type: Option<String>,
    pub client_ip: Option<String>,
    pub upstream_request_id: Option<String>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
    /// (timestamp, data) in order.
    pub chunks: Vec<(String, String)>,
}

/// Requests and tokens for one group (a model, an account, a time bucket, a status).
#[derive(Debug, Clone, Default)]
pub struct GroupTotals {
    pub key: Option<String>,
    /// Second key: the domain for accounts, the model for time buckets.
    pub key2: Option<String>,
    pub requests: u64,
    pub errors: u64,
    pub usage: Usage,
}

/// Time bucket width for series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

const LIST_COLUMNS: &str = "request_id, timestamp, domain, account_id, method, path, model, \
     response_status, input_tokens, output_tokens, cache_creation_input_tokens, \
     cache_read_input_tokens, duration_ms, first_token_ms, response_streaming, api_key_hash, error";

const SUMS: &str = "COUNT(*) AS requests, \
     COALESCE(SUM(CASE WHEN response_status >= 400 THEN 1 ELSE 0 END), 0) AS errors, \
     COALESCE(SUM(input_tokens), 0) AS input_tokens, \
     COALESCE(SUM(output_tokens), 0) AS output_tokens, \
     COALESCE(SUM(cache_creation_input_tokens), 0) AS cache_creation, \
     COALESCE(SUM(cache_read_input_tokens), 0) AS cache_read";

impl Store {
    /// A page of requests, newest first, after `cursor`.
    pub async fn list_requests(
        &self,
        filter: &RequestFilter,
        cursor: Option<&PageCursor>,
        limit: u32,
    ) -> Result<Vec<RequestListRow>, StoreError> {
        let started = Instant::now();
        let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {LIST_COLUMNS} FROM api_requests"));
        push_filter(&mut q, filter);
        if let Some(c) = cursor {
            q.push(" AND (timestamp < ")
                .push_bind(c.timestamp.clone())
                .push(" OR (timestamp = ")
                .push_bind(c.timestamp.clone())
                .push(" AND request_id < ")
                .push_bind(c.request_id.clone())
                .push("))");
        }
        q.push(" ORDER BY timestamp DESC, request_id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        self.note_duration("list_requests", started);
        rows.iter().map(list_row).collect()
    }

    /// One request with bodies and stream chunks, or `None`.
    pub async fn request_detail(
        &self,
        request_id: &str,
    ) -> Result<Option<RequestDetailRow>, StoreError> {
        let started = Instant::now();
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {LIST_COLUMNS}, request_type, client_ip, upstream_request_id, request_body, \
             response_body FROM api_requests WHERE request_id = ?"
        )))
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let chunks = sqlx::query(
            "SELECT timestamp, data FROM streaming_chunks WHERE request_id = ? ORDER BY chunk_index",
        )
        .bind(request_id)
        .fetch_all(&self.pool)
        .await?;
        self.note_duration("request_detail", started);
        Ok(Some(RequestDetailRow {
            row: list_row(&row)?,
            request_type: row.try_get("request_type")?,
            client_ip: row.try_get("client_ip")?,
            upstream_request_id: row.try_get("upstream_request_id")?,
            request_body: row.try_get("request_body")?,
            response_body: row.try_get("response_body")?,
            chunks: chunks
                .iter()
                .map(|c| Ok((c.try_get("timestamp")?, c.try_get("data")?)))
                .collect::<Result<_, sqlx::Error>>()?,
        }))
    }

    /// Totals grouped by one column: `model`, `response_status` or (`account_id`, `domain`).
    pub async fn grouped_totals(
        &self,
        group: Grouping,
        since: &str,
    ) -> Result<Vec<GroupTotals>, StoreError> {
        let started = Instant::now();
        let (key, key2) = match group {
            Grouping::Model => ("model", "NULL"),
            Grouping::Status => ("CAST(response_status AS TEXT)", "NULL"),
            Grouping::Account => ("account_id", "domain"),
            Grouping::ClientKey => ("api_key_hash", "NULL"),
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {key} AS key, {key2} AS key2, {SUMS} FROM api_requests \
             WHERE timestamp >= ? GROUP BY 1, 2 ORDER BY requests DESC"
        )))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        self.note_duration("grouped_totals", started);
        rows.iter().map(group_row).collect()
    }

    /// Totals per (time bucket, model) since `since`, oldest first.
    pub async fn token_series(
        &self,
        bucket: Bucket,
        since: &str,
    ) -> Result<Vec<GroupTotals>, StoreError> {
        let started = Instant::now();
        // The stored text's prefix is the bucket: 'YYYY-MM-DD HH' or 'YYYY-MM-DD'.
        let width: i64 = match bucket {
            Bucket::Hour => 13,
            Bucket::Day => 10,
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT substr(timestamp, 1, ?) AS key, model AS key2, {SUMS} FROM api_requests \
             WHERE timestamp >= ? GROUP BY 1, 2 ORDER BY 1"
        )))
        .bind(width)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        self.note_duration("token_series", started);
        rows.iter().map(group_row).collect()
    }
}

/// What [`Store::grouped_totals`] groups by.
#[derive(Debug, Clone, Copy)]
pub enum Grouping {
    Model,
    Status,
    Account,
    ClientKey,
}

fn push_filter(q: &mut QueryBuilder<Sqlite>, f: &RequestFilter) {
    q.push(" WHERE 1 = 1");
    let text = [
        ("account_id", &f.account_id),
        ("domain", &f.domain),
        ("model", &f.model),
        ("api_key_hash", &f.api_key_hash),
    ];
    for (column, value) in text {
        if let Some(v) = value {
            q.push(format!(" AND {column} = ")).push_bind(v.clone());
        }
    }
    if let Some(status) = f.status {
        q.push(" AND response_status = ")
            .push_bind(i64::from(status));
    }
    if let Some(streaming) = f.streaming {
        q.push(" AND response_streaming = ").push_bind(streaming);
    }
    if let Some(since) = &f.since {
        q.push(" AND timestamp >= ").push_bind(since.clone());
    }
    if let Some(until) = &f.until {
        q.push(" AND timestamp < ").push_bind(until.clone());
    }
}

fn opt_u64(row: &SqliteRow, column: &str) -> Result<Option<u64>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(column)?.map(as_u64))
}

fn list_row(row: &SqliteRow) -> Result<RequestListRow, StoreError> {
    Ok(RequestListRow {
        request_id: row.try_get("request_id")?,
        timestamp: row.try_get("timestamp")?,
        domain: row.try_get("domain")?,
        account_id: row.try_get("account_id")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        model: row.try_get("model")?,
        status: u16::try_from(row.try_get::<i64, _>("response_status")?).unwrap_or(0),
        usage: Usage {
            input_tokens: as_u64(row.try_get("input_tokens")?),
            output_tokens: as_u64(row.try_get("output_tokens")?),
            cache_creation_input_tokens: as_u64(row.try_get("cache_creation_input_tokens")?),
            cache_read_input_tokens: as_u64(row.try_get("cache_read_input_tokens")?),
        },
        duration_ms: opt_u64(row, "duration_ms")?,
        first_token_ms: opt_u64(row, "first_token_ms")?,
        streaming: row.try_get("response_streaming")?,
        api_key_hash: row.try_get("api_key_hash")?,
        error: row.try_get("error")?,
    })
}

fn group_row(row: &SqliteRow) -> Result<GroupTotals, StoreError> {
    Ok(GroupTotals {
        key: row.try_get("key")?,
        key2: row.try_get("key2")?,
        requests: as_u64(row.try_get("requests")?),
        errors: as_u64(row.try_get("errors")?),
        usage: Usage {
            input_tokens: as_u64(row.try_get("input_tokens")?),
            output_tokens: as_u64(row.try_get("output_tokens")?),
            cache_creation_input_tokens: as_u64(row.try_get("cache_creation")?),
            cache_read_input_tokens: as_u64(row.try_get("cache_read")?),
        },
    })
}
