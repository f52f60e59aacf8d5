//! The checks of the configuration: client authentication, the dashboard key, the listening
//! address (and who may use it, `ALLOWED_IPS`), the database connection's encryption,
//! retention, and how stored bodies are sealed and kept. Each reads [`Settings`] only (and
//! the storage key file's mode).

use crate::crypto::KeySource;

use super::{Check, DatabaseSummary, Settings, Status};
use crate::atomic_file::mode_of;

/// The shortest dashboard key called strong.
pub const STRONG_KEY_LEN: usize = 32;

pub(super) fn client_auth(s: &Settings) -> Check {
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

pub(super) fn dashboard_key(s: &Settings) -> Check {
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

pub(super) fn loopback(s: &Settings) -> Check {
    let title = "The proxy listens on loopback only";
    if s.host.is_loopback() {
        Check::new("loopback", title, Status::Pass, format!("HOST={}", s.host))
    } else if !s.allowed_ips.is_empty() {
        let listed: Vec<String> = s.allowed_ips.nets().iter().map(|n| n.to_string()).collect();
        Check::new(
            "loopback",
            title,
            Status::Pass,
            format!(
                "HOST={}: reachable from the network, and only ALLOWED_IPS={} are served",
                s.host,
                listed.join(",")
            ),
        )
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
            "set HOST=127.0.0.1 and put a TLS-terminating reverse proxy in front for remote clients (docs/deployment.md), or set ALLOWED_IPS to the addresses that may use it",
        )
    }
}

pub(super) fn database_tls(s: &Settings) -> Check {
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

pub(super) fn retention(s: &Settings) -> Check {
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

pub(super) fn body_storage(s: &Settings) -> Check {
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
