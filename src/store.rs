//! The record store: the only module that knows SQL and the database dialect.
//!
//! SQLite is the embedded default (WAL mode, one file); migrations in `migrations/sqlite/` are
//! embedded in the binary and run at open. Every query is parameterized. Records are inserted
//! in batches, one transaction per batch, with multi-row `INSERT`s.

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqlitePool};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

mod dashboard_queries;
pub use dashboard_queries::{
    Bucket, GroupTotals, Grouping, PageCursor, RequestDetailRow, RequestFilter, RequestListRow,
};

use crate::config::DatabaseConfig;
use crate::records::Record;
use crate::usage::Usage;

/// Rows per multi-row `INSERT`: a batch is split into statements of these sizes only, so a
/// handful of prepared statements serve every batch (each distinct row count would otherwise
/// be prepared and cached on its own). 64 rows × 23 columns stays far below SQLite's
/// 32,766 parameters.
const INSERT_SHAPES: [usize; 4] = [64, 16, 4, 1];

const REQUEST_COLUMNS: &str = "request_id, domain, account_id, timestamp, method, path, model, \
     request_type, response_status, input_tokens, output_tokens, cache_creation_input_tokens, \
     cache_read_input_tokens, total_tokens, duration_ms, first_token_ms, response_streaming, \
     client_ip, api_key_hash, error, upstream_request_id, request_body, response_body";
const CHUNK_COLUMNS: &str = "request_id, chunk_index, timestamp, data";

/// The multi-row `INSERT` text for each shape, built once.
static INSERT_REQUESTS: LazyLock<Vec<String>> =
    LazyLock::new(|| insert_statements("api_requests", REQUEST_COLUMNS));
static INSERT_CHUNKS: LazyLock<Vec<String>> =
    LazyLock::new(|| insert_statements("streaming_chunks", CHUNK_COLUMNS));

type SqliteQuery = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the database directory {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "PostgreSQL (DATABASE_URL=postgres://…) is not supported by this build yet; use sqlite"
    )]
    PostgresUnsupported,
}

impl StoreError {
    /// The data itself was refused (a constraint or type error): writing the same rows again
    /// cannot succeed, unlike a locked, full or unreachable database.
    pub fn is_rejected_data(&self) -> bool {
        use sqlx::error::ErrorKind;
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => matches!(
                e.kind(),
                ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::CheckViolation
            ),
            StoreError::Database(sqlx::Error::Encode(_)) => true,
            _ => false,
        }
    }
}

/// Totals for one (domain, model) pair, for `/token-stats`.
#[derive(Debug, Clone)]
pub struct ModelTotals {
    pub domain: String,
    pub model: Option<String>,
    pub requests: u64,
    pub usage: Usage,
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    description: String,
    slow_query: Duration,
}

impl Store {
    /// Opens (creating when missing) the database and applies pending migrations.
    pub async fn open(config: &DatabaseConfig, slow_query: Duration) -> Result<Store, StoreError> {
        let path = match config {
            DatabaseConfig::Sqlite(path) => path,
            DatabaseConfig::Postgres(_) => return Err(StoreError::PostgresUnsupported),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store {
            pool,
            description: config.describe(),
            slow_query,
        })
    }

    /// Where the records go, safe to log.
    pub fn describe(&self) -> &str {
        &self.description
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Inserts a batch of records (and their stream chunks) in one transaction.
    pub async fn insert_records(&self, records: &[Record]) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        for rows in shaped_chunks(records) {
            let mut insert = sqlx::query(statement_for(&INSERT_REQUESTS, rows.len()));
            for r in rows {
                insert = bind_request(insert, r);
            }
            insert.execute(&mut *tx).await?;
        }
        for r in records.iter().filter(|r| !r.chunks.is_empty()) {
            let id = r.request_id.to_string();
            let mut index: i64 = 0;
            for rows in shaped_chunks(&r.chunks) {
                let mut insert = sqlx::query(statement_for(&INSERT_CHUNKS, rows.len()));
                for (offset_ms, data) in rows {
                    insert = insert
                        .bind(id.clone())
                        .bind(index)
                        .bind(format_timestamp(
                            r.timestamp + Duration::from_millis(*offset_ms),
                        ))
                        .bind(data.clone());
                    index += 1;
                }
                insert.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        self.note_duration("insert_records", started);
        Ok(())
    }

    /// Requests and tokens per (domain, model), for `/token-stats`.
    pub async fn model_totals(&self) -> Result<Vec<ModelTotals>, StoreError> {
        let started = Instant::now();
        let rows = sqlx::query(
            "SELECT domain, model, COUNT(*) AS requests, \
                    COALESCE(SUM(input_tokens), 0) AS input_tokens, \
                    COALESCE(SUM(output_tokens), 0) AS output_tokens, \
                    COALESCE(SUM(cache_creation_input_tokens), 0) AS cache_creation, \
                    COALESCE(SUM(cache_read_input_tokens), 0) AS cache_read \
             FROM api_requests GROUP BY domain, model ORDER BY domain, model",
        )
        .fetch_all(&self.pool)
        .await?;
        self.note_duration("model_totals", started);
        rows.iter()
            .map(|row| {
                Ok(ModelTotals {
                    domain: row.try_get("domain")?,
                    model: row.try_get("model")?,
                    requests: as_u64(row.try_get("requests")?),
                    usage: Usage {
                        input_tokens: as_u64(row.try_get("input_tokens")?),
                        output_tokens: as_u64(row.try_get("output_tokens")?),
                        cache_creation_input_tokens: as_u64(row.try_get("cache_creation")?),
                        cache_read_input_tokens: as_u64(row.try_get("cache_read")?),
                    },
                })
            })
            .collect()
    }

    fn note_duration(&self, name: &'static str, started: Instant) {
        let took = started.elapsed();
        if took >= self.slow_query {
            tracing::warn!(
                query = name,
                took_ms = took.as_millis() as u64,
                "slow query"
            );
        }
    }
}

fn bind_request(query: SqliteQuery, r: &Record) -> SqliteQuery {
    query
        .bind(r.request_id.to_string())
        .bind(r.domain.clone())
        .bind(r.account_id.clone())
        .bind(format_timestamp(r.timestamp))
        .bind(r.method.clone())
        .bind(r.path.clone())
        .bind(r.model.clone())
        .bind(r.request_type)
        .bind(i64::from(r.status))
        .bind(as_i64(r.usage.input_tokens))
        .bind(as_i64(r.usage.output_tokens))
        .bind(as_i64(r.usage.cache_creation_input_tokens))
        .bind(as_i64(r.usage.cache_read_input_tokens))
        .bind(as_i64(r.usage.total()))
        .bind(as_i64(r.duration_ms))
        .bind(r.first_token_ms.map(as_i64))
        .bind(r.streaming)
        .bind(r.client_ip.map(|ip| ip.to_string()))
        .bind(r.api_key_hash.map(|h| h.to_string()))
        .bind(r.error.clone())
        .bind(r.upstream_request_id.clone())
        .bind(r.request_body.as_deref().map(lossy))
        .bind(r.response_body.as_deref().map(lossy))
}

/// `INSERT INTO table (columns) VALUES (?, …), …` for each of [`INSERT_SHAPES`].
fn insert_statements(table: &str, columns: &str) -> Vec<String> {
    let placeholders = vec!["?"; columns.split(',').count()].join(", ");
    INSERT_SHAPES
        .iter()
        .map(|&rows| {
            let values = vec![format!("({placeholders})"); rows].join(", ");
            format!("INSERT INTO {table} ({columns}) VALUES {values}")
        })
        .collect()
}

fn statement_for(statements: &'static [String], rows: usize) -> &'static str {
    let shape = INSERT_SHAPES
        .iter()
        .position(|&s| s == rows)
        .expect("rows come from shaped_chunks");
    statements[shape].as_str()
}

/// Splits `items` into consecutive slices whose lengths are all in [`INSERT_SHAPES`].
fn shaped_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = INSERT_SHAPES.into_iter().find(|&s| s <= items.len())?;
        let (head, tail) = items.split_at(size);
        items = tail;
        Some(head)
    })
}

/// The text form of a timestamp in SQLite: UTC, `YYYY-MM-DD HH:MM:SS.SSS`.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP)
        .unwrap_or_default()
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn as_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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
        let one = &INSERT_REQUESTS[3];
        assert!(one.starts_with("INSERT INTO api_requests (request_id, domain,"));
        assert_eq!(one.matches('?').count(), 23);
        assert_eq!(INSERT_REQUESTS[0].matches('?').count(), 23 * 64);
        assert_eq!(INSERT_CHUNKS[2].matches('?').count(), 4 * 4);
    }
}
