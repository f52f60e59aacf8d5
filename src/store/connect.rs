//! Connection pools for each dialect.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, PgPool, SqlitePool};

use super::StoreError;

/// How long a query waits for a connection before the caller hears the database is gone.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn sqlite(path: &Path) -> Result<SqlitePool, StoreError> {
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
        .foreign_keys(true)
        // A multi-row INSERT keeps a statement journal; past 64 KiB SQLite spills it to a temp
        // file, which every batch of records did (a few percent of the proxy's CPU at load).
        .pragma("temp_store", "memory")
        .disable_statement_logging();
    Ok(SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await?)
}

/// `url` may carry `sslmode` (`require`, `verify-ca`, `verify-full`) and `sslrootcert`.
/// Sessions run in UTC so that `DATE(timestamp)` gives the same days as on SQLite. Statement
/// logging is off on both: the store logs slow calls itself, by name (SLOW_QUERY_THRESHOLD_MS).
pub(super) async fn postgres(url: &SecretString) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url.expose_secret())
        .map_err(|e| StoreError::Url(without_secrets(&e.to_string(), url)))?
        .application_name("claude-nexus")
        .options([("timezone", "UTC")])
        .disable_statement_logging();
    Ok(PgPoolOptions::new()
        .max_connections(5)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await?)
}

/// A parse error may quote the URL; never let its password through.
fn without_secrets(message: &str, url: &SecretString) -> String {
    let url = url.expose_secret();
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    {
        Some(password) if !password.is_empty() => message.replace(&password, "****"),
        _ => message.to_owned(),
    }
}
