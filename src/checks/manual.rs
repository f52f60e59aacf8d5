//! The manual items: what cannot be checked from here (TLS in front, firewall, encrypted
//! backups, key rotation, an audit schedule). The user marks them done; the day is kept in
//! `security-manual.json` in the data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Check, Settings, Status};

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

/// Where the manual items' record is kept.
fn record_file(settings: &Settings) -> PathBuf {
    settings.data_dir.join("security-manual.json")
}

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

pub(super) fn manual(settings: &Settings) -> Vec<Check> {
    let record = read_manual(&record_file(settings));
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
    let file = record_file(settings);
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
        crate::atomic_file::create_private_dir(dir).map_err(io)?;
    }
    let text = serde_json::to_string_pretty(&record).unwrap_or_default();
    crate::atomic_file::write_private(&file, text.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::tests::settings;

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
}
