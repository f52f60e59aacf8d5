//! The record store: the only module that knows SQL and the database dialects.
//!
//! One [`Store`] hides whether records go to SQLite (the embedded default: WAL mode, one
//! file) or PostgreSQL (teams, several instances). Both have the same numbered migrations
//! (`migrations/sqlite/`, `migrations/postgres/`), embedded in the binary. Every query is
//! parameterized; SQL is written once with `?` placeholders and numbered for PostgreSQL.

mod connect;
mod dashboard_queries;
mod insert;
mod rollup;

pub use conversations::{ConversationCursor, ConversationRow, ConversationSort};
pub use dashboard_queries::{Bucket, DailyCount, PageCursor, RequestFilter, UsageGroup};

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::{AssertSqlSafe, PgPool, Row, SqlitePool};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

use crate::config::DatabaseConfig;
use crate::crypto::{self, DataKey};
use crate::record::Record;
use crate::usage::Usage;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create or secure the database file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Decrypt(#[from] crypto::DecryptError),
    #[error("invalid DATABASE_URL: {0}")]
    Url(String),
    #[error(
        "the database schema is out of date ({missing} migration(s) not applied); \
         run `claude-nexus migrate` as the database owner, or set AUTO_MIGRATE=true"
    )]
    SchemaOutdated { missing: usize },
}

impl StoreError {
    /// The data itself was refused (a constraint or type error): writing the same rows again
    /// cannot succeed, unlike a locked, full or unreachable database.
    pub fn is_rejected_data(&self) -> bool {
        use sqlx::error::ErrorKind;
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                matches!(
                    e.kind(),
                    ErrorKind::UniqueViolation
                        | ErrorKind::ForeignKeyViolation
                        | ErrorKind::NotNullViolation
                        | ErrorKind::CheckViolation
                ) || e.code().is_some_and(|code| is_postgres_data_error(&code))
            }
            StoreError::Database(sqlx::Error::Encode(_)) => true,
            _ => false,
        }
    }

    /// The database refused the statement for lack of a privilege (PostgreSQL's 42501), as
    /// under the least-privilege role without the optional `DELETE` grant.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501"))
    }
}

/// PostgreSQL SQLSTATE class 22 (data exception: bad encoding, value out of range).
fn is_postgres_data_error(code: &str) -> bool {
    code.len() == 5 && code.starts_with("22")
}

/// Which SQL dialect a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite = 0,
    Postgres = 1,
}

impl Dialect {
    /// The `n`th (1-based) parameter placeholder.
    fn placeholder(self, n: usize) -> Cow<'static, str> {
        match self {
            Dialect::Sqlite => Cow::Borrowed("?"),
            Dialect::Postgres => Cow::Owned(format!("${n}")),
        }
    }

    /// `sql` written with `?` placeholders, in this dialect.
    fn sql(self, sql: &str) -> Cow<'_, str> {
        match self {
            Dialect::Sqlite => Cow::Borrowed(sql),
            Dialect::Postgres => {
                let mut out = String::with_capacity(sql.len() + 8);
                for (n, part) in sql.split('?').enumerate() {
                    if n > 0 {
                        out.push_str(&self.placeholder(n));
                    }
                    out.push_str(part);
                }
                Cow::Owned(out)
            }
        }
    }
}

/// When the schema may be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Apply pending migrations (the owner's job: `claude-nexus migrate`, or `AUTO_MIGRATE`).
    Apply,
    /// Only check that every migration has been applied, and refuse to run otherwise.
    Verify,
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
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool of either dialect.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

mod client_keys;
mod conversations;
mod limits;
pub use client_keys::{ClientKeyRow, ClientKeysVersion};
pub use limits::{LimitSet, Subject, SubjectKind, UsageRow};
pub use rollup::{day_of, hour_of};

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    description: String,
    slow_query: Duration,
    /// Seals stored bodies and chunks, and opens them again.
    data_key: Option<Arc<DataKey>>,
}

/// `request_body`, `response_body` as stored.
type BodyColumns = (Option<String>, Option<String>);

/// A request's stored bodies and stream events, decrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBodies {
    pub request_body: Option<String>,
    pub response_body: Option<String>,
    /// `(chunk_index, data)` in order.
    pub chunks: Vec<(i64, String)>,
}

impl Store {
    /// The store `config` names (`DATABASE_URL`), migrations applied when `AUTO_MIGRATE` is
    /// on and verified otherwise: what the server and the CLI's commands open.
    pub async fn open_configured(config: &crate::config::Config) -> Result<Store, StoreError> {
        let migrations = if config.auto_migrate {
            Migrations::Apply
        } else {
            Migrations::Verify
        };
        Store::open(&config.database, migrations, config.slow_query_threshold).await
    }

    /// Connects (creating a missing SQLite file) and applies or verifies the migrations.
    pub async fn open(
        config: &DatabaseConfig,
        migrations: Migrations,
        slow_query: Duration,
    ) -> Result<Store, StoreError> {
        let pool = match config {
            DatabaseConfig::Sqlite(path) => Pool::Sqlite(connect::sqlite(path).await?),
            DatabaseConfig::Postgres(url) => Pool::Postgres(connect::postgres(url).await?),
        };
        let store = Store {
            pool,
            description: config.describe(),
            slow_query,
            data_key: None,
        };
        match migrations {
            Migrations::Apply => with_pool!(store, pool => store.migrator().run(pool).await?),
            Migrations::Verify => store.verify_schema().await?,
        }
        Ok(store)
    }

    /// The key bodies are sealed with, for what keeps bodies outside the database (the spool).
    pub fn data_key(&self) -> Option<Arc<DataKey>> {
        self.data_key.clone()
    }

    /// Bodies and chunks are encrypted with `key` from now on (see [`crate::crypto`]).
    pub fn with_data_key(mut self, key: Option<DataKey>) -> Store {
        self.data_key = key.map(Arc::new);
        self
    }

    /// The stored bodies and stream events of `request_id`, decrypted; `None` when there is
    /// no such request. A missing or wrong data key is an error, never garbage.
    pub async fn stored_bodies(
        &self,
        request_id: &str,
    ) -> Result<Option<StoredBodies>, StoreError> {
        let started = Instant::now();
        let key = self.data_key.as_deref();
        let open = |text: Option<String>| -> Result<Option<String>, StoreError> {
            Ok(text
                .map(|t| crypto::open(key, request_id, &t))
                .transpose()?)
        };
        let bodies_sql = AssertSqlSafe(
            self.dialect()
                .sql("SELECT request_body, response_body FROM api_requests WHERE request_id = ?")
                .into_owned(),
        );
        let chunks_sql = AssertSqlSafe(self.dialect().sql(
            "SELECT CAST(chunk_index AS BIGINT), data FROM streaming_chunks WHERE request_id = ? ORDER BY chunk_index",
        ).into_owned());
        let (bodies, chunks): (Option<BodyColumns>, Vec<(i64, String)>) = with_pool!(self, pool => {
            let bodies = sqlx::query_as(bodies_sql).bind(request_id).fetch_optional(pool).await?;
            let chunks = sqlx::query_as(chunks_sql).bind(request_id).fetch_all(pool).await?;
            (bodies, chunks)
        });
        self.note_duration("stored_bodies", started);
        let Some((request_body, response_body)) = bodies else {
            return Ok(None);
        };
        Ok(Some(StoredBodies {
            request_body: open(request_body)?,
            response_body: open(response_body)?,
            chunks: chunks
                .into_iter()
                .map(|(i, data)| Ok((i, crypto::open(key, request_id, &data)?)))
                .collect::<Result<_, StoreError>>()?,
        }))
    }

    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    fn migrator(&self) -> &'static Migrator {
        match self.dialect() {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Refuses a schema that lacks one of the embedded migrations.
    async fn verify_schema(&self) -> Result<(), StoreError> {
        let sql = "SELECT version FROM _sqlx_migrations WHERE success";
        let applied: Vec<i64> = match with_pool!(self, pool => sqlx::query_scalar(sql).fetch_all(pool).await)
        {
            Ok(applied) => applied,
            // No migrations table: nothing was ever applied.
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("42P01")
                    || e.message().contains("no such table") =>
            {
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        let applied: HashSet<i64> = applied.into_iter().collect();
        let missing = self
            .migrator()
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .count();
        match missing {
            0 => Ok(()),
            missing => Err(StoreError::SchemaOutdated { missing }),
        }
    }

    /// Where the records go, safe to log.
    pub fn describe(&self) -> &str {
        &self.description
    }

    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))?;
        Ok(())
    }

    /// Inserts a batch of new records (and their stream chunks) in one transaction, and adds
    /// them to the rollups in the same transaction.
    pub async fn insert_records(&self, records: &[Record]) -> Result<(), StoreError> {
        self.insert(records, false).await
    }

    /// Inserts records replayed from the spool, skipping those already in the database.
    pub async fn replay_records(&self, records: &[Record]) -> Result<(), StoreError> {
        self.insert(records, true).await
    }

    async fn insert(&self, records: &[Record], replay: bool) -> Result<(), StoreError> {
        let started = Instant::now();
        let key = self.data_key.as_deref();
        match &self.pool {
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let fresh = match replay {
                    true => insert::not_stored_sqlite(&mut tx, records).await?,
                    false => records.iter().collect(),
                };
                insert::insert_sqlite(&mut tx, &fresh, key).await?;
                rollup::add_sqlite(&mut tx, &rollup::fold(fresh)).await?;
                tx.commit().await?;
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let fresh = match replay {
                    true => insert::not_stored_postgres(&mut tx, records).await?,
                    false => records.iter().collect(),
                };
                insert::insert_postgres(&mut tx, &fresh, key).await?;
                rollup::add_postgres(&mut tx, &rollup::fold(fresh)).await?;
                tx.commit().await?;
            }
        }
        self.note_duration("insert_records", started);
        self.touch_last_used(records).await;
        Ok(())
    }

    /// Requests and tokens per (domain, model), for `/token-stats`.
    pub async fn model_totals(&self) -> Result<Vec<ModelTotals>, StoreError> {
        let started = Instant::now();
        let sql = "SELECT domain, model, COUNT(*) AS requests, \
                    CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
                    CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
                    CAST(COALESCE(SUM(cache_creation_input_tokens), 0) AS BIGINT) AS cache_creation, \
                    CAST(COALESCE(SUM(cache_read_input_tokens), 0) AS BIGINT) AS cache_read \
             FROM api_requests GROUP BY domain, model ORDER BY domain, model";
        let totals = with_pool!(self, pool => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
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
                .collect::<Result<Vec<_>, sqlx::Error>>()
        })?;
        self.note_duration("model_totals", started);
        Ok(totals)
    }

    /// Deletes up to `limit` of the oldest requests older than `cutoff` (their stream chunks
    /// go with them), returning how many. Small batches keep each write lock short.
    pub async fn delete_requests_before(
        &self,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.execute_with_time(
            "delete_requests_before",
            "DELETE FROM api_requests WHERE request_id IN (SELECT request_id FROM api_requests \
             WHERE timestamp < ? ORDER BY timestamp LIMIT ?)",
            cutoff,
            limit,
        )
        .await
    }

    /// Takes what retention deleted before `cutoff` out of the rollups, by whole hours: the
    /// hours before `cutoff`'s hour go, and `cutoff`'s day in `usage_daily` is summed again
    /// from the hours left, so that a day always equals the sum of its hours.
    pub async fn delete_rollups_before(&self, cutoff: OffsetDateTime) -> Result<(), StoreError> {
        let started = Instant::now();
        let hour = rollup::hour_of(cutoff);
        let day = hour[..10].to_string();
        let dialect = self.dialect();
        let statements = [
            ("DELETE FROM usage_hourly WHERE hour < ?", &hour),
            ("DELETE FROM usage_daily WHERE day <= ?", &day),
            (
                "INSERT INTO usage_daily SELECT substr(hour, 1, 10), model, response_status, \
                 account_id, domain, api_key_hash, SUM(requests), SUM(input_tokens), \
                 SUM(output_tokens), SUM(cache_creation_input_tokens), \
                 SUM(cache_read_input_tokens) FROM usage_hourly \
                 WHERE substr(hour, 1, 10) = ? GROUP BY 1, 2, 3, 4, 5, 6",
                &day,
            ),
        ];
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for (sql, value) in statements {
                sqlx::query(AssertSqlSafe(dialect.sql(sql).into_owned()))
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })?;
        self.note_duration("delete_rollups_before", started);
        Ok(())
    }

    /// Deletes up to `limit` dashboard logins older than `cutoff`, returning how many.
    pub async fn delete_dashboard_logins_before(
        &self,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.execute_with_time(
            "delete_dashboard_logins_before",
            "DELETE FROM dashboard_logins WHERE id IN (SELECT id FROM dashboard_logins \
             WHERE timestamp < ? ORDER BY timestamp LIMIT ?)",
            cutoff,
            limit,
        )
        .await
    }

    /// Drops the stored bodies and stream chunks of up to `limit` requests older than `cutoff`,
    /// keeping their metadata. Returns how many rows changed.
    pub async fn clear_bodies_before(
        &self,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let chunks = self
            .execute_with_time(
                "delete_chunks_before",
                "DELETE FROM streaming_chunks WHERE id IN (SELECT id FROM streaming_chunks \
                 WHERE timestamp < ? LIMIT ?)",
                cutoff,
                limit,
            )
            .await?;
        let bodies = self
            .execute_with_time(
                "clear_bodies_before",
                "UPDATE api_requests SET request_body = NULL, response_body = NULL \
                 WHERE request_id IN (SELECT request_id FROM api_requests WHERE timestamp < ? \
                 AND (request_body IS NOT NULL OR response_body IS NOT NULL) LIMIT ?)",
                cutoff,
                limit,
            )
            .await?;
        Ok(chunks + bodies)
    }

    /// Deletes the `limit` oldest requests, whatever their age (the SQLite size cap).
    pub async fn delete_oldest(&self, limit: u32) -> Result<u64, StoreError> {
        let started = Instant::now();
        let sql = AssertSqlSafe(
            self.dialect()
                .sql(
                    "DELETE FROM api_requests WHERE request_id IN (SELECT request_id \
                     FROM api_requests ORDER BY timestamp LIMIT ?)",
                )
                .into_owned(),
        );
        let deleted = with_pool!(self, pool => sqlx::query(sql)
            .bind(i64::from(limit))
            .execute(pool)
            .await?
            .rows_affected());
        self.note_duration("delete_oldest", started);
        Ok(deleted)
    }

    /// How many requests are recorded.
    pub async fn count_requests(&self) -> Result<u64, StoreError> {
        let sql = "SELECT COUNT(*) FROM api_requests";
        let count: i64 = with_pool!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await?);
        Ok(as_u64(count))
    }

    /// The bytes the SQLite file holds in live pages (free pages are reused, not counted);
    /// `None` on PostgreSQL, whose size its administrator manages.
    pub async fn used_bytes(&self) -> Result<Option<u64>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                let used: i64 = sqlx::query_scalar(
                    "SELECT (page_count - freelist_count) * page_size \
                     FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()",
                )
                .fetch_one(pool)
                .await?;
                Ok(Some(as_u64(used)))
            }
            Pool::Postgres(_) => Ok(None),
        }
    }

    /// Runs `sql` (with `?` for a timestamp and a row limit) and returns the rows it changed.
    async fn execute_with_time(
        &self,
        name: &'static str,
        sql: &'static str,
        at: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let started = Instant::now();
        let sql = AssertSqlSafe(self.dialect().sql(sql).into_owned());
        let changed = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query(sql)
                .bind(format_timestamp(at))
                .bind(i64::from(limit))
                .execute(pool)
                .await?
                .rows_affected(),
            Pool::Postgres(pool) => sqlx::query(sql)
                .bind(at)
                .bind(i64::from(limit))
                .execute(pool)
                .await?
                .rows_affected(),
        };
        self.note_duration(name, started);
        Ok(changed)
    }

    /// Runs `job` holding the lock `name`, which every instance sharing this database respects
    /// (a PostgreSQL session advisory lock; on SQLite, a single machine's file, `job` just
    /// runs). `on_wait` is called first when another instance holds the lock. Fails, without
    /// running `job`, only when the lock cannot be taken.
    pub async fn exclusively<T>(
        &self,
        name: &str,
        on_wait: impl FnOnce(),
        job: impl Future<Output = T>,
    ) -> Result<T, StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(job.await);
        };
        let key = advisory_key(name);
        let mut held = AdvisoryLock {
            conn: Some(pool.acquire().await?),
            key,
        };
        let conn = held.conn.as_mut().expect("just acquired");
        let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut **conn)
            .await?;
        if !free {
            on_wait();
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(key)
                .execute(&mut **conn)
                .await?;
        }
        let out = job.await;
        held.release().await;
        Ok(out)
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

/// A held advisory lock. Released explicitly; if that fails or never happens (the holder was
/// dropped), the connection is closed rather than returned to the pool, which ends the
/// session and with it the lock.
struct AdvisoryLock {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    key: i64,
}

impl AdvisoryLock {
    async fn release(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .execute(&mut *conn)
                .await;
            if unlocked.is_err() {
                drop(conn.detach());
            }
        }
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

/// The advisory lock number of `name`: the first 8 bytes of its SHA-256.
fn advisory_key(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("claude-nexus:{name}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The text form of a timestamp in SQLite: UTC, `YYYY-MM-DD HH:MM:SS.SSS`.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP)
        .unwrap_or_default()
}

/// `n` bound parameters for an `IN (…)` list: `?, ?, ?`.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn as_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(
            Dialect::Postgres.sql("DELETE FROM t WHERE a < ? AND b = ?"),
            "DELETE FROM t WHERE a < $1 AND b = $2"
        );
        assert_eq!(Dialect::Sqlite.sql("a = ?"), "a = ?");
    }

    #[test]
    fn both_dialects_have_the_same_numbered_migrations() {
        let versions = |m: &Migrator| m.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(&SQLITE_MIGRATIONS), versions(&POSTGRES_MIGRATIONS));
    }
}
