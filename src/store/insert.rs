//! Batched inserts of records: multi-row `INSERT` statements in a few fixed shapes, per dialect.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::{AssertSqlSafe, Postgres, Sqlite};
use time::OffsetDateTime;

use bytes::Bytes;

use super::Dialect;
use crate::crypto::DataKey;
use crate::record::Record;

/// Rows per multi-row `INSERT`: a batch is split into statements of these sizes only, so a
/// handful of prepared statements serve every batch (each distinct row count would otherwise
/// be prepared and cached on its own). 64 rows × 39 columns stays far below SQLite's 32,766
/// and PostgreSQL's 65,535 parameters.
pub(super) const INSERT_SHAPES: [usize; 4] = [64, 16, 4, 1];

const REQUEST_COLUMNS: &str = "request_id, domain, account_id, timestamp, method, path, model, \
     request_type, response_status, input_tokens, output_tokens, cache_creation_input_tokens, \
     cache_read_input_tokens, total_tokens, duration_ms, first_token_ms, response_streaming, \
     client_ip, api_key_hash, error, upstream_request_id, request_body, response_body, \
     ratelimit_unified_status, ratelimit_unified_5h_utilization, ratelimit_unified_5h_reset, \
     ratelimit_unified_7d_utilization, ratelimit_unified_7d_reset, upstream_credential_hash, \
     client_key_id, current_message_hash, parent_message_hash, system_hash, conversation_id, \
     branch_id, message_count, parent_request_id, is_subtask, parent_task_request_id";
const CHUNK_COLUMNS: &str = "request_id, chunk_index, timestamp, data";

/// The SQLite multi-row `INSERT` texts of requests, one per [`INSERT_SHAPES`] (PostgreSQL
/// takes a batch's requests in one `UNNEST` statement instead).
static INSERT_REQUESTS: LazyLock<Vec<String>> =
    LazyLock::new(|| insert_statements(Dialect::Sqlite, "api_requests", REQUEST_COLUMNS));
/// The multi-row `INSERT` texts of stream chunks: `[dialect][shape]`.
static INSERT_CHUNKS: LazyLock<[Vec<String>; 2]> = LazyLock::new(|| {
    [Dialect::Sqlite, Dialect::Postgres]
        .map(|dialect| insert_statements(dialect, "streaming_chunks", CHUNK_COLUMNS))
});

/// SQLite: inserts `records` and their chunks inside `tx`, with multi-row `INSERT`s.
pub(super) async fn insert_sqlite(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    records: &[&Record],
    key: Option<&DataKey>,
) -> Result<(), sqlx::Error> {
    for rows in shaped_chunks(records) {
        let mut insert = sqlx::query(statement_for(&INSERT_REQUESTS, rows.len()));
        for &r in rows {
            let id = r.request_id.to_string();
            let body = |b: &Bytes| text(&protect(key, &id, lossy(b)));
            let rate = r.ratelimit.as_ref();
            insert = insert
                .bind(text(&id))
                .bind(text(&r.domain))
                .bind(r.account_id.as_deref().map(text))
                .bind(text(&super::format_timestamp(r.timestamp)))
                .bind(text(&r.method))
                .bind(text(&r.path))
                .bind(r.model.as_deref().map(text))
                .bind(r.request_type.as_deref().map(text))
                .bind(i32::from(r.status))
                .bind(as_i64(r.usage.input_tokens))
                .bind(as_i64(r.usage.output_tokens))
                .bind(as_i64(r.usage.cache_creation_input_tokens))
                .bind(as_i64(r.usage.cache_read_input_tokens))
                .bind(as_i64(r.usage.total()))
                .bind(r.duration_ms.map(as_i64))
                .bind(r.first_token_ms.map(as_i64))
                .bind(r.streaming)
                .bind(r.client_ip.map(|ip| text(&ip.to_string())))
                .bind(r.api_key_hash.map(|h| text(&h.to_string())))
                .bind(r.error.as_deref().map(text))
                .bind(r.upstream_request_id.as_deref().map(text))
                .bind(r.request_body.as_ref().map(body))
                .bind(r.response_body.as_ref().map(body))
                .bind(rate.and_then(|u| u.status.as_deref().map(text)))
                .bind(rate.and_then(|u| u.five_hour.utilization))
                .bind(rate.and_then(|u| u.five_hour.resets_at.as_deref().map(text)))
                .bind(rate.and_then(|u| u.seven_day.utilization))
                .bind(rate.and_then(|u| u.seven_day.resets_at.as_deref().map(text)))
                .bind(r.upstream_credential_hash.map(|h| text(&h.to_string())))
                .bind(r.client_key_id.as_deref().map(text));
            let link = r.link.as_ref();
            insert = insert
                // Shared with the link: bound without a copy.
                .bind(link.map(|l| l.current_message_hash.clone()))
                .bind(link.and_then(|l| l.parent_message_hash.clone()))
                .bind(link.and_then(|l| l.system_hash.clone()))
                .bind(link.map(|l| l.conversation_id.clone()))
                .bind(link.map(|l| l.branch_id.clone()))
                .bind(link.map(|l| i64::from(l.message_count)))
                .bind(link.and_then(|l| l.parent_request_id.clone()))
                .bind(link.map(|l| l.is_subtask))
                .bind(link.and_then(|l| l.parent_task_request_id.clone()));
        }
        insert.execute(&mut **tx).await?;
    }
    insert_sqlite_chunks(tx, records, key).await
}

/// Inserts the stream chunks of `records` inside `tx`. One function per dialect, same body.
macro_rules! chunks_fn {
    ($name:ident, $db:ty, $dialect:expr, $ts:expr, $text:expr) => {
        async fn $name(
            tx: &mut sqlx::Transaction<'static, $db>,
            records: &[&Record],
            key: Option<&DataKey>,
        ) -> Result<(), sqlx::Error> {
            let chunks = &INSERT_CHUNKS[$dialect as usize];
            for r in records.iter().filter(|r| !r.chunks.is_empty()) {
                let id = r.request_id.to_string();
                let mut index: i32 = 0;
                for rows in shaped_chunks(&r.chunks) {
                    let mut insert = sqlx::query(statement_for(chunks, rows.len()));
                    for (offset_ms, data) in rows {
                        let at = r.timestamp + Duration::from_millis(*offset_ms);
                        insert = insert
                            .bind(id.clone())
                            .bind(index)
                            .bind($ts(at))
                            .bind($text(protect(key, &id, Cow::Borrowed(data.as_str()))));
                        index += 1;
                    }
                    insert.execute(&mut **tx).await?;
                }
            }
            Ok(())
        }
    };
}

chunks_fn!(
    insert_sqlite_chunks,
    Sqlite,
    Dialect::Sqlite,
    super::format_timestamp,
    Cow::into_owned
);
/// PostgreSQL: all of a batch's requests in one statement, a column per array parameter
/// (`INSERT … SELECT * FROM UNNEST(…)`), rather than a few 64-row `INSERT`s of 1,920
/// parameters each: one round trip and one plan per batch, so the writer keeps pace with the
/// proxy. Chunks take the multi-row path.
static UNNEST_REQUESTS: LazyLock<String> = LazyLock::new(|| {
    const TYPES: [&str; 39] = [
        "text",
        "text",
        "text",
        "timestamptz",
        "text",
        "text",
        "text",
        "text",
        "int4",
        "int8",
        "int8",
        "int8",
        "int8",
        "int8",
        "int8",
        "int8",
        "bool",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "float8",
        "text",
        "float8",
        "text",
        "text",
        "text",
        // The conversation's columns.
        "text",
        "text",
        "text",
        "text",
        "text",
        "int8",
        "text",
        "bool",
        "text",
    ];
    let arrays: Vec<String> = TYPES
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect();
    format!(
        "INSERT INTO api_requests ({REQUEST_COLUMNS}) SELECT * FROM UNNEST({})",
        arrays.join(", ")
    )
});

pub(super) async fn insert_postgres(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    records: &[&Record],
    key: Option<&DataKey>,
) -> Result<(), sqlx::Error> {
    fn column<'r, T>(records: &[&'r Record], f: impl Fn(&'r Record) -> T) -> Vec<T> {
        records.iter().map(|&r| f(r)).collect()
    }
    let ids = column(records, |r| r.request_id.to_string());
    let body = |r: &Record, b: &Option<Bytes>| {
        b.as_ref()
            .map(|b| postgres_text(protect(key, &r.request_id.to_string(), lossy(b))))
    };
    fn rate(r: &Record) -> Option<&crate::ratelimit::UnifiedHeaders> {
        r.ratelimit.as_ref()
    }
    fn link(r: &Record) -> Option<&crate::conversations::Link> {
        r.link.as_ref()
    }
    sqlx::query(UNNEST_REQUESTS.as_str())
        .bind(&ids)
        .bind(column(records, |r| r.domain.clone()))
        .bind(column(records, |r| r.account_id.clone()))
        .bind(column(records, |r| r.timestamp))
        .bind(column(records, |r| r.method.clone()))
        .bind(column(records, |r| r.path.clone()))
        .bind(column(records, |r| {
            r.model.as_deref().map(|m| postgres_text(Cow::Borrowed(m)))
        }))
        .bind(column(records, |r| r.request_type.to_owned()))
        .bind(column(records, |r| i32::from(r.status)))
        .bind(column(records, |r| as_i64(r.usage.input_tokens)))
        .bind(column(records, |r| as_i64(r.usage.output_tokens)))
        .bind(column(records, |r| {
            as_i64(r.usage.cache_creation_input_tokens)
        }))
        .bind(column(records, |r| as_i64(r.usage.cache_read_input_tokens)))
        .bind(column(records, |r| as_i64(r.usage.total())))
        .bind(column(records, |r| r.duration_ms.map(as_i64)))
        .bind(column(records, |r| r.first_token_ms.map(as_i64)))
        .bind(column(records, |r| r.streaming))
        .bind(column(records, |r| r.client_ip.map(|ip| ip.to_string())))
        .bind(column(records, |r| r.api_key_hash.map(|h| h.to_string())))
        .bind(column(records, |r| r.error.clone()))
        .bind(column(records, |r| r.upstream_request_id.clone()))
        .bind(column(records, |r| body(r, &r.request_body)))
        .bind(column(records, |r| body(r, &r.response_body)))
        .bind(column(records, |r| rate(r).and_then(|u| u.status.clone())))
        .bind(column(records, |r| {
            rate(r).and_then(|u| u.five_hour.utilization)
        }))
        .bind(column(records, |r| {
            rate(r).and_then(|u| u.five_hour.resets_at.clone())
        }))
        .bind(column(records, |r| {
            rate(r).and_then(|u| u.seven_day.utilization)
        }))
        .bind(column(records, |r| {
            rate(r).and_then(|u| u.seven_day.resets_at.clone())
        }))
        .bind(column(records, |r| {
            r.upstream_credential_hash.map(|h| h.to_string())
        }))
        .bind(column(records, |r| r.client_key_id.clone()))
        .bind(column(records, |r| {
            link(r).map(|l| &*l.current_message_hash)
        }))
        .bind(column(records, |r| {
            link(r).and_then(|l| l.parent_message_hash.as_deref())
        }))
        .bind(column(records, |r| {
            link(r).and_then(|l| l.system_hash.as_deref())
        }))
        .bind(column(records, |r| link(r).map(|l| &*l.conversation_id)))
        .bind(column(records, |r| link(r).map(|l| &*l.branch_id)))
        .bind(column(records, |r| {
            link(r).map(|l| i64::from(l.message_count))
        }))
        .bind(column(records, |r| {
            link(r).and_then(|l| l.parent_request_id.as_deref())
        }))
        .bind(column(records, |r| link(r).map(|l| l.is_subtask)))
        .bind(column(records, |r| {
            link(r).and_then(|l| l.parent_task_request_id.as_deref())
        }))
        .execute(&mut **tx)
        .await?;
    insert_postgres_chunks(tx, records, key).await
}

chunks_fn!(
    insert_postgres_chunks,
    Postgres,
    Dialect::Postgres,
    std::convert::identity::<OffsetDateTime>,
    postgres_text
);

/// The records not yet in the database, in order: a spool replay may repeat records that a
/// cut-short replay already wrote, and they must count once (in the rollup too).
pub(super) async fn not_stored_sqlite<'r>(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    records: &'r [Record],
) -> Result<Vec<&'r Record>, sqlx::Error> {
    let mut stored = HashSet::new();
    for part in records.chunks(500) {
        let sql = format!(
            "SELECT request_id FROM api_requests WHERE request_id IN ({})",
            super::placeholders(part.len())
        );
        let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
        for r in part {
            query = query.bind(r.request_id.to_string());
        }
        stored.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(not_in(records, &stored))
}

/// [`not_stored_sqlite`] for PostgreSQL.
pub(super) async fn not_stored_postgres<'r>(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    records: &'r [Record],
) -> Result<Vec<&'r Record>, sqlx::Error> {
    let ids: Vec<String> = records.iter().map(|r| r.request_id.to_string()).collect();
    let stored: HashSet<String> =
        sqlx::query_scalar("SELECT request_id FROM api_requests WHERE request_id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .collect();
    Ok(not_in(records, &stored))
}

fn not_in<'r>(records: &'r [Record], stored: &HashSet<String>) -> Vec<&'r Record> {
    records
        .iter()
        .filter(|r| !stored.contains(&r.request_id.to_string()))
        .collect()
}

/// A body or chunk as stored: sealed with the data key when there is one.
fn protect<'a>(key: Option<&DataKey>, request_id: &str, text: Cow<'a, str>) -> Cow<'a, str> {
    match key {
        Some(key) => Cow::Owned(key.seal(request_id, &text)),
        None => text,
    }
}

/// PostgreSQL's `TEXT` cannot hold NUL, which a JSON string may decode to (`"\u0000"`): it
/// becomes U+FFFD rather than making the whole row unwritable.
fn postgres_text(s: Cow<'_, str>) -> String {
    match memchr::memchr(0, s.as_bytes()) {
        None => s.into_owned(),
        Some(_) => s.replace('\0', "\u{FFFD}"),
    }
}

/// `INSERT INTO table (columns) VALUES (…), …` for each of [`INSERT_SHAPES`].
fn insert_statements(dialect: Dialect, table: &str, columns: &str) -> Vec<String> {
    let width = columns.split(',').count();
    INSERT_SHAPES
        .iter()
        .map(|&rows| {
            let values: Vec<String> = (0..rows)
                .map(|row| {
                    let cells: Vec<Cow<str>> = (1..=width)
                        .map(|col| dialect.placeholder(row * width + col))
                        .collect();
                    format!("({})", cells.join(", "))
                })
                .collect();
            format!(
                "INSERT INTO {table} ({columns}) VALUES {}",
                values.join(", ")
            )
        })
        .collect()
}

fn statement_for(statements: &[String], rows: usize) -> &str {
    let shape = INSERT_SHAPES
        .iter()
        .position(|&s| s == rows)
        .expect("rows come from shaped_chunks");
    statements[shape].as_str()
}

/// Splits `items` into consecutive slices whose lengths are all in [`INSERT_SHAPES`].
pub(super) fn shaped_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = INSERT_SHAPES.into_iter().find(|&s| s <= items.len())?;
        let (head, tail) = items.split_at(size);
        items = tail;
        Some(head)
    })
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A text value to bind to SQLite: sqlx keeps an `Arc<str>` as it is, in one allocation, where
/// a `String` costs two (the string and sqlx's `Arc` around it), both freed on SQLite's thread.
fn text(value: &str) -> Arc<str> {
    Arc::from(value)
}

fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_into_few_statement_shapes() {
        for n in [0usize, 1, 3, 4, 5, 63, 64, 65, 77, 256, 300] {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = shaped_chunks(&items).collect();
            assert_eq!(chunks.concat(), items, "{n}: every item once, in order");
            assert!(
                chunks.iter().all(|c| INSERT_SHAPES.contains(&c.len())),
                "{n}"
            );
        }
        let items = [0; 77];
        let sizes: Vec<usize> = shaped_chunks(&items).map(<[usize]>::len).collect();
        assert_eq!(sizes, vec![64, 4, 4, 4, 1]);
    }

    #[test]
    fn insert_statements_have_a_placeholder_per_column_and_row() {
        let sqlite = &INSERT_REQUESTS;
        assert!(sqlite[3].starts_with("INSERT INTO api_requests (request_id, domain,"));
        assert_eq!(sqlite[3].matches('?').count(), 39);
        assert_eq!(sqlite[0].matches('?').count(), 39 * 64);

        let postgres = &INSERT_CHUNKS[Dialect::Postgres as usize];
        assert!(postgres[3].ends_with("VALUES ($1, $2, $3, $4)"));
        assert!(postgres[2].contains("($5, $6, $7, $8)"));
        assert!(postgres[0].ends_with(", $256)"));
        assert_eq!(UNNEST_REQUESTS.matches("[]").count(), 39);
    }

    #[test]
    fn postgres_text_replaces_nul_only() {
        assert_eq!(postgres_text("a\0b".into()), "a\u{FFFD}b");
        assert_eq!(postgres_text("plain".into()), "plain");
    }
}
