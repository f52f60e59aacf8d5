//! The security checklist: the security guide's pre- and post-deployment items turned into
//! checks with pass / warn / fail and the fix. One list serves the dashboard's Security page
//! and `claude-nexus doctor` (which exits non-zero on a fail).
//!
//! Checks read only the configuration, the filesystem (credential files and their modes) and
//! the database (the guide's monitoring queries); they never change anything. Items that
//! cannot be checked from here (backups encrypted, an audit schedule, …) are manual: the user
//! marks them done, and the date is kept in `security-manual.json` in the data directory.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::RetentionPolicy;
use crate::config::{Config, DatabaseConfig};
use crate::crypto::KeySource;
use crate::store::Store;

/// Failed authentications per domain and day above which the guide's query flags a domain.
pub const FAILED_AUTH_PER_DAY: u64 = 10;
/// A day's tokens for an account are a spike above this many times its average day…
pub const SPIKE_FACTOR: u64 = 3;
/// …and above this many tokens.
pub const SPIKE_MIN_TOKENS: u64 = 100_000;
/// The shortest dashboard key called strong.
pub const STRONG_KEY_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// A manual item not yet marked done.
    Todo,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Todo => "todo",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (when not passing).
    pub fix: Option<String>,
    /// Manual items: whether the user can mark it, and the day it was marked done.
    pub manual: bool,
    pub done_on: Option<String>,
}

impl Check {
    fn new(id: &'static str, title: &'static str, status: Status, detail: String) -> Check {
        Check {
            id,
            title,
            status,
            detail,
            fix: None,
            manual: false,
            done_on: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Check {
        if self.status != Status::Pass {
            self.fix = Some(fix.into());
        }
        self
    }
}

/// What the checks need from the configuration, taken at start (the key itself is not kept).
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: IpAddr,
    pub client_auth: bool,
    /// The length of `DASHBOARD_API_KEY`, when set.
    pub dashboard_key_len: Option<usize>,
    pub credentials_dir: PathBuf,
    pub data_dir: PathBuf,
    pub storage_enabled: bool,
    /// Where the data key that seals stored bodies comes from (`None`: no key yet).
    pub storage_key: Option<KeySource>,
    pub retention: RetentionPolicy,
    pub database: DatabaseSummary,
}

#[derive(Debug, Clone)]
pub enum DatabaseSummary {
    Sqlite(PathBuf),
    Postgres {
        /// Host names, as the URL gives them ("" for a Unix socket).
        host: String,
        sslmode: Option<String>,
    },
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        let database = match &config.database {
            DatabaseConfig::Sqlite(path) => DatabaseSummary::Sqlite(path.clone()),
            DatabaseConfig::Postgres(url) => {
                let parsed = url::Url::parse(url.expose_secret()).ok();
                DatabaseSummary::Postgres {
                    host: parsed
                        .as_ref()
                        .and_then(|u| u.host_str().map(str::to_string))
                        .unwrap_or_default(),
                    sslmode: parsed.as_ref().and_then(|u| {
                        u.query_pairs()
                            .find(|(k, _)| k == "sslmode")
                            .map(|(_, v)| v.into_owned())
                    }),
                }
            }
        };
        Settings {
            host: config.host,
            client_auth: config.client_auth,
            dashboard_key_len: config
                .dashboard_api_key
                .as_ref()
                .map(|k| k.expose_secret().len()),
            credentials_dir: config.credentials_dir.clone(),
            data_dir: config.data_dir.clone(),
            storage_enabled: config.storage_enabled,
            storage_key: config
                .storage_encryption_key
                .as_ref()
                .map(|_| KeySource::Env),
            retention: config.retention,
            database,
        }
    }

    fn manual_file(&self) -> PathBuf {
        self.data_dir.join("security-manual.json")
    }
}

/// Prints the checks for a terminal; returns whether any failed.
pub fn print(checks: &[Check], out: &mut impl std::io::Write) -> std::io::Result<bool> {
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    writeln!(
        out,
        "claude-nexus doctor: {} pass, {} warn, {} fail, {} manual to do\n",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Todo)
    )?;
    for c in checks {
        let mark = match c.status {
            Status::Pass => "[pass]",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
            Status::Todo => "[todo]",
        };
        writeln!(out, "{mark} {}", c.title)?;
        writeln!(out, "       {}", c.detail)?;
        if let Some(fix) = &c.fix {
            writeln!(out, "       fix: {fix}")?;
        }
    }
    if count(Status::Todo) > 0 {
        writeln!(
            out,
            "\nManual items are marked done on the dashboard's Security page."
        )?;
    }
    Ok(count(Status::Fail) > 0)
}

/// Runs every check. `store` is `None` when the database cannot be opened (its checks then
/// say so).
pub async fn run(settings: &Settings, store: Option<&Store>) -> Vec<Check> {
    let mut checks = vec![
        client_auth(settings),
        dashboard_key(settings),
        loopback(settings),
    ];
    checks.extend(credential_files(&settings.credentials_dir));
    checks.push(database_tls(settings));
    checks.push(retention(settings));
    checks.push(body_storage(settings));
    match store {
        Some(store) => {
            checks.push(failed_auth(store).await);
            checks.push(token_spikes(store).await);
        }
        None => checks.push(
            Check::new(
                "database",
                "Monitoring queries",
                Status::Warn,
                "the database could not be opened, so failed authentications and token spikes were not checked".into(),
            )
            .fix("check DATABASE_URL; start the server once to create the database"),
        ),
    }
    checks.extend(manual(settings));
    checks
}

fn client_auth(s: &Settings) -> Check {
    if s.client_auth {
        Check::new(
            "client-auth",
            "Client authentication is on",
            Status::Pass,
            "every proxy request needs a client key".into(),
        )
    } else {
        Check::new(
            "client-auth",
            "Client authentication is on",
            Status::Fail,
            "ENABLE_CLIENT_AUTH=false: anyone who reaches the port uses your upstream credentials"
                .into(),
        )
        .fix("unset ENABLE_CLIENT_AUTH (or set it to true) and give clients cnp_live_ keys")
    }
}

fn dashboard_key(s: &Settings) -> Check {
    let title = "Dashboard key is set and strong";
    match s.dashboard_key_len {
        Some(len) if len >= STRONG_KEY_LEN => Check::new(
            "dashboard-key",
            title,
            Status::Pass,
            format!("DASHBOARD_API_KEY is set ({len} characters)"),
        ),
        Some(len) => Check::new(
            "dashboard-key",
            title,
            Status::Warn,
            format!("DASHBOARD_API_KEY has only {len} characters"),
        )
        .fix(format!(
            "use a random key of {STRONG_KEY_LEN} characters or more, e.g. from `claude-nexus keys generate`"
        )),
        None => Check::new(
            "dashboard-key",
            title,
            Status::Warn,
            "DASHBOARD_API_KEY is not set: a strong key is generated at each start, so logins end at every restart".into(),
        )
        .fix("set DASHBOARD_API_KEY to a random key, e.g. from `claude-nexus keys generate`"),
    }
}

fn loopback(s: &Settings) -> Check {
    let title = "The proxy listens on loopback only";
    if s.host.is_loopback() {
        Check::new("loopback", title, Status::Pass, format!("HOST={}", s.host))
    } else {
        let detail = if s.host.is_unspecified() {
            format!(
                "HOST={}: the proxy is reachable on every network interface",
                s.host
            )
        } else {
            format!("HOST={}: the proxy is reachable from the network", s.host)
        };
        Check::new("loopback", title, Status::Warn, detail).fix(
            "set HOST=127.0.0.1 and put a TLS-terminating reverse proxy in front for remote clients",
        )
    }
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

fn credential_files(dir: &Path) -> Vec<Check> {
    let shown = dir.display();
    let dir_check = match mode_of(dir) {
        None => Check::new(
            "credentials-dir",
            "Credentials directory is private (0700)",
            Status::Warn,
            format!("{shown} does not exist"),
        )
        .fix(format!("mkdir -p {shown} && chmod 700 {shown}")),
        Some(mode) if mode & 0o077 == 0 => Check::new(
            "credentials-dir",
            "Credentials directory is private (0700)",
            Status::Pass,
            format!("{shown} is {mode:o}"),
        ),
        Some(mode) => Check::new(
            "credentials-dir",
            "Credentials directory is private (0700)",
            Status::Warn,
            format!("{shown} is {mode:o}: others can list your accounts"),
        )
        .fix(format!("chmod 700 {shown}")),
    };
    let mut open = Vec::new();
    let mut count = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let is_credential = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(crate::accounts::credentials::FILE_SUFFIX));
            if !is_credential {
                continue;
            }
            count += 1;
            if let Some(mode) = mode_of(&path)
                && mode & 0o077 != 0
            {
                open.push(format!("{} ({mode:o})", path.display()));
            }
        }
    }
    open.sort();
    let title = "Credential files are private (0600)";
    let files_check = if open.is_empty() {
        Check::new(
            "credential-files",
            title,
            Status::Pass,
            format!("{count} credential file(s), none readable by others"),
        )
    } else {
        Check::new(
            "credential-files",
            title,
            Status::Fail,
            format!(
                "readable by group or others (and so refused by the proxy): {}",
                open.join(", ")
            ),
        )
        .fix(format!(
            "chmod 600 {shown}/*{}",
            crate::accounts::credentials::FILE_SUFFIX
        ))
    };
    vec![dir_check, files_check]
}

fn database_tls(s: &Settings) -> Check {
    let title = "Database connection is encrypted";
    match &s.database {
        DatabaseSummary::Sqlite(path) => Check::new(
            "database-tls",
            title,
            Status::Pass,
            format!("SQLite file {} (no network)", path.display()),
        ),
        DatabaseSummary::Postgres { host, sslmode } => {
            let local = host.is_empty()
                || host.starts_with('/')
                || matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]" | "::1");
            let required = sslmode
                .as_deref()
                .is_some_and(|m| matches!(m, "require" | "verify-ca" | "verify-full"));
            if required {
                Check::new(
                    "database-tls",
                    title,
                    Status::Pass,
                    format!(
                        "PostgreSQL with sslmode={}",
                        sslmode.as_deref().unwrap_or("")
                    ),
                )
            } else if local {
                Check::new(
                    "database-tls",
                    title,
                    Status::Pass,
                    format!(
                        "PostgreSQL on this machine ({})",
                        if host.is_empty() { "socket" } else { host }
                    ),
                )
            } else {
                Check::new(
                    "database-tls",
                    title,
                    Status::Fail,
                    format!("PostgreSQL on {host} without sslmode=require: records cross the network in clear"),
                )
                .fix("add ?sslmode=require (or verify-full) to DATABASE_URL")
            }
        }
    }
}

fn days(d: std::time::Duration) -> u64 {
    d.as_secs() / 86_400
}

fn retention(s: &Settings) -> Check {
    let title = "Retention is set";
    match s.retention.keep {
        Some(keep) => Check::new(
            "retention",
            title,
            Status::Pass,
            format!("records are deleted after {} days", days(keep)),
        ),
        None => Check::new(
            "retention",
            title,
            Status::Warn,
            "RETENTION_DAYS=0: records are kept forever".into(),
        )
        .fix("set RETENTION_DAYS (90 by default)"),
    }
}

fn body_storage(s: &Settings) -> Check {
    let title = "Stored bodies are encrypted and expire";
    if !s.storage_enabled {
        return Check::new(
            "body-storage",
            title,
            Status::Pass,
            "STORAGE_ENABLED is off: prompts and answers are not kept".into(),
        );
    }
    let kept = match s.retention.keep_bodies.or(s.retention.keep) {
        Some(keep) => format!("for {} days", days(keep)),
        None => "forever".into(),
    };
    let from = match s.storage_key {
        Some(KeySource::Env) => Some("STORAGE_ENCRYPTION_KEY"),
        Some(KeySource::Keychain) => Some("the data key in the OS keychain"),
        Some(KeySource::File) | None => None,
    };
    if let Some(from) = from {
        return Check::new(
            "body-storage",
            title,
            if s.retention.keep_bodies.or(s.retention.keep).is_some() {
                Status::Pass
            } else {
                Status::Warn
            },
            format!("bodies are sealed with {from} and kept {kept}"),
        )
        .fix("set BODY_RETENTION_DAYS (or RETENTION_DAYS) so prompts do not stay forever");
    }
    let key_file = s.data_dir.join("storage_key");
    match mode_of(&key_file) {
        Some(mode) if mode & 0o077 != 0 => Check::new(
            "body-storage",
            title,
            Status::Fail,
            format!(
                "the key file {} is readable by others (mode {mode:o}): stored bodies can be decrypted",
                key_file.display()
            ),
        )
        .fix(format!("chmod 600 {}", key_file.display())),
        _ => Check::new(
            "body-storage",
            title,
            Status::Warn,
            format!(
                "bodies are sealed with the key file {} beside the data, and kept {kept}: whoever reads the data directory reads them",
                key_file.display()
            ),
        )
        .fix("set STORAGE_ENCRYPTION_KEY from a secret store, and BODY_RETENTION_DAYS; or turn STORAGE_ENABLED off"),
    }
}

async fn failed_auth(store: &Store) -> Check {
    let title = "Failed authentications in the last 24 hours";
    let since = OffsetDateTime::now_utc() - time::Duration::hours(24);
    let rows = match store.failed_auth_by_day(since).await {
        Ok(rows) => rows,
        Err(e) => {
            return Check::new(
                "failed-auth",
                title,
                Status::Warn,
                format!("the query failed: {e}"),
            );
        }
    };
    let total: u64 = rows.iter().map(|r| r.value).sum();
    let flagged: Vec<String> = rows
        .iter()
        .filter(|r| r.value > FAILED_AUTH_PER_DAY)
        .map(|r| format!("{} on {}: {}", r.domain, r.day, r.value))
        .collect();
    let mut detail = format!("{total} proxy request(s) refused with 401");
    match store.failed_dashboard_logins(since).await {
        Ok(n) => detail.push_str(&format!("; {n} failed dashboard login(s)")),
        Err(e) => detail.push_str(&format!("; failed dashboard logins unknown: {e}")),
    }
    if flagged.is_empty() {
        Check::new("failed-auth", title, Status::Pass, detail)
    } else {
        detail.push_str(&format!(
            "; more than {FAILED_AUTH_PER_DAY} a day for {}",
            flagged.join(", ")
        ));
        Check::new("failed-auth", title, Status::Warn, detail).fix(
            "find the client with the wrong key in the Requests page (status 401) and rotate the key if it leaked",
        )
    }
}

async fn token_spikes(store: &Store) -> Check {
    let title = "No token spikes per account";
    let since = OffsetDateTime::now_utc() - time::Duration::days(8);
    let rows = match store.daily_tokens_by_account(since).await {
        Ok(rows) => rows,
        Err(e) => {
            return Check::new(
                "token-spikes",
                title,
                Status::Warn,
                format!("the query failed: {e}"),
            );
        }
    };
    let spikes = find_spikes(&rows);
    if spikes.is_empty() {
        Check::new(
            "token-spikes",
            title,
            Status::Pass,
            format!(
                "no account's day above {SPIKE_FACTOR}× its average in the last 8 days (and {SPIKE_MIN_TOKENS} tokens)"
            ),
        )
    } else {
        Check::new("token-spikes", title, Status::Warn, spikes.join("; "))
            .fix("look at the account's requests; if they are not yours, rotate its client key")
    }
}

/// Days whose tokens exceed [`SPIKE_FACTOR`] times the account's average of its other days.
fn find_spikes(rows: &[crate::store::DailyCount]) -> Vec<String> {
    let mut by_account: BTreeMap<(String, String), Vec<(&str, u64)>> = BTreeMap::new();
    for r in rows {
        by_account
            .entry((r.account_id.clone().unwrap_or_default(), r.domain.clone()))
            .or_default()
            .push((&r.day, r.value));
    }
    let mut spikes = Vec::new();
    for ((account, domain), days) in by_account {
        if days.len() < 2 {
            continue;
        }
        for (i, (day, tokens)) in days.iter().enumerate() {
            let others: u64 = days
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, t))| t)
                .sum();
            let average = others / (days.len() as u64 - 1);
            if *tokens > SPIKE_MIN_TOKENS && *tokens > SPIKE_FACTOR * average.max(1) {
                spikes.push(format!(
                    "{account} ({domain}) used {tokens} tokens on {day}, against {average} on an average day"
                ));
            }
        }
    }
    spikes
}

/// The manual items: (id, title, what to do).
const MANUAL: [(&str, &str, &str); 5] = [
    (
        "tls",
        "TLS terminates in front of the proxy for remote clients",
        "put nginx or caddy with TLS in front when clients are not on this machine",
    ),
    (
        "firewall",
        "Firewall rules reviewed",
        "allow the proxy and dashboard ports only from where clients are",
    ),
    (
        "backups",
        "Database backups are encrypted",
        "encrypt backups of the database file or dump",
    ),
    (
        "rotation",
        "Client keys are rotated regularly",
        "put a new key in the credential file, move clients over, then remove the old one",
    ),
    (
        "audit",
        "A security audit schedule exists",
        "review this checklist and the logs on a schedule",
    ),
];

#[derive(Default, Serialize, Deserialize)]
struct ManualRecord {
    /// id → day marked done (`YYYY-MM-DD`).
    done: BTreeMap<String, String>,
}

fn read_manual(file: &Path) -> ManualRecord {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn manual(settings: &Settings) -> Vec<Check> {
    let record = read_manual(&settings.manual_file());
    MANUAL
        .iter()
        .map(|(id, title, todo)| {
            let done_on = record.done.get(*id).cloned();
            let mut check = Check::new(
                id,
                title,
                if done_on.is_some() {
                    Status::Pass
                } else {
                    Status::Todo
                },
                match &done_on {
                    Some(day) => format!("marked done on {day}"),
                    None => "a manual item: mark it done when it is".into(),
                },
            )
            .fix(*todo);
            check.manual = true;
            check.done_on = done_on;
            check
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    #[error("no manual check named {0:?}")]
    Unknown(String),
    #[error("cannot save {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Marks a manual item done (today) or not done, keeping the record in the data directory.
pub fn mark_manual(settings: &Settings, id: &str, done: bool) -> Result<(), MarkError> {
    if !MANUAL.iter().any(|(m, _, _)| *m == id) {
        return Err(MarkError::Unknown(id.to_string()));
    }
    let file = settings.manual_file();
    let mut record = read_manual(&file);
    if done {
        let today = OffsetDateTime::now_utc().date().to_string();
        record.done.insert(id.to_string(), today);
    } else {
        record.done.remove(id);
    }
    let io = |source| MarkError::Io {
        path: file.display().to_string(),
        source,
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = file.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(&record).unwrap_or_default();
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, &file).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DailyCount;

    fn settings(dir: &Path) -> Settings {
        Settings {
            host: "127.0.0.1".parse().unwrap(),
            client_auth: true,
            dashboard_key_len: Some(40),
            credentials_dir: dir.join("credentials"),
            data_dir: dir.to_path_buf(),
            storage_enabled: false,
            storage_key: None,
            retention: RetentionPolicy {
                keep: Some(std::time::Duration::from_secs(90 * 86_400)),
                ..RetentionPolicy::default()
            },
            database: DatabaseSummary::Sqlite(dir.join("db")),
        }
    }

    fn status(checks: &[Check], id: &str) -> Status {
        checks.iter().find(|c| c.id == id).unwrap().status
    }

    #[tokio::test]
    async fn a_careful_setup_passes_and_a_careless_one_fails() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        std::fs::create_dir(&s.credentials_dir).unwrap();
        std::fs::set_permissions(&s.credentials_dir, std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let file = s.credentials_dir.join("a.example.credentials.json");
        std::fs::write(&file, "{}").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let checks = run(&s, None).await;
        for id in [
            "client-auth",
            "dashboard-key",
            "loopback",
            "credentials-dir",
            "credential-files",
            "database-tls",
            "retention",
            "body-storage",
        ] {
            assert_eq!(status(&checks, id), Status::Pass, "{id}");
        }
        assert_eq!(status(&checks, "database"), Status::Warn);
        assert_eq!(status(&checks, "backups"), Status::Todo);

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        s.client_auth = false;
        s.host = "0.0.0.0".parse().unwrap();
        s.dashboard_key_len = None;
        s.storage_enabled = true;
        s.retention.keep = None;
        s.database = DatabaseSummary::Postgres {
            host: "db.example.com".into(),
            sslmode: Some("prefer".into()),
        };
        let checks = run(&s, None).await;
        assert_eq!(status(&checks, "client-auth"), Status::Fail);
        assert_eq!(status(&checks, "credential-files"), Status::Fail);
        assert_eq!(status(&checks, "database-tls"), Status::Fail);
        for id in ["dashboard-key", "loopback", "retention", "body-storage"] {
            assert_eq!(status(&checks, id), Status::Warn, "{id}");
        }
        let files = checks.iter().find(|c| c.id == "credential-files").unwrap();
        assert!(files.detail.contains("a.example.credentials.json (644)"));
        assert!(files.fix.as_deref().unwrap().starts_with("chmod 600"));
    }

    #[test]
    fn manual_items_remember_the_day_they_were_done() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        mark_manual(&s, "backups", true).unwrap();
        let backups = manual(&s).into_iter().find(|c| c.id == "backups").unwrap();
        assert_eq!(backups.status, Status::Pass);
        assert_eq!(
            backups.done_on.unwrap(),
            OffsetDateTime::now_utc().date().to_string()
        );
        mark_manual(&s, "backups", false).unwrap();
        assert!(manual(&s).iter().all(|c| c.status == Status::Todo));
        assert!(matches!(
            mark_manual(&s, "nope", true),
            Err(MarkError::Unknown(_))
        ));
    }

    #[test]
    fn spikes_stand_out_from_the_accounts_usual_days() {
        let day = |d: &str, v: u64| DailyCount {
            account_id: Some("acc".into()),
            domain: "a.example".into(),
            day: d.into(),
            value: v,
        };
        let quiet = [day("2026-11-27", 50_000), day("2026-11-26", 40_000)];
        assert!(find_spikes(&quiet).is_empty());
        let spiky = [
            day("2026-11-28", 900_000),
            day("2026-11-27", 50_000),
            day("2026-11-26", 40_000),
        ];
        let spikes = find_spikes(&spiky);
        assert_eq!(spikes.len(), 1);
        assert!(spikes[0].contains("900000 tokens on 2026-11-28"));
    }
}
