//! The security checklist: the security guide's pre- and post-deployment items turned into
//! checks with pass / warn / fail and the fix. One list serves the dashboard's Security page
//! and `claude-nexus doctor` (which exits non-zero on a fail).
//!
//! Checks read only the configuration, the filesystem (credential files and their modes) and
//! the database (the guide's monitoring queries); they never change anything. Items that
//! cannot be checked from here (backups encrypted, an audit schedule, …) are manual: the user
//! marks them done, and the date is kept in `security-manual.json` in the data directory.
//!
//! This file holds the shapes (`Check`, `Status`, `Settings`), the order of the list
//! ([`run`]) and its terminal form ([`print`]); the checks themselves are in
//! `configuration` (settings), `files` (file modes), `monitoring` (the database's queries)
//! and `manual` (the items the user marks done).

mod configuration;
mod files;
mod manual;
mod monitoring;

use std::net::IpAddr;
use std::path::PathBuf;

use secrecy::ExposeSecret;
use serde::Serialize;

use crate::client_ip::IpRanges;
use crate::config::RetentionPolicy;
use crate::config::{Config, DatabaseConfig};
use crate::crypto::KeySource;
use crate::store::Store;

pub use configuration::STRONG_KEY_LEN;
pub use manual::{MarkError, mark_manual};
pub use monitoring::{FAILED_AUTH_PER_DAY, SPIKE_FACTOR, SPIKE_MIN_TOKENS};

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
    /// `ALLOWED_IPS`: the only clients served, when set.
    pub allowed_ips: IpRanges,
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
            allowed_ips: config.allowed_ips.clone(),
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
        configuration::client_auth(settings),
        configuration::dashboard_key(settings),
        configuration::loopback(settings),
    ];
    checks.extend(files::credential_files(&settings.credentials_dir));
    checks.push(configuration::database_tls(settings));
    checks.push(configuration::retention(settings));
    checks.push(configuration::body_storage(settings));
    match store {
        Some(store) => {
            checks.push(monitoring::failed_auth(store).await);
            checks.push(monitoring::token_spikes(store).await);
        }
        None => checks.push(monitoring::unavailable()),
    }
    checks.extend(manual::manual(settings));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    pub(super) fn settings(dir: &Path) -> Settings {
        Settings {
            host: "127.0.0.1".parse().unwrap(),
            allowed_ips: IpRanges::default(),
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

        // On the network, but only for the listed clients.
        s.allowed_ips = IpRanges::parse("10.0.0.0/8").unwrap();
        let checks = run(&s, None).await;
        let listening = checks.iter().find(|c| c.id == "loopback").unwrap();
        assert_eq!(listening.status, Status::Pass);
        assert!(
            listening.detail.contains("ALLOWED_IPS=10.0.0.0/8"),
            "{listening:?}"
        );
    }
}
