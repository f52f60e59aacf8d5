//! The conversation columns' SQL, both dialects: what the linker's index starts from and asks
//! for, the relink's pages and updates, and the dashboard's conversation list and tree.

use std::time::Instant;

use time::OffsetDateTime;

use super::dashboard_queries::{
    Fetched, LIST_COLUMNS, ReadRow, SUMS, Value, fetch, link_of, list_row, push_filter,
};
use super::{Pool, Store, StoreError, as_u64, placeholders};
use crate::conversations::{Hash, Known, Link, Marker, MarkerKind};
use crate::record::Record;
use crate::store::RequestFilter;
use crate::usage::Usage;

const LINK_COLUMNS: &str = "request_id, timestamp, domain, account_id, current_message_hash, \
     parent_message_hash, system_hash, conversation_id, branch_id, \
     CAST(message_count AS BIGINT) AS message_count, \
     parent_request_id, is_subtask, parent_task_request_id";

fn known_row(row: &impl ReadRow) -> Result<Option<Known>, sqlx::Error> {
    let Some(link) = link_of(row)? else {
        return Ok(None);
    };
    let Some(hash) = Hash::from_hex(&link.current_message_hash) else {
        return Ok(None);
    };
    Ok(Some(Known {
        request_id: row.text("request_id")?,
        at: row.time("timestamp")?,
        domain: row.text("domain")?,
        account_id: row.opt_text("account_id")?,
        hash,
        link,
    }))
}

/// The rows `read` makes something of (a row it cannot read as one is left out).
fn kept_rows<R: ReadRow, T>(
    rows: &[R],
    read: impl Fn(&R) -> Result<Option<T>, sqlx::Error>,
) -> Result<Vec<T>, sqlx::Error> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.extend(read(row)?);
    }
    Ok(out)
}

/// One conversation's totals over the rows a filter selects.
#[derive(Debug, Clone)]
pub struct ConversationRow {
    pub conversation_id: String,
    pub domain: String,
    pub account_id: Option<String>,
    pub first_at: OffsetDateTime,
    pub last_at: OffsetDateTime,
    pub requests: u64,
    pub failed: u64,
    pub usage: Usage,
    pub duration_ms: u64,
    pub branches: u64,
    pub subtasks: u64,
    pub compactions: u64,
}

/// How the conversation list is ordered (newest or largest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationSort {
    LastActivity,
    Tokens,
}

/// Where a conversation page starts: after the conversation with this sort key and id.
#[derive(Debug, Clone, PartialEq)]
pub enum ConversationCursor {
    LastActivity(OffsetDateTime, String),
    Tokens(i64, String),
}

fn marker_row(r: &impl ReadRow) -> Result<Option<Marker>, sqlx::Error> {
    let (Some(kind), Some(digest)) = (
        MarkerKind::parse(&r.text("kind")?),
        Hash::from_hex(&r.text("digest")?),
    ) else {
        return Ok(None);
    };
    Ok(Some(Marker {
        kind,
        digest,
        request_id: r.text("request_id")?,
        domain: r.text("domain")?,
        conversation_id: r.text("conversation_id")?,
        at: r.time("timestamp")?,
    }))
}

const MARKER_COLUMNS: &str = "digest, kind, request_id, domain, conversation_id, timestamp";

impl Store {
    /// Keeps markers (a marker already stored is left as it is).
    pub async fn insert_markers(&self, markers: &[Marker]) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO conversation_markers ({MARKER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING"
        );
        for m in markers {
            let values = [
                Value::Text(m.digest.hex()),
                Value::Text(m.kind.as_str().into()),
                Value::Text(m.request_id.clone()),
                Value::Text(m.domain.clone()),
                Value::Text(m.conversation_id.clone()),
                Value::Time(m.at),
            ];
            fetch!(self, sql, &values, execute);
        }
        Ok(())
    }

    /// The markers with one of these digests.
    pub async fn markers_with(&self, digests: &[Hash]) -> Result<Vec<Marker>, StoreError> {
        let mut out = Vec::new();
        for part in digests.chunks(200) {
            let marks = placeholders(part.len());
            let sql = format!(
                "SELECT {MARKER_COLUMNS} FROM conversation_markers WHERE digest IN ({marks})"
            );
            let values: Vec<Value> = part.iter().map(|h| Value::Text(h.hex())).collect();
            out.extend(match fetch!(self, sql, &values, fetch_all) {
                Fetched::Sqlite(rows) => kept_rows(&rows, marker_row)?,
                Fetched::Postgres(rows) => kept_rows(&rows, marker_row)?,
            });
        }
        Ok(out)
    }

    /// The markers from `since` on.
    pub async fn markers_since(&self, since: OffsetDateTime) -> Result<Vec<Marker>, StoreError> {
        let sql = format!(
            "SELECT {MARKER_COLUMNS} FROM conversation_markers WHERE timestamp >= ? ORDER BY timestamp"
        );
        let values = [Value::Time(since)];
        Ok(match fetch!(self, sql, &values, fetch_all) {
            Fetched::Sqlite(rows) => kept_rows(&rows, marker_row)?,
            Fetched::Postgres(rows) => kept_rows(&rows, marker_row)?,
        })
    }

    /// Deletes the markers older than `cutoff`.
    pub async fn delete_markers_before(&self, cutoff: OffsetDateTime) -> Result<(), StoreError> {
        let values = [Value::Time(cutoff)];
        fetch!(
            self,
            "DELETE FROM conversation_markers WHERE timestamp < ?",
            &values,
            execute
        );
        Ok(())
    }

    /// The linked requests of the last `since`, the newest `limit` of them, oldest first: what
    /// the linker's index starts from.
    pub async fn linked_since(
        &self,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Known>, StoreError> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM api_requests WHERE timestamp >= ? \
             AND conversation_id IS NOT NULL ORDER BY timestamp DESC LIMIT ?"
        );
        let values = [Value::Time(since), Value::Int(i64::from(limit))];
        let mut known = match fetch!(self, sql, &values, fetch_all) {
            Fetched::Sqlite(rows) => kept_rows(&rows, known_row)?,
            Fetched::Postgres(rows) => kept_rows(&rows, known_row)?,
        };
        known.reverse();
        Ok(known)
    }

    /// The linked requests whose messages hash to one of `hashes`, oldest first.
    pub async fn linked_by_hash(&self, hashes: &[Hash]) -> Result<Vec<Known>, StoreError> {
        let mut out = Vec::new();
        for part in hashes.chunks(200) {
            let marks = placeholders(part.len());
            let sql = format!(
                "SELECT {LINK_COLUMNS} FROM api_requests WHERE current_message_hash IN ({marks}) \
                 AND conversation_id IS NOT NULL ORDER BY timestamp"
            );
            let values: Vec<Value> = part.iter().map(|h| Value::Text(h.hex())).collect();
            out.extend(match fetch!(self, sql, &values, fetch_all) {
                Fetched::Sqlite(rows) => kept_rows(&rows, known_row)?,
                Fetched::Postgres(rows) => kept_rows(&rows, known_row)?,
            });
        }
        out.sort_by_key(|k| k.at);
        Ok(out)
    }

    /// Sets (or clears) the conversation columns of existing rows, in one transaction.
    pub async fn set_links(&self, links: &[(String, Option<Link>)]) -> Result<(), StoreError> {
        let sql = self.dialect().sql(
            "UPDATE api_requests SET current_message_hash = ?, parent_message_hash = ?, \
             system_hash = ?, conversation_id = ?, branch_id = ?, message_count = ?, \
             parent_request_id = ?, is_subtask = ?, parent_task_request_id = ? \
             WHERE request_id = ?",
        );
        let sql = sql.into_owned();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for (request_id, link) in links {
                let l = link.as_ref();
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(l.map(|l| &*l.current_message_hash))
                    .bind(l.and_then(|l| l.parent_message_hash.as_deref()))
                    .bind(l.and_then(|l| l.system_hash.as_deref()))
                    .bind(l.map(|l| &*l.conversation_id))
                    .bind(l.map(|l| &*l.branch_id))
                    .bind(l.map(|l| i64::from(l.message_count)))
                    .bind(l.and_then(|l| l.parent_request_id.as_deref()))
                    .bind(l.map(|l| l.is_subtask))
                    .bind(l.and_then(|l| l.parent_task_request_id.as_deref()))
                    .bind(request_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Messages API requests from `since` on, oldest first, after `after` (time, id): the
    /// relink's pages, without bodies (see [`Store::stored_bodies`]).
    pub async fn inference_page(
        &self,
        since: Option<OffsetDateTime>,
        after: Option<(OffsetDateTime, String)>,
        limit: u32,
    ) -> Result<Vec<Record>, StoreError> {
        let mut sql = format!(
            "SELECT {LIST_COLUMNS} FROM api_requests WHERE method = 'POST' AND path = '/v1/messages'"
        );
        let mut values = Vec::new();
        if let Some(since) = since {
            sql.push_str(" AND timestamp >= ?");
            values.push(Value::Time(since));
        }
        if let Some((at, id)) = after {
            sql.push_str(" AND timestamp >= ? AND (timestamp > ? OR request_id > ?)");
            values.extend([Value::Time(at), Value::Time(at), Value::Text(id)]);
        }
        sql.push_str(" ORDER BY timestamp, request_id LIMIT ?");
        values.push(Value::Int(i64::from(limit)));
        let rows: Result<Vec<Record>, sqlx::Error> = match fetch!(self, sql, &values, fetch_all) {
            Fetched::Sqlite(rows) => rows.iter().map(list_row).collect(),
            Fetched::Postgres(rows) => rows.iter().map(list_row).collect(),
        };
        Ok(rows?)
    }

    /// A page of conversations with their totals over the rows `filter` selects.
    pub async fn list_conversations(
        &self,
        filter: &RequestFilter,
        sort: ConversationSort,
        cursor: Option<&ConversationCursor>,
        limit: u32,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        let started = Instant::now();
        let mut sql = format!(
            "SELECT conversation_id, MIN(domain) AS domain, MIN(account_id) AS account_id, \
             MIN(timestamp) AS first_at, MAX(timestamp) AS last_at, {SUMS}, \
             CAST(COALESCE(SUM(input_tokens + output_tokens + cache_creation_input_tokens \
                 + cache_read_input_tokens), 0) AS BIGINT) AS tokens, \
             CAST(SUM(CASE WHEN response_status >= 400 THEN 1 ELSE 0 END) AS BIGINT) AS failed, \
             CAST(COALESCE(SUM(duration_ms), 0) AS BIGINT) AS duration, \
             COUNT(DISTINCT branch_id) AS branches, \
             COUNT(DISTINCT CASE WHEN branch_id LIKE 'subtask\\_%' ESCAPE '\\' THEN branch_id END) AS subtasks, \
             COUNT(DISTINCT CASE WHEN branch_id LIKE 'compact\\_%' ESCAPE '\\' THEN branch_id END) AS compactions \
             FROM api_requests"
        );
        let mut values = push_filter(&mut sql, filter);
        sql.push_str(" AND conversation_id IS NOT NULL GROUP BY conversation_id");
        let key = match sort {
            ConversationSort::LastActivity => "MAX(timestamp)",
            ConversationSort::Tokens => {
                "CAST(COALESCE(SUM(input_tokens + output_tokens + cache_creation_input_tokens \
                 + cache_read_input_tokens), 0) AS BIGINT)"
            }
        };
        match cursor {
            Some(ConversationCursor::LastActivity(at, id)) => {
                sql.push_str(&format!(
                    " HAVING {key} < ? OR ({key} = ? AND conversation_id < ?)"
                ));
                values.extend([Value::Time(*at), Value::Time(*at), Value::Text(id.clone())]);
            }
            Some(ConversationCursor::Tokens(tokens, id)) => {
                sql.push_str(&format!(
                    " HAVING {key} < ? OR ({key} = ? AND conversation_id < ?)"
                ));
                values.extend([
                    Value::Int(*tokens),
                    Value::Int(*tokens),
                    Value::Text(id.clone()),
                ]);
            }
            None => {}
        }
        sql.push_str(&format!(
            " ORDER BY {key} DESC, conversation_id DESC LIMIT ?"
        ));
        values.push(Value::Int(i64::from(limit)));
        let rows: Result<Vec<_>, sqlx::Error> = match fetch!(self, sql, &values, fetch_all) {
            Fetched::Sqlite(rows) => rows.iter().map(conversation_row).collect(),
            Fetched::Postgres(rows) => rows.iter().map(conversation_row).collect(),
        };
        self.note_duration("list_conversations", started);
        Ok(rows?)
    }

    /// Tokens by model of each of `ids` (for their estimated cost and model list).
    pub async fn conversation_models(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, Option<String>, Usage)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = placeholders(ids.len());
        let sql = format!(
            "SELECT conversation_id, model, {SUMS} FROM api_requests \
             WHERE conversation_id IN ({marks}) GROUP BY conversation_id, model"
        );
        let values: Vec<Value> = ids.iter().cloned().map(Value::Text).collect();
        fn row(r: &impl ReadRow) -> Result<(String, Option<String>, Usage), sqlx::Error> {
            Ok((r.text("conversation_id")?, r.opt_text("model")?, usage(r)?))
        }
        let rows: Result<Vec<_>, sqlx::Error> = match fetch!(self, sql, &values, fetch_all) {
            Fetched::Sqlite(rows) => rows.iter().map(row).collect(),
            Fetched::Postgres(rows) => rows.iter().map(row).collect(),
        };
        Ok(rows?)
    }

    /// The first request of each of `ids` (the one that started it).
    pub async fn conversation_roots(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = placeholders(ids.len());
        let sql = format!(
            "SELECT conversation_id, request_id FROM api_requests \
             WHERE conversation_id IN ({marks}) AND parent_request_id IS NULL ORDER BY timestamp"
        );
        let values: Vec<Value> = ids.iter().cloned().map(Value::Text).collect();
        fn row(r: &impl ReadRow) -> Result<(String, String), sqlx::Error> {
            Ok((r.text("conversation_id")?, r.text("request_id")?))
        }
        let rows: Result<Vec<_>, sqlx::Error> = match fetch!(self, sql, &values, fetch_all) {
            Fetched::Sqlite(rows) => rows.iter().map(row).collect(),
            Fetched::Postgres(rows) => rows.iter().map(row).collect(),
        };
        Ok(rows?)
    }

    /// A conversation's requests in time order (no bodies); empty when there is none.
    pub async fn conversation_requests(&self, id: &str) -> Result<Vec<Record>, StoreError> {
        let started = Instant::now();
        let sql = format!(
            "SELECT {LIST_COLUMNS} FROM api_requests WHERE conversation_id = ? \
             ORDER BY timestamp, request_id LIMIT 10000"
        );
        let values = [Value::Text(id.to_string())];
        let rows: Result<Vec<Record>, sqlx::Error> = match fetch!(self, sql, &values, fetch_all) {
            Fetched::Sqlite(rows) => rows.iter().map(list_row).collect(),
            Fetched::Postgres(rows) => rows.iter().map(list_row).collect(),
        };
        self.note_duration("conversation_requests", started);
        Ok(rows?)
    }
}

fn usage(r: &impl ReadRow) -> Result<Usage, sqlx::Error> {
    Ok(Usage {
        input_tokens: as_u64(r.int("input_tokens")?),
        output_tokens: as_u64(r.int("output_tokens")?),
        cache_creation_input_tokens: as_u64(r.int("cache_creation")?),
        cache_read_input_tokens: as_u64(r.int("cache_read")?),
    })
}

fn conversation_row(r: &impl ReadRow) -> Result<ConversationRow, sqlx::Error> {
    Ok(ConversationRow {
        conversation_id: r.text("conversation_id")?,
        domain: r.text("domain")?,
        account_id: r.opt_text("account_id")?,
        first_at: r.time("first_at")?,
        last_at: r.time("last_at")?,
        requests: as_u64(r.int("requests")?),
        failed: as_u64(r.int("failed")?),
        usage: usage(r)?,
        duration_ms: as_u64(r.int("duration")?),
        branches: as_u64(r.int("branches")?),
        subtasks: as_u64(r.int("subtasks")?),
        compactions: as_u64(r.int("compactions")?),
    })
}
