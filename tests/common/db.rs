//! The database a test's records go to: a fresh SQLite file by default, or, when the
//! `TEST_DATABASE_URL` environment variable names a PostgreSQL server (the README's test
//! command sets it for its second pass), a fresh PostgreSQL database per test, so tests run in
//! parallel on either backend.

use std::path::Path;

use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgPool, Row, SqlitePool};

/// Prefix of the databases tests create; `scripts/test.sh` drops leftovers before a run.
pub const DATABASE_PREFIX: &str = "nexus_t_";

/// A fresh, empty database for one test.
pub struct TestDatabase {
    /// The `DATABASE_URL` for the proxy.
    pub url: String,
}

impl TestDatabase {
    /// A new SQLite file in `dir`, or a new PostgreSQL database when `TEST_DATABASE_URL` is set.
    pub async fn fresh(dir: &Path) -> TestDatabase {
        match postgres_server() {
            None => TestDatabase::sqlite(dir),
            Some(server) => TestDatabase::postgres(&server).await,
        }
    }

    pub fn sqlite(dir: &Path) -> TestDatabase {
        TestDatabase {
            url: format!("sqlite://{}", dir.join("records.db").display()),
        }
    }

    /// A new database on the server `server` (a `postgres://` URL).
    pub async fn postgres(server: &str) -> TestDatabase {
        let name = format!("{DATABASE_PREFIX}{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(server).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let mut url = url::Url::parse(server).unwrap();
        url.set_path(&name);
        TestDatabase {
            url: url.to_string(),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }

    /// Opens the database for the test's own queries.
    pub async fn open(&self) -> TestDb {
        match self.url.strip_prefix("sqlite://") {
            Some(path) => TestDb::Sqlite(open_db(Path::new(path)).await),
            None => TestDb::Postgres(PgPool::connect(&self.url).await.unwrap()),
        }
    }
}

/// The PostgreSQL server to run against, when this is the PostgreSQL pass.
pub fn postgres_server() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

pub async fn open_db(path: &Path) -> SqlitePool {
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(path))
        .await
        .unwrap()
}

/// A connection to a test's database, whichever the backend.
pub enum TestDb {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl TestDb {
    /// Runs `sql` unchanged (as a user would in `sqlite3` or `psql`) and returns each value as
    /// the text those tools would show, `None` for NULL.
    pub async fn text_rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        macro_rules! text {
            ($pool:expr) => {
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .fetch_all($pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| row.try_get_unchecked::<Option<String>, _>(i).unwrap())
                            .collect()
                    })
                    .collect()
            };
        }
        match self {
            TestDb::Sqlite(pool) => text!(pool),
            TestDb::Postgres(pool) => text!(pool),
        }
    }

    /// The single number `sql` answers.
    pub async fn number(&self, sql: &str) -> i64 {
        let rows = self.text_rows(sql).await;
        rows[0][0].as_deref().unwrap_or("0").parse().unwrap()
    }
}

/// One `api_requests` row, the columns tests look at.
#[derive(Debug)]
pub struct RecordRow {
    pub request_id: String,
    pub domain: String,
    pub account_id: Option<String>,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub status: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation: i64,
    pub cache_read: i64,
    pub total_tokens: i64,
    pub first_token_ms: Option<i64>,
    pub streaming: bool,
    pub api_key_hash: Option<String>,
    pub error: Option<String>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}

/// Every `api_requests` row, oldest first.
pub async fn rows(db: &TestDb) -> Vec<RecordRow> {
    const SQL: &str = "SELECT request_id, domain, account_id, method, path, model, \
        CAST(response_status AS BIGINT) AS response_status, input_tokens, output_tokens, \
        cache_creation_input_tokens, cache_read_input_tokens, total_tokens, first_token_ms, \
        response_streaming, api_key_hash, error, request_body, response_body \
        FROM api_requests ORDER BY timestamp, request_id";
    macro_rules! rows {
        ($pool:expr) => {
            sqlx::query(SQL)
                .fetch_all($pool)
                .await
                .unwrap()
                .iter()
                .map(|r| RecordRow {
                    request_id: r.get("request_id"),
                    domain: r.get("domain"),
                    account_id: r.get("account_id"),
                    method: r.get("method"),
                    path: r.get("path"),
                    model: r.get("model"),
                    status: r.get("response_status"),
                    input_tokens: r.get("input_tokens"),
                    output_tokens: r.get("output_tokens"),
                    cache_creation: r.get("cache_creation_input_tokens"),
                    cache_read: r.get("cache_read_input_tokens"),
                    total_tokens: r.get("total_tokens"),
                    first_token_ms: r.get("first_token_ms"),
                    streaming: r.get("response_streaming"),
                    api_key_hash: r.get("api_key_hash"),
                    error: r.get("error"),
                    request_body: r.get("request_body"),
                    response_body: r.get("response_body"),
                })
                .collect()
        };
    }
    match db {
        TestDb::Sqlite(pool) => rows!(pool),
        TestDb::Postgres(pool) => rows!(pool),
    }
}
