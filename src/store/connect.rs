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

/// Opens (creating it when missing) the SQLite file. It holds client IPs, key hashes and
/// sealed bodies: the file is made 0600 before SQLite opens it (SQLite gives its `-wal` and
/// `-shm` files the database's mode), a missing directory 0700, and an older file left open
/// to others is made private, with a warning.
pub(super) async fn sqlite(path: &Path) -> Result<SqlitePool, StoreError> {
    let io_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| StoreError::File { path, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::atomic_file::create_private_dir(dir).map_err(io_error(dir))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(io_error(path))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        crate::atomic_file::make_private(Path::new(&file)).map_err(io_error(path))?;
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
