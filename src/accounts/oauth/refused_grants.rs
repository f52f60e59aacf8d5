//! Refresh tokens the token endpoint refused (`invalid_grant`), remembered across restarts.
//!
//! Without this, "needs login" lived in memory only: a restart sent the dead refresh token
//! again, got refused again, and showed the account as refreshing until then. Each refused
//! token is kept as the hex SHA-256 of the token (refresh tokens are long random strings, so
//! the digest reveals nothing) in `<data dir>/oauth-refused-grants.json`, 0600, the newest
//! [`KEPT`]. A new login brings a new refresh token, which is not in the list.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use secrecy::SecretString;

use super::token_state::fingerprint;

/// How many refused tokens are remembered (the oldest are forgotten first).
const KEPT: usize = 64;

/// The file's name in the data directory.
pub const FILE: &str = "oauth-refused-grants.json";

#[derive(Default)]
pub struct RefusedGrants {
    /// Where the list is kept; `None` keeps it in memory only.
    path: Option<PathBuf>,
    fingerprints: Mutex<VecDeque<String>>,
}

impl RefusedGrants {
    /// The list kept in `path`: read now (a missing file is an empty list, a damaged one is
    /// said and started afresh), written on every change.
    pub fn load(path: PathBuf) -> RefusedGrants {
        let fingerprints = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{}: not readable ({e}); starting a new list",
                    path.display()
                );
                VecDeque::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => VecDeque::new(),
            Err(e) => {
                tracing::warn!("{}: {e}; refused grants are not remembered", path.display());
                VecDeque::new()
            }
        };
        RefusedGrants {
            path: Some(path),
            fingerprints: Mutex::new(fingerprints),
        }
    }

    /// Whether the endpoint refused `refresh` before.
    pub fn contains(&self, refresh: &SecretString) -> bool {
        let digest = hex::encode(fingerprint(refresh));
        self.list().contains(&digest)
    }

    /// Remembers that the endpoint refused `refresh`.
    pub fn add(&self, refresh: &SecretString) {
        let digest = hex::encode(fingerprint(refresh));
        let text = {
            let mut list = self.list();
            if list.contains(&digest) {
                return;
            }
            if list.len() == KEPT {
                list.pop_front();
            }
            list.push_back(digest);
            serde_json::to_vec(&*list).unwrap_or_default()
        };
        if let Some(path) = &self.path
            && let Err(e) = crate::atomic_file::write_private(path, &text)
        {
            tracing::warn!(
                "{}: {e}; the refused refresh token is remembered until the next restart only",
                path.display()
            );
        }
    }

    fn list(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        self.fingerprints.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_token_is_remembered_across_loads_and_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let dead = SecretString::from("sk-ant-ort01-dead");
        let fresh = SecretString::from("sk-ant-ort01-fresh");
        let grants = RefusedGrants::load(path.clone());
        assert!(!grants.contains(&dead));
        grants.add(&dead);
        let again = RefusedGrants::load(path.clone());
        assert!(again.contains(&dead));
        assert!(!again.contains(&fresh));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("dead"), "only a digest is kept: {text}");
        for i in 0..KEPT {
            again.add(&SecretString::from(format!("sk-ant-ort01-{i}")));
        }
        assert!(
            !RefusedGrants::load(path).contains(&dead),
            "the oldest go first"
        );
    }
}
