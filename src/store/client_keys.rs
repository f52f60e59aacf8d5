//! The `client_keys` table: client keys with a lifecycle (created, used, expiring, revoked),
//! kept as salted hashes, and the `last_used_at` each batch of records moves forward.

use std::collections::HashMap;
use std::time::Instant;

use sqlx::{AssertSqlSafe, Row};
use time::{OffsetDateTime, PrimitiveDateTime};

use super::{Dialect, Pool, Store, StoreError, TIMESTAMP, format_timestamp};
use crate::keys::KeyHash;
use crate::record::Record;

/// One row of `client_keys`. Holds no secret: the key itself was shown once and is gone.
#[derive(Debug, Clone)]
pub struct ClientKeyRow {
    pub id: String,
    /// The domain of the account the key belongs to.
    pub account: String,
    pub label: Option<String>,
    pub key_hash: KeyHash,
    /// The first characters of the key, to recognise it by (`cnp_live_Ab12`).
    pub prefix: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// The key this one was rotated from.
    pub rotated_from: Option<String>,
}

/// The version of the table's keys (`client_keys_version`): moved by a trigger on every
/// change to a key that a proxy looks at, whoever makes it (plain SQL included); never by
/// `last_used_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientKeysVersion(pub i64);

const COLUMNS: &str = "id, account, label, key_hash, prefix, created_at, expires_at, \
                       last_used_at, revoked_at, rotated_from";

/// Reads `client_keys` rows; `$ts` reads an optional timestamp column in the dialect's type.
macro_rules! key_rows {
    ($rows:expr, $ts:expr) => {
        $rows
            .iter()
            .map(|row| {
                let hash: String = row.try_get("key_hash")?;
                Ok(ClientKeyRow {
                    id: row.try_get("id")?,
                    account: row.try_get("account")?,
                    label: row.try_get("label")?,
                    key_hash: KeyHash::from_hex(&hash).ok_or_else(|| {
                        sqlx::Error::Decode("client_keys.key_hash is not a hash".into())
                    })?,
                    prefix: row.try_get("prefix")?,
                    created_at: $ts(row, "created_at")?.ok_or_else(|| {
                        sqlx::Error::Decode("client_keys.created_at is empty".into())
                    })?,
                    expires_at: $ts(row, "expires_at")?,
                    last_used_at: $ts(row, "last_used_at")?,
                    revoked_at: $ts(row, "revoked_at")?,
                    rotated_from: row.try_get("rotated_from")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
    };
}

fn sqlite_ts(
    row: &sqlx::sqlite::SqliteRow,
    column: &str,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| parse_timestamp(&t)).transpose()
}

fn postgres_ts(
    row: &sqlx::postgres::PgRow,
    column: &str,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    row.try_get(column)
}

/// Reads back what [`format_timestamp`] wrote.
fn parse_timestamp(text: &str) -> Result<OffsetDateTime, sqlx::Error> {
    PrimitiveDateTime::parse(text, TIMESTAMP)
        .map(PrimitiveDateTime::assume_utc)
        .map_err(|e| sqlx::Error::Decode(e.into()))
}

/// A timestamp bound in the dialect's type: text on SQLite, `TIMESTAMPTZ` on PostgreSQL.
enum Ts {
    Text(Option<String>),
    Tz(Option<OffsetDateTime>),
}

fn ts(dialect: Dialect, at: Option<OffsetDateTime>) -> Ts {
    match dialect {
        Dialect::Sqlite => Ts::Text(at.map(format_timestamp)),
        Dialect::Postgres => Ts::Tz(at),
    }
}

/// Binds a [`Ts`] on whichever query type.
macro_rules! bind_ts {
    ($query:expr, $ts:expr) => {
        match $ts {
            Ts::Text(t) => $query.bind(t),
            Ts::Tz(t) => $query.bind(t),
        }
    };
}

impl Store {
    /// Stores a new key. Its hash must be new (the column is unique).
    pub async fn insert_client_key(&self, key: &ClientKeyRow) -> Result<(), StoreError> {
        let started = Instant::now();
        let sql = AssertSqlSafe(
            self.dialect()
                .sql(&format!(
                    "INSERT INTO client_keys ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ))
                .into_owned(),
        );
        let d = self.dialect();
        with_pool!(self, pool => {
            let q = sqlx::query(sql)
                .bind(key.id.clone())
                .bind(key.account.clone())
                .bind(key.label.clone())
                .bind(key.key_hash.to_string())
                .bind(key.prefix.clone());
            let q = bind_ts!(q, ts(d, Some(key.created_at)));
            let q = bind_ts!(q, ts(d, key.expires_at));
            let q = bind_ts!(q, ts(d, key.last_used_at));
            let q = bind_ts!(q, ts(d, key.revoked_at));
            q.bind(key.rotated_from.clone()).execute(pool).await.map(drop)?;
        });
        self.note_duration("insert_client_key", started);
        Ok(())
    }

    /// Every key (of `account`, when given), oldest first.
    pub async fn client_keys(
        &self,
        account: Option<&str>,
    ) -> Result<Vec<ClientKeyRow>, StoreError> {
        let started = Instant::now();
        let sql = format!(
            "SELECT {COLUMNS} FROM client_keys WHERE (? IS NULL OR account = ?) ORDER BY created_at, id"
        );
        let sql = AssertSqlSafe(self.dialect().sql(&sql).into_owned());
        let account = account.map(str::to_string);
        let rows = match &self.pool {
            Pool::Sqlite(pool) => {
                let rows = sqlx::query(sql)
                    .bind(account.clone())
                    .bind(account)
                    .fetch_all(pool)
                    .await?;
                key_rows!(rows, sqlite_ts)?
            }
            Pool::Postgres(pool) => {
                let rows = sqlx::query(sql)
                    .bind(account.clone())
                    .bind(account)
                    .fetch_all(pool)
                    .await?;
                key_rows!(rows, postgres_ts)?
            }
        };
        self.note_duration("client_keys", started);
        Ok(rows)
    }

    /// Every key, revoked and expired ones included: the proxy refuses those itself, and
    /// records which key a refused request presented.
    pub async fn all_client_keys(&self) -> Result<Vec<ClientKeyRow>, StoreError> {
        let started = Instant::now();
        let sql = format!("SELECT {COLUMNS} FROM client_keys");
        let rows = match &self.pool {
            Pool::Sqlite(pool) => {
                let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(pool).await?;
                key_rows!(rows, sqlite_ts)?
            }
            Pool::Postgres(pool) => {
                let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(pool).await?;
                key_rows!(rows, postgres_ts)?
            }
        };
        self.note_duration("all_client_keys", started);
        Ok(rows)
    }

    /// See [`ClientKeysVersion`]. One row by its primary key, cheap enough to ask twice a
    /// second.
    pub async fn client_keys_version(&self) -> Result<ClientKeysVersion, StoreError> {
        let sql = "SELECT CAST(version AS BIGINT) FROM client_keys_version WHERE id = 1";
        let version: i64 = with_pool!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await?);
        Ok(ClientKeysVersion(version))
    }

    /// Revokes the key `id` at `at`. `false` when there is no such key or it already was.
    pub async fn revoke_client_key(
        &self,
        id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let sql = AssertSqlSafe(
            self.dialect()
                .sql("UPDATE client_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .into_owned(),
        );
        let d = self.dialect();
        let changed = with_pool!(self, pool => {
            let q = bind_ts!(sqlx::query(sql), ts(d, Some(at)));
            q.bind(id.to_string()).execute(pool).await?.rows_affected()
        });
        Ok(changed > 0)
    }

    /// Revokes every active key (of `account`, when given); returns the ids revoked.
    pub async fn revoke_all_client_keys(
        &self,
        account: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let sql = AssertSqlSafe(
            self.dialect()
                .sql(
                    "UPDATE client_keys SET revoked_at = ? WHERE revoked_at IS NULL \
                     AND (? IS NULL OR account = ?) RETURNING id",
                )
                .into_owned(),
        );
        let d = self.dialect();
        let account = account.map(str::to_string);
        let ids: Vec<String> = with_pool!(self, pool => {
            let q = bind_ts!(sqlx::query_scalar(sql), ts(d, Some(at)));
            q.bind(account.clone()).bind(account).fetch_all(pool).await?
        });
        Ok(ids)
    }

    /// When a request last presented the client key whose salted hash is `hash` (for keys
    /// that are not in `client_keys`: a credential file's `client_api_key`).
    pub async fn last_request_with_key(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let sql = AssertSqlSafe(
            self.dialect()
                .sql("SELECT MAX(timestamp) AS last FROM api_requests WHERE api_key_hash = ?")
                .into_owned(),
        );
        let last = match &self.pool {
            Pool::Sqlite(pool) => {
                let row = sqlx::query(sql)
                    .bind(hash.to_string())
                    .fetch_one(pool)
                    .await?;
                sqlite_ts(&row, "last")?
            }
            Pool::Postgres(pool) => {
                let row = sqlx::query(sql)
                    .bind(hash.to_string())
                    .fetch_one(pool)
                    .await?;
                postgres_ts(&row, "last")?
            }
        };
        Ok(last)
    }
}

impl Store {
    /// See [`touch_fn`]; a failure is logged, never returned.
    pub(super) async fn touch_last_used(&self, records: &[Record]) {
        let result = match &self.pool {
            Pool::Sqlite(pool) => touch_sqlite(pool, records).await,
            Pool::Postgres(pool) => touch_postgres(pool, records).await,
        };
        if let Err(e) = result {
            tracing::warn!("cannot update the client keys' last use: {e}");
        }
    }
}

/// The latest request of each client key in `records` (keys of the `client_keys` table only).
fn latest_use(records: &[Record]) -> HashMap<&str, OffsetDateTime> {
    let mut latest: HashMap<&str, OffsetDateTime> = HashMap::new();
    for r in records {
        if let Some(id) = r
            .client_key_id
            .as_deref()
            .filter(|id| !id.starts_with("file:"))
        {
            let at = latest.entry(id).or_insert(r.timestamp);
            *at = (*at).max(r.timestamp);
        }
    }
    latest
}

const TOUCH: &str = "UPDATE client_keys SET last_used_at = ? \
                     WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)";

/// Moves `last_used_at` forward for the keys a batch of records presented (refused requests
/// too: a revoked key that is still sent shows up), once the batch is written: one `UPDATE`
/// per key, never one per request. Outside the batch's transaction, so
/// that a failure here (a missing grant) never holds back a record.
macro_rules! touch_fn {
    ($name:ident, $db:ty, $dialect:expr, $ts:expr) => {
        async fn $name(pool: &sqlx::Pool<$db>, records: &[Record]) -> Result<(), sqlx::Error> {
            let sql = $dialect.sql(TOUCH);
            for (id, at) in latest_use(records) {
                sqlx::query(AssertSqlSafe(sql.clone().into_owned()))
                    .bind($ts(at))
                    .bind(id.to_string())
                    .bind($ts(at))
                    .execute(pool)
                    .await?;
            }
            Ok(())
        }
    };
}

touch_fn!(
    touch_sqlite,
    sqlx::Sqlite,
    Dialect::Sqlite,
    format_timestamp
);
touch_fn!(
    touch_postgres,
    sqlx::Postgres,
    Dialect::Postgres,
    std::convert::identity::<OffsetDateTime>
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_back() {
        let at = time::macros::datetime!(2026-11-28 15:04:05.123 UTC);
        assert_eq!(parse_timestamp(&format_timestamp(at)).unwrap(), at);
    }
}
